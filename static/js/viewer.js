/* The scan page: live detector-job progress, then a slice viewer with the mask overlay.
 *
 * - Polls the scan's latest job (/api/scans/<id>/latest-job/) while it is queued or running.
 * - When it succeeded: reads every slice result (/api/jobs/<id>/results/), shows the verdict per scan and per
 *   slice, and draws each slice's regions from their COCO RLE masks, coloured by class.
 * - 16-bit sources: window/level on the native values, decoded in the browser from the 16-bit slice PNG
 *   (native = png16 * pixel_scale + pixel_offset). The default window is the one that made the 8-bit slices.
 * No libraries, nothing fetched from outside the portal.
 */
(function () {
  "use strict";

  const PLACEHOLDER = "2147483647";
  const POLL_MS = 1500;
  const POLL_BACKOFF_MS = 6000;
  const CLASS_IDS = { real_tumor: 1, fake_added: 2, fake_removed: 3 };
  const CLASS_RGB = { 1: [40, 130, 235], 2: [230, 40, 40], 3: [160, 80, 230] };
  const OVERLAY_ALPHA = 115; // of 255
  const MAX_LISTED_REGIONS = 3;
  const MAX_LISTED_RUNS = 12; // runs of slices listed per verdict in the summary
  const SUMMARY_ORDER = ["fake_added", "fake_removed", "real_tumor", "no_tumor"]; // findings that need a look first
  const LABELS = { // the same words as inference.models.VERDICT_LABELS
    real_tumor: "Real tumor", no_tumor: "No tumor", fake_added: "Fake added", fake_removed: "Fake removed", queued: "Queued", running: "Running", succeeded: "Succeeded",
    failed: "Failed",
  };

  const panel = document.getElementById("job-panel");
  const viewer = document.getElementById("scan-viewer");
  if (!panel || !viewer) return;

  /** The object a json_script block holds ({} when it is absent or unreadable). */
  function pageJson(id) {
    const el = document.getElementById(id);
    try {
      return el ? JSON.parse(el.textContent) || {} : {};
    } catch (e) {
      return {};
    }
  }

  // per verdict, what it has meant in the installed model's evaluation (reports.selectors.verdict_guide_text)
  const VERDICT_GUIDES = pageJson("verdict-guides");
  // 0-based slice index -> the DICOM header checks' warnings that name its file (scans.dicom_text)
  const HEADER_WARNINGS = pageJson("header-warnings");
  const headerWarnings = (index) => HEADER_WARNINGS[String(index)] || [];
  // 0-based slice index -> where another copy of its image (the PACS's, another stored scan's) has other pixels:
  // [{source, text, box, mask_rle}] (scans.selectors.SliceChange.as_json); replaced live by pacs.js's
  // "slice-changes" event when a comparison with the PACS finishes while the page is open
  let SLICE_CHANGES = pageJson("slice-changes");
  const sliceChanges = (index) => SLICE_CHANGES[String(index)] || [];
  const CHANGE_RGB = [255, 200, 0]; // the outline of changed pixels: no class colour is yellow

  const $ = (root, name) => root.querySelector("[" + name + "]");
  const pct = (x) => Math.round(x * 1000) / 10 + "%";
  const fmt = (x, digits) => (x === null || x === undefined ? "" : Number(x).toFixed(digits));
  const fromTemplate = (template, id) => template.replace(PLACEHOLDER, String(id));

  // --- Job panel -------------------------------------------------------------------------------------------

  const job = { current: null, resultsFor: null };

  const BADGE_CLASS = { succeeded: "done" }; // portal.css names the finished state "done"

  function setBadge(el, value) {
    el.className = "badge badge-" + (BADGE_CLASS[value] || value);
    el.textContent = LABELS[value] || value;
  }

  function renderJob(data) {
    job.current = data;
    panel.dataset.status = data.status;
    const empty = $(panel, "data-job-empty");
    if (empty) empty.classList.add("hidden");
    $(panel, "data-job-body").classList.remove("hidden");
    setBadge($(panel, "data-job-status"), data.status);

    const done = data.progress.done, total = data.progress.total;
    const active = data.status === "queued" || data.status === "running";
    const text = $(panel, "data-job-progress-text");
    if (data.status === "queued") text.textContent = "Waiting for a worker…";
    else if (data.status === "running") text.textContent = total ? done + " of " + total + " slices analysed" : "Loading the model…";
    else text.textContent = "";
    const bar = $(panel, "data-job-progressbar");
    bar.classList.toggle("hidden", !active);
    const fraction = total ? done / total : 0;
    bar.setAttribute("aria-valuenow", String(Math.round(fraction * 100)));
    $(panel, "data-job-progress-fill").style.width = (fraction * 100).toFixed(1) + "%";

    const verdictBox = $(panel, "data-job-verdict");
    verdictBox.classList.toggle("hidden", data.status !== "succeeded");
    if (data.status === "succeeded") {
      setBadge($(panel, "data-scan-verdict"), data.verdict);
      $(panel, "data-scan-confidence").textContent = "confidence " + pct(data.confidence);
      $(panel, "data-scan-tamper").textContent = fmt(data.tamper_score, 3);
      $(panel, "data-scan-scores").textContent = Object.entries(data.scores) // as inference.models.scores_text
        .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
        .map(([name, value]) => (LABELS[name] || name) + " " + pct(value)).join(" · ");
      if (data.scan_rule) $(panel, "data-scan-rule").textContent = data.scan_rule.text;
      const odds = data.tamper_odds; // inference.models.tamper_odds: null under the max rule
      $(panel, "data-scan-odds").textContent = odds ? odds.text : "";
      $(panel, "data-scan-odds").classList.toggle("hidden", !odds);
      $(panel, "data-scan-odds-label").classList.toggle("hidden", !odds);
      const note = data.false_alarm_note; // reports.selectors.processed_caveat_for: null unless a tampering verdict
      $(panel, "data-scan-processed-caveat-text").textContent = note || "";
      $(panel, "data-scan-processed-caveat").classList.toggle("hidden", !note);
      const m = data.model;
      $(panel, "data-job-model").textContent = m.name + " " + m.version + " (" + m.sha256.slice(0, 12) + ")" + (m.device ? " on " + m.device : "");
      const t = data.timings;
      $(panel, "data-job-timings").textContent = fmt(t.seconds_total, 1) + " s in all, " + fmt(t.seconds_per_slice, 3) + " s per slice";
      const masks = document.getElementById("masks-download");
      if (masks) {
        masks.href = fromTemplate(panel.dataset.masksUrlTemplate, data.id);
        masks.classList.remove("hidden");
      }
      document.querySelectorAll("[data-report-link]").forEach((link) => link.classList.remove("hidden"));
    }
    const failedBox = $(panel, "data-job-failed");
    failedBox.classList.toggle("hidden", data.status !== "failed");
    if (data.status === "failed") {
      $(panel, "data-job-error").textContent = data.error_message;
      $(panel, "data-retry-form").action = fromTemplate(panel.dataset.retryUrlTemplate, data.id);
    }
    renderReviewForm(data);
    if (data.status === "succeeded" && job.resultsFor !== data.id) {
      job.resultsFor = data.id;
      loadResults(data);
    }
    return active;
  }

  // The radiologist's review (templates/reviews/_panel.html): its form opens when the analysis succeeds, with the
  // detector's verdict chosen, as the page renders it for a finished job.
  function renderReviewForm(data) {
    const reviewPanel = document.getElementById("review");
    const form = reviewPanel && $(reviewPanel, "data-review-form");
    if (!form || data.status !== "succeeded" || !form.classList.contains("hidden")) return;
    form.elements.job.value = String(data.id);
    $(form, "data-review-detector-verdict").textContent = LABELS[data.verdict] || data.verdict;
    const choice = form.querySelector('input[name="verdict"][value="' + data.verdict + '"]');
    if (choice && !form.querySelector('input[name="verdict"]:checked')) choice.checked = true;
    const waiting = $(reviewPanel, "data-review-waiting");
    if (waiting) {
      waiting.classList.remove("muted");
      waiting.textContent = "Not reviewed yet. The detector's verdict is a prompt: record whether you confirm it or read the scan otherwise.";
    }
    form.classList.remove("hidden");
  }

  let polls = 0;
  async function poll() {
    // Every 1.5 s at first; a job still waiting after a minute (no worker free) is checked less often.
    let delay = ++polls > 40 ? POLL_BACKOFF_MS : POLL_MS;
    try {
      const response = await fetch(panel.dataset.latestJobUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.status === 404) return; // no job for this scan
      if (!response.ok) throw new Error("HTTP " + response.status);
      if (!renderJob(await response.json())) return; // finished: stop polling
    } catch (err) {
      delay = POLL_BACKOFF_MS; // the server or the network hiccupped: keep trying, more slowly
    }
    window.setTimeout(poll, delay);
  }

  // --- Results ---------------------------------------------------------------------------------------------

  const state = {
    index: Number(viewer.dataset.startIndex || 0),
    n: Number(viewer.dataset.nSlices),
    width: Number(viewer.dataset.width),
    height: Number(viewer.dataset.height),
    results: new Map(), // slice index -> result
    labelMaps: new Map(), // slice index -> Uint8Array label map (lazy)
    showOverlay: true,
    showChanges: true,
    changeMasks: new Map(), // "slice:n" -> Uint8Array of changed pixels (lazy)
  };

  async function loadResults(data) {
    let url = data.links.results + "?page_size=1000";
    state.results.clear();
    state.labelMaps.clear();
    while (url) {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) return;
      const page = await response.json();
      for (const result of page.results) state.results.set(result.index, result);
      url = page.next;
    }
    $(viewer, "data-overlay-controls").classList.remove("hidden");
    renderTamperedSlices();
    renderStrip();
    showSlice(state.index);
  }

  /** Beside the scan's verdict, when it is not itself a tampering verdict: the slices read as tampered, most
   * confident first (a scan whose real tumour outweighs one injected slice still says so at the top), each a
   * button that shows it. */
  function renderTamperedSlices() {
    const box = $(panel, "data-scan-tampered-slices");
    const tampered = [...state.results.values()].filter((r) => r.verdict === "fake_added" || r.verdict === "fake_removed")
      .sort((a, b) => b.confidence - a.confidence);
    const scanVerdict = job.current && job.current.verdict;
    box.textContent = "";
    const show = tampered.length > 0 && scanVerdict !== "fake_added" && scanVerdict !== "fake_removed";
    box.classList.toggle("hidden", !show);
    if (!show) return;
    const strong = document.createElement("strong");
    strong.textContent = "Read as tampered on " + tampered.length + " of " + state.n + " slice" + (state.n === 1 ? "" : "s") + ":";
    box.append(strong, " ");
    for (const r of tampered.slice(0, MAX_LISTED_RUNS)) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "button button-small";
      button.textContent = (r.index + 1) + " (" + LABELS[r.verdict] + " " + pct(r.confidence) + ")";
      button.setAttribute("aria-label", "Show slice " + (r.index + 1) + " (" + LABELS[r.verdict] + ")");
      button.addEventListener("click", () => { showSlice(r.index); viewer.scrollIntoView({ block: "start" }); });
      box.append(button, " ");
    }
    if (tampered.length > MAX_LISTED_RUNS) box.append("and " + (tampered.length - MAX_LISTED_RUNS) + " more. ");
    const rule = job.current && job.current.scan_rule;
    if (rule && rule.threshold !== null && rule.threshold !== undefined) {
      // why the scan is not called tampered: its rule (inference.ml.scan_rule) was not met
      const reach = tampered.filter((r) => r.tamper_score >= rule.threshold).length;
      box.append((reach ? reach + " of them reach" : "None of them reaches") + " a tamper score of " + pct(rule.threshold) +
        (rule.min_slices > 1 ? "; the scan's probability of being tampered passes 50% when " + rule.min_slices + " slices do. "
                             : ", where the scan's probability of being tampered passes 50%. "));
    }
    box.append("The scan's verdict weighs every slice; look at these before reading it as authentic.");
  }

  function renderStrip() {
    const strip = $(viewer, "data-slice-strip");
    strip.textContent = "";
    for (let i = 0; i < state.n; i++) {
      const result = state.results.get(i);
      const cell = document.createElement("button");
      cell.type = "button";
      cell.className = "badge badge-" + (result ? result.verdict : "queued");
      cell.style.cssText = "flex: 1; min-width: 2px; height: 1.1rem; padding: 0; border-radius: 2px;";
      cell.title = "Slice " + (i + 1) + (result ? ": " + LABELS[result.verdict] + " " + pct(result.confidence) : "");
      const shadows = [];
      if (headerWarnings(i).length) {
        cell.title += "; its DICOM header shows signs of editing";
        shadows.push("inset 0 -4px 0 #8a5900");
        cell.dataset.headerWarning = "";
      }
      if (sliceChanges(i).length) {
        cell.title += "; another copy of its image has other pixels";
        shadows.push("inset 0 4px 0 rgb(" + CHANGE_RGB.join(",") + ")");
        cell.dataset.changed = "";
      }
      if (shadows.length) cell.style.boxShadow = shadows.join(", ");
      cell.setAttribute("aria-label", cell.title);
      cell.dataset.index = String(i);
      cell.addEventListener("click", () => showSlice(i));
      strip.appendChild(cell);
    }
    renderSummary();
  }

  /** Sorted slice indices -> runs of consecutive ones: [0, 1, 2, 5, 7, 8] -> [[0, 2], [5, 5], [7, 8]]. */
  function runsOf(indices) {
    const runs = [];
    for (const i of indices) {
      const last = runs[runs.length - 1];
      if (last && i === last[1] + 1) last[1] = i;
      else runs.push([i, i]);
    }
    return runs;
  }

  /** For a scan of several slices: how many slices had each verdict and, for the findings, which ones (each run
   * of slices a button that shows its first slice). A one-slice tampering verdict in a long series is found here
   * without scrolling through it. */
  function renderSummary() {
    const box = $(viewer, "data-slice-summary");
    box.textContent = "";
    box.classList.toggle("hidden", state.n < 2 || !state.results.size);
    if (state.n < 2) return;
    const byVerdict = new Map();
    for (const [index, result] of state.results) {
      if (!byVerdict.has(result.verdict)) byVerdict.set(result.verdict, []);
      byVerdict.get(result.verdict).push(index);
    }
    for (const verdict of SUMMARY_ORDER) {
      const indices = (byVerdict.get(verdict) || []).sort((a, b) => a - b);
      if (!indices.length) continue;
      const row = document.createElement("li");
      row.dataset.summaryVerdict = verdict;
      const badge = document.createElement("span");
      setBadge(badge, verdict);
      row.append(badge, " " + indices.length + " slice" + (indices.length === 1 ? "" : "s"));
      if (verdict !== "no_tumor") {
        row.append(": ");
        runButtons(row, indices, LABELS[verdict]);
      }
      box.appendChild(row);
    }
    // evidence beside the detector's: other pixels in another copy, and headers that show editing
    flagRow(box, "summaryChanged", "Other copy", "other pixels", Object.keys(SLICE_CHANGES),
            "another copy has other pixels");
    flagRow(box, "summaryHeader", "DICOM header", "signs of editing", Object.keys(HEADER_WARNINGS),
            "DICOM header shows signs of editing");
  }

  /** A summary row for slices flagged by something other than the detector: a tag, how many, and a button per run
   * of slices that shows its first one. */
  function flagRow(box, dataName, tagText, what, keys, why) {
    const indices = keys.map(Number).filter((i) => i < state.n).sort((a, b) => a - b);
    if (!indices.length) return;
    const row = document.createElement("li");
    row.dataset[dataName] = "";
    const tag = document.createElement("span");
    tag.className = "badge badge-warning";
    tag.textContent = tagText;
    row.append(tag, " " + what + " at " + indices.length + " slice" + (indices.length === 1 ? "" : "s") + ": ");
    runButtons(row, indices, why);
    box.appendChild(row);
  }

  /** One button per run of the sorted slice indices (at most MAX_LISTED_RUNS), each showing its first slice. */
  function runButtons(row, indices, why) {
    const runs = runsOf(indices);
    runs.slice(0, MAX_LISTED_RUNS).forEach(([first, last]) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "button button-small";
      button.textContent = first === last ? String(first + 1) : first + 1 + "\u2013" + (last + 1);
      button.setAttribute("aria-label", "Show slice " + (first + 1) + " (" + why + ")");
      button.addEventListener("click", () => showSlice(first));
      row.append(button, " ");
    });
    if (runs.length > MAX_LISTED_RUNS) row.append("and " + (runs.length - MAX_LISTED_RUNS) + " more runs");
  }

  /** COCO compressed RLE string -> run lengths (pycocotools maskApi.c rleFrString). */
  function rleCounts(s) {
    const counts = [];
    let p = 0;
    while (p < s.length) {
      let x = 0, k = 0, more = 1, c = 0;
      while (more) {
        c = s.charCodeAt(p) - 48;
        x += (c & 0x1f) * Math.pow(2, 5 * k);
        more = c & 0x20;
        p++; k++;
      }
      if (c & 0x10) x -= Math.pow(2, 5 * k); // sign of the last 5-bit group
      if (counts.length > 2) x += counts[counts.length - 2];
      counts.push(x);
    }
    return counts;
  }

  /** A COCO RLE mask of the slice's size -> Uint8Array (row-major, 1 inside); null for another size. */
  function rleMask(rle) {
    const h = state.height, w = state.width;
    if (!rle || rle.size[0] !== h || rle.size[1] !== w) return null;
    const mask = new Uint8Array(w * h);
    let pos = 0, on = false;
    for (const run of rleCounts(rle.counts)) {
      if (on) {
        for (let j = pos; j < pos + run; j++) {
          const row = j % h, col = (j - row) / h; // column-major
          mask[row * w + col] = 1;
        }
      }
      pos += run;
      on = !on;
    }
    return mask;
  }

  /** The changed pixels of the shown slice, outlined (a pixel whose 4-neighbours are not all changed), or their
   * box dashed where no mask was kept (a scattered change). */
  function drawChanges(ctx) {
    const changes = sliceChanges(state.index);
    if (!state.showChanges || !changes.length) return;
    const w = state.width, h = state.height;
    const image = ctx.getImageData(0, 0, w, h);
    let painted = false;
    changes.forEach((change, n) => {
      const key = state.index + ":" + n;
      if (!state.changeMasks.has(key)) state.changeMasks.set(key, rleMask(change.mask_rle));
      const mask = state.changeMasks.get(key);
      if (!mask) return;
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const i = y * w + x;
          if (!mask[i]) continue;
          const edge = x === 0 || y === 0 || x === w - 1 || y === h - 1 || !mask[i - 1] || !mask[i + 1] || !mask[i - w] || !mask[i + w];
          if (!edge) continue;
          image.data.set([...CHANGE_RGB, 255], 4 * i);
          painted = true;
        }
      }
    });
    if (painted) ctx.putImageData(image, 0, 0);
    for (const [n, change] of changes.entries()) {
      if (state.changeMasks.get(state.index + ":" + n) || !change.box) continue;
      ctx.save();
      ctx.strokeStyle = "rgb(" + CHANGE_RGB.join(",") + ")";
      ctx.setLineDash([4, 3]);
      ctx.strokeRect(change.box[0] + 0.5, change.box[1] + 0.5, change.box[2] - 1, change.box[3] - 1);
      ctx.restore();
    }
  }

  /** The label map of one slice: its instances painted in ascending score, as the server does. */
  function labelMap(result) {
    const h = state.height, w = state.width;
    const map = new Uint8Array(w * h);
    const instances = result.instances.slice().sort((a, b) => a.score - b.score);
    for (const inst of instances) {
      const value = CLASS_IDS[inst.label];
      const [rh, rw] = inst.mask_rle.size;
      if (rh !== h || rw !== w) continue;
      let pos = 0, on = false;
      for (const run of rleCounts(inst.mask_rle.counts)) {
        if (on) {
          for (let j = pos; j < pos + run; j++) {
            const row = j % h, col = (j - row) / h; // column-major
            map[row * w + col] = value;
          }
        }
        pos += run;
        on = !on;
      }
    }
    return map;
  }

  function drawOverlay() {
    const canvas = $(viewer, "data-overlay");
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const result = state.results.get(state.index);
    if (state.showOverlay && result && result.instances.length) {
      if (!state.labelMaps.has(state.index)) state.labelMaps.set(state.index, labelMap(result));
      const map = state.labelMaps.get(state.index);
      const image = ctx.createImageData(state.width, state.height);
      for (let i = 0; i < map.length; i++) {
        const rgb = CLASS_RGB[map[i]];
        if (!rgb) continue;
        image.data[4 * i] = rgb[0];
        image.data[4 * i + 1] = rgb[1];
        image.data[4 * i + 2] = rgb[2];
        image.data[4 * i + 3] = OVERLAY_ALPHA;
      }
      ctx.putImageData(image, 0, 0);
    }
    drawChanges(ctx);
  }

  function renderSliceResult() {
    const box = $(viewer, "data-slice-result");
    const result = state.results.get(state.index);
    box.classList.toggle("hidden", !result);
    if (!result) return;
    setBadge($(box, "data-slice-verdict"), result.verdict);
    $(box, "data-slice-confidence").textContent = "confidence " + pct(result.confidence);
    $(box, "data-slice-tamper").textContent = fmt(result.tamper_score, 3);
    const shown = result.instances.slice(0, MAX_LISTED_REGIONS)
      .map((i) => LABELS[i.label] + " " + pct(i.score) + " (" + i.area + " px)");
    if (result.instances.length > MAX_LISTED_REGIONS) shown.push("and " + (result.instances.length - MAX_LISTED_REGIONS) + " more");
    $(box, "data-slice-instances").textContent = shown.length ? shown.join("; ") : "none shown";
    const guide = $(box, "data-slice-verdict-guide");
    const guideText = VERDICT_GUIDES[result.verdict];
    guide.textContent = guideText ? "Reading this verdict: " + guideText : "";
    guide.classList.toggle("hidden", !guideText);
    const download = $(box, "data-slice-mask-download");
    download.classList.toggle("hidden", !result.mask_url);
    if (result.mask_url) download.href = result.mask_url + "?download=1";
    const strip = $(viewer, "data-slice-strip");
    for (const cell of strip.children) cell.style.outline = Number(cell.dataset.index) === state.index ? "2px solid #1f2933" : "";
  }

  // --- Slices and window/level ----------------------------------------------------------------------------

  const img = $(viewer, "data-slice-img");
  const sliceCanvas = $(viewer, "data-slice-canvas");
  const slider = $(viewer, "data-slice-slider");
  const label = $(viewer, "data-slice-label");
  const native = viewer.dataset.slice16UrlTemplate
    ? {
        scale: Number(viewer.dataset.pixelScale),
        offset: Number(viewer.dataset.pixelOffset),
        low: Number(viewer.dataset.windowLow),
        high: Number(viewer.dataset.windowHigh),
        cache: new Map(), // slice index -> Promise<Uint16Array>
        window: null, // null: the default window (the stored 8-bit slice); else {level, width}
      }
    : null;

  function showSlice(index) {
    state.index = Math.max(0, Math.min(state.n - 1, index));
    compare.index = null; // the slice is drawn as this scan's version again
    if (slider) slider.value = String(state.index);
    if (label) label.textContent = String(state.index + 1);
    img.alt = "Slice " + (state.index + 1) + " of " + state.n;
    if (native && native.window) drawWindowed();
    else {
      img.src = fromTemplate(viewer.dataset.sliceUrlTemplate, state.index);
      sliceCanvas.classList.add("hidden"); // (it may hold another copy's version)
      img.classList.remove("hidden");
    }
    drawOverlay();
    renderSliceResult();
    const header = $(viewer, "data-slice-header");
    const warnings = headerWarnings(state.index);
    header.textContent = warnings.length ? "DICOM header of this slice's file: " + warnings.join(" ") : "";
    header.classList.toggle("hidden", !warnings.length);
    renderSliceChanges();
  }

  // --- The other copy's version of a changed slice, shown in place -------------------------------------------
  // (a stored copy the viewer may open; in this scan's window, from its 16-bit pixels, so that only the edit
  // changes when the doctor switches between the two)

  const compare = { index: null, other: null, showingOther: false, token: 0 };

  function renderSliceChanges() {
    const changes = sliceChanges(state.index);
    const changeBox = $(viewer, "data-slice-changes");
    changeBox.textContent = "";
    changeBox.classList.toggle("hidden", !changes.length);
    if (compare.index !== state.index) Object.assign(compare, { index: state.index, other: null, showingOther: false });
    for (const change of changes) {
      const line = document.createElement("p");
      line.style.margin = "0 0 .25rem";
      line.textContent = "Against " + change.source + ": " + change.text + ". ";
      if (change.other) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "button button-small";
        button.dataset.showOther = String(change.other.scan);
        const shown = compare.other === change.other && compare.showingOther;
        button.setAttribute("aria-pressed", shown ? "true" : "false");
        button.textContent = shown ? "Show this scan's version" : "Show scan #" + change.other.scan + "'s version";
        button.addEventListener("click", () => showVersion(change.other, !shown));
        line.append(button);
      }
      changeBox.append(line);
    }
    const note = document.createElement("p");
    note.className = "small";
    note.dataset.versionShown = "";
    note.style.margin = "0";
    note.textContent = compare.showingOther ? "Showing scan #" + compare.other.scan + "'s version of this slice (slice " + (compare.other.slice + 1) + " there), in this scan's window." : "";
    if (changes.length) changeBox.append(note);
  }

  /** Native values of a 16-bit slice PNG (any scan's). */
  async function fetch16(url) {
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    return decodePng16(await response.arrayBuffer());
  }

  async function showVersion(other, showOther) {
    const token = ++compare.token;
    Object.assign(compare, { index: state.index, other: other, showingOther: showOther });
    if (other.image16_url && native) {
      // both versions through the same mapping: this scan's window (the one set, or the default)
      const window = native.window || { level: (native.low + native.high) / 2, width: Math.max(native.high - native.low, native.scale) };
      let values, scale, offset;
      try {
        if (showOther) [values, scale, offset] = [await fetch16(other.image16_url), other.scale, other.offset];
        else [values, scale, offset] = [await native16(state.index), native.scale, native.offset];
      } catch (e) {
        return;
      }
      if (token !== compare.token || compare.index !== state.index) return;
      const low = window.level - window.width / 2, span = Math.max(window.width, 1e-9);
      const ctx = sliceCanvas.getContext("2d");
      const image = ctx.createImageData(state.width, state.height);
      for (let i = 0; i < values.length; i++) {
        const grey = Math.max(0, Math.min(255, Math.round(((values[i] * scale + offset - low) / span) * 255)));
        image.data[4 * i] = image.data[4 * i + 1] = image.data[4 * i + 2] = grey;
        image.data[4 * i + 3] = 255;
      }
      ctx.putImageData(image, 0, 0);
      img.classList.add("hidden");
      sliceCanvas.classList.remove("hidden");
    } else {
      // 8-bit sources are shown byte for byte: the two PNGs are the two versions
      sliceCanvas.classList.add("hidden");
      img.classList.remove("hidden");
      img.src = showOther ? other.image_url : fromTemplate(viewer.dataset.sliceUrlTemplate, state.index);
    }
    renderSliceChanges();
  }

  /** Show the change controls when some slice has changes (at load, or when a comparison arrives live). */
  function renderChangeControls() {
    $(viewer, "data-change-controls").classList.toggle("hidden", !Object.keys(SLICE_CHANGES).length);
  }

  /** A 16-bit greyscale PNG (as cv2 writes it) -> Uint16Array, with the browser's own zlib (DecompressionStream). */
  async function decodePng16(buffer) {
    const bytes = new Uint8Array(buffer);
    const view = new DataView(buffer);
    let pos = 8, width = 0, height = 0, depth = 0, colour = 0, interlace = 0;
    const idat = [];
    while (pos < bytes.length) {
      const length = view.getUint32(pos);
      const type = String.fromCharCode(...bytes.subarray(pos + 4, pos + 8));
      const data = bytes.subarray(pos + 8, pos + 8 + length);
      if (type === "IHDR") {
        width = view.getUint32(pos + 8); height = view.getUint32(pos + 12);
        depth = data[8]; colour = data[9]; interlace = data[12];
      } else if (type === "IDAT") idat.push(data);
      else if (type === "IEND") break;
      pos += 12 + length;
    }
    if (depth !== 16 || colour !== 0 || interlace !== 0) throw new Error("not a plain 16-bit greyscale PNG");
    const stream = new Blob(idat).stream().pipeThrough(new DecompressionStream("deflate"));
    const raw = new Uint8Array(await new Response(stream).arrayBuffer());
    const stride = width * 2, bpp = 2;
    const out = new Uint8Array(stride * height);
    for (let y = 0; y < height; y++) {
      const filter = raw[y * (stride + 1)];
      const src = y * (stride + 1) + 1, dst = y * stride, up = dst - stride;
      for (let x = 0; x < stride; x++) {
        const a = x >= bpp ? out[dst + x - bpp] : 0;
        const b = y > 0 ? out[up + x] : 0;
        const c = x >= bpp && y > 0 ? out[up + x - bpp] : 0;
        let v = raw[src + x];
        if (filter === 1) v += a;
        else if (filter === 2) v += b;
        else if (filter === 3) v += (a + b) >> 1;
        else if (filter === 4) {
          const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
          v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
        }
        out[dst + x] = v & 0xff;
      }
    }
    const values = new Uint16Array(width * height);
    for (let i = 0; i < values.length; i++) values[i] = (out[2 * i] << 8) | out[2 * i + 1]; // PNG is big-endian
    return values;
  }

  function native16(index) {
    if (!native.cache.has(index)) {
      const url = fromTemplate(viewer.dataset.slice16UrlTemplate, index);
      native.cache.set(index, fetch(url, { credentials: "same-origin" }).then((r) => {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.arrayBuffer();
      }).then(decodePng16));
    }
    return native.cache.get(index);
  }

  let drawToken = 0;
  async function drawWindowed() {
    const token = ++drawToken;
    const index = state.index;
    const status = $(viewer, "data-window-status");
    let values;
    try {
      values = await native16(index);
    } catch (err) {
      native.cache.delete(index);
      status.textContent = "The 16-bit pixels could not be read in this browser; showing the default window.";
      native.window = null;
      sliceCanvas.classList.add("hidden");
      img.classList.remove("hidden");
      img.src = fromTemplate(viewer.dataset.sliceUrlTemplate, index);
      return;
    }
    if (token !== drawToken) return; // a newer draw started meanwhile
    const low = native.window.level - native.window.width / 2;
    const span = Math.max(native.window.width, 1e-9);
    const ctx = sliceCanvas.getContext("2d");
    const image = ctx.createImageData(state.width, state.height);
    for (let i = 0; i < values.length; i++) {
      const value = values[i] * native.scale + native.offset;
      const grey = Math.max(0, Math.min(255, Math.round(((value - low) / span) * 255)));
      image.data[4 * i] = image.data[4 * i + 1] = image.data[4 * i + 2] = grey;
      image.data[4 * i + 3] = 255;
    }
    ctx.putImageData(image, 0, 0);
    img.classList.add("hidden");
    sliceCanvas.classList.remove("hidden");
    status.textContent = "";
  }

  function setupWindowControls() {
    const box = $(viewer, "data-window-controls");
    if (!native || !box) return;
    const levelInput = $(box, "data-window-level"), widthInput = $(box, "data-window-width");
    const levelOut = $(box, "data-level-value"), widthOut = $(box, "data-width-value");
    // The native range the PNG can hold (0..65535 scaled), for the sliders' bounds.
    const minValue = native.offset, maxValue = native.offset + 65535 * native.scale;
    const defaults = { level: (native.low + native.high) / 2, width: Math.max(native.high - native.low, native.scale) };
    const observedMax = Math.max(native.high * 2 - native.low, native.high + 1);
    levelInput.min = String(minValue);
    levelInput.max = String(Math.min(maxValue, observedMax));
    widthInput.min = String(native.scale);
    widthInput.max = String(Math.max(2 * (Number(levelInput.max) - minValue), defaults.width * 2));
    function show(w) {
      levelInput.value = String(w.level);
      widthInput.value = String(w.width);
      levelOut.textContent = fmt(w.level, 0);
      widthOut.textContent = fmt(w.width, 0);
    }
    show(defaults);
    function onInput() {
      native.window = { level: Number(levelInput.value), width: Number(widthInput.value) };
      levelOut.textContent = fmt(native.window.level, 0);
      widthOut.textContent = fmt(native.window.width, 0);
      drawWindowed();
    }
    levelInput.addEventListener("input", onInput);
    widthInput.addEventListener("input", onInput);
    $(box, "data-window-reset").addEventListener("click", () => {
      native.window = null;
      show(defaults);
      sliceCanvas.classList.add("hidden");
      img.classList.remove("hidden");
      showSlice(state.index);
    });
  }

  if (slider) slider.addEventListener("input", () => showSlice(Number(slider.value)));
  $(viewer, "data-overlay-toggle").addEventListener("change", (event) => {
    state.showOverlay = event.target.checked;
    drawOverlay();
  });
  $(viewer, "data-change-toggle").addEventListener("change", (event) => {
    state.showChanges = event.target.checked;
    drawOverlay();
  });
  document.addEventListener("slice-changes", (event) => {
    SLICE_CHANGES = event.detail || {};
    state.changeMasks.clear();
    renderChangeControls();
    if (state.results.size) renderStrip();
    showSlice(state.index);
  });
  renderChangeControls();
  if (Object.keys(SLICE_CHANGES).length) showSlice(state.index); // the shown slice's changes before any result
  setupWindowControls();
  poll();
})();
