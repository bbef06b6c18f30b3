/* The scan page's "Sent to the PACS" list: while a transfer is queued, sending or waiting to try again, ask the API
 * how it is going (GET /api/scans/<id>/pacs-transfers/: every 2 s while one is queued or sending, every 20 s while
 * they only wait, for at most 2 hours) and show its outcome in place, so the doctor does not have to reload the
 * page. The page itself renders the same three parts (status, outcome, detail). */
(function () {
  "use strict";
  const section = document.querySelector("[data-pacs-transfers]");
  if (!section) return;
  const LABELS = { queued: "Queued", sending: "Sending", retrying: "Waiting to try again", sent: "Sent", failed: "Failed" };
  const BADGE = { sent: "done", failed: "failed" };
  const ACTIVE = '[data-pacs-transfer="queued"], [data-pacs-transfer="sending"]';
  const pending = () => section.querySelectorAll(ACTIVE + ', [data-pacs-transfer="retrying"]');
  const deadline = Date.now() + 2 * 3600 * 1000;

  function show(item, transfer) {
    item.dataset.pacsTransfer = transfer.status;
    const badge = item.querySelector("[data-pacs-status]");
    badge.className = "badge badge-" + (BADGE[transfer.status] || "queued");
    badge.textContent = LABELS[transfer.status] || transfer.status;
    item.querySelector("[data-pacs-outcome]").textContent = transfer.outcome ? ": " + transfer.outcome : "";
    item.querySelector("[data-pacs-detail]").textContent = transfer.detail || "";
  }

  async function poll() {
    if (!pending().length || Date.now() > deadline) return;
    try {
      const response = await fetch(section.dataset.pacsUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.ok) {
        const byId = new Map((await response.json()).map((t) => [String(t.id), t]));
        for (const item of pending()) {
          const transfer = byId.get(item.dataset.pacsId);
          if (transfer) show(item, transfer);
        }
      }
    } catch (e) {
      /* the network blinked: try again at the next tick */
    }
    setTimeout(poll, section.querySelector(ACTIVE) ? 2000 : 20000);
  }
  setTimeout(poll, 1000);
})();

/* The scan page's "PACS copy": while the comparison queued after the upload (PACS_COMPARE_UPLOADS) waits for a
 * worker, ask the API where it stands (GET /api/scans/<id>/pacs-comparison/: every 2 s for two minutes, then every
 * 10 s, for at most 30 minutes) and show the outcome in place, with the warning above the verdict when the PACS's
 * copy differs. The page itself renders the same parts. */
(function () {
  "use strict";
  const item = document.querySelector('[data-pacs-comparison][data-state="queued"]');
  if (!item) return;
  const warning = document.querySelector("[data-pacs-comparison-warning]");
  const started = Date.now();

  function show(status) {
    item.dataset.state = status.state;
    const outcome = item.querySelector("[data-pacs-comparison-outcome]");
    outcome.textContent = "";
    if (status.comparison) {
      outcome.append(status.comparison.text + " ");
      const when = document.createElement("span");
      when.className = "small muted";
      when.textContent = "(" + status.comparison_when + ")";
      outcome.append(when);
    }
    const state = item.querySelector("[data-pacs-comparison-state]");
    state.textContent = status.text;
    state.className = status.state === "failed" || status.waiting_long ? "text-warning" : "muted";
    if (warning) {
      warning.classList.toggle("hidden", !status.differs);
      if (status.differs) {
        warning.querySelector("[data-pacs-warning-text]").textContent = status.comparison.text;
        warning.querySelector("[data-pacs-warning-when]").textContent = status.comparison_when;
        // where each altered slice differs (as scans.selectors.SliceChange.line)
        const list = warning.querySelector("[data-pacs-changes]");
        list.textContent = "";
        for (const change of status.comparison.changes || []) {
          const li = document.createElement("li");
          li.textContent = "Slice " + (change.slice + 1) + ", against the PACS's copy: " + change.text + ".";
          list.appendChild(li);
        }
      }
    }
    // the viewer outlines the changed pixels (static/js/viewer.js)
    if (status.state !== "queued") document.dispatchEvent(new CustomEvent("slice-changes", { detail: status.slice_changes || {} }));
  }

  async function poll() {
    const elapsed = Date.now() - started;
    if (elapsed > 30 * 60 * 1000) return;
    try {
      const response = await fetch(item.dataset.pacsComparisonUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.ok) {
        const status = await response.json();
        show(status);
        if (status.state !== "queued") return;
      }
    } catch (e) {
      /* the network blinked: try again at the next tick */
    }
    setTimeout(poll, elapsed < 2 * 60 * 1000 ? 2000 : 10000);
  }
  setTimeout(poll, 1000);
})();
