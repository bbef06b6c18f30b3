// Upload page: drag and drop, one progress bar per upload, errors shown next to each file.
// Without JavaScript the form posts normally and the page shows the error.
//
// One upload = one scan on the server: all DICOM files dropped together go in one upload (a series);
// every other file (zip, NIfTI, PNG, JPEG, TIFF) is uploaded on its own.
(function () {
  "use strict";

  var form = document.getElementById("upload-form");
  if (!form || !window.FormData || !window.XMLHttpRequest) return;
  var input = form.querySelector('input[type="file"]');
  var dropzone = document.getElementById("dropzone");
  var queue = document.getElementById("upload-queue");
  var submit = document.getElementById("upload-submit");
  var apiUrl = form.getAttribute("data-api-url");
  var csrf = form.querySelector('input[name="csrfmiddlewaretoken"]').value;
  var chosen = [];

  // DICOM files are often named by number or UID ("IM0001", "1.2.840.113619.2.55.3.7"): no extension, or digits.
  function isSeriesMember(file) {
    var name = file.name.toLowerCase();
    var dot = name.lastIndexOf(".");
    var ext = dot < 0 ? "" : name.slice(dot + 1);
    return ext === "" || ext === "dcm" || ext === "dicom" || /^[0-9]+$/.test(ext);
  }

  function groups(files) {
    var series = [], out = [];
    files.forEach(function (f) {
      if (isSeriesMember(f)) series.push(f); else out.push([f]);
    });
    if (series.length) out.unshift(series);
    return out;
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function formatSize(bytes) {
    if (bytes < 1024 * 1024) return Math.max(1, Math.round(bytes / 1024)) + " KB";
    return (bytes / (1024 * 1024)).toFixed(1) + " MB";
  }

  function label(group) {
    return group.length === 1 ? group[0].name : group[0].name + " and " + (group.length - 1) + " more (one series)";
  }

  function showChosen() {
    queue.textContent = "";
    groups(chosen).forEach(function (group) {
      var total = group.reduce(function (s, f) { return s + f.size; }, 0);
      queue.appendChild(el("li", "small", label(group) + " · " + formatSize(total)));
    });
  }

  function setFiles(files) {
    chosen = Array.prototype.slice.call(files);
    showChosen();
  }

  input.addEventListener("change", function () { setFiles(input.files); });
  Array.prototype.forEach.call(document.querySelectorAll(".js-only"), function (n) { n.classList.remove("hidden"); });

  ["dragenter", "dragover"].forEach(function (type) {
    dropzone.addEventListener(type, function (e) {
      e.preventDefault();
      dropzone.classList.add("dragover");
    });
  });
  ["dragleave", "drop"].forEach(function (type) {
    dropzone.addEventListener(type, function (e) {
      e.preventDefault();
      dropzone.classList.remove("dragover");
    });
  });
  dropzone.addEventListener("drop", function (e) {
    if (e.dataTransfer && e.dataTransfer.files.length) setFiles(e.dataTransfer.files);
  });

  function uploadGroup(group, item) {
    return new Promise(function (resolve) {
      var bar = el("div", "progress-bar");
      var fill = el("div", "progress-fill");
      fill.style.width = "0%";
      bar.setAttribute("role", "progressbar");
      bar.setAttribute("aria-valuemin", "0");
      bar.setAttribute("aria-valuemax", "100");
      bar.appendChild(fill);
      var status = el("div", "small muted", "Uploading…");
      item.appendChild(bar);
      item.appendChild(status);

      var data = new FormData();
      group.forEach(function (f) { data.append("files", f, f.name); });
      var sequence = form.querySelector("[name=sequence]");
      if (sequence && sequence.value) data.append("sequence", sequence.value);
      var xhr = new XMLHttpRequest();
      xhr.open("POST", apiUrl);
      xhr.setRequestHeader("X-CSRFToken", csrf);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", function (e) {
        if (!e.lengthComputable) return;
        var pct = Math.round((e.loaded / e.total) * 100);
        fill.style.width = pct + "%";
        bar.setAttribute("aria-valuenow", String(pct));
        status.textContent = pct < 100 ? "Uploading… " + pct + "%" : "Checking and storing the scan…";
      });
      xhr.addEventListener("load", function () {
        var body = null;
        try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
        if ((xhr.status === 201 || xhr.status === 200) && body && body.scan) {
          fill.style.width = "100%";
          status.className = "small";
          status.textContent = body.message + " ";
          var link = el("a", "", "Open the scan");
          link.href = body.scan.page_url;
          status.appendChild(link);
          resolve({ ok: true, url: body.scan.page_url });
          return;
        }
        bar.classList.add("hidden");
        status.className = "errorlist";
        status.setAttribute("role", "alert");
        status.textContent = (body && body.error) || ("The upload failed (HTTP " + xhr.status + ").");
        if (body && Array.isArray(body.detail) && body.detail.length > 1) {
          var list = el("ul", "errorlist");
          body.detail.forEach(function (e) {
            var li = el("li");
            li.appendChild(el("strong", "", e.file + ": "));
            li.appendChild(document.createTextNode(e.error));
            list.appendChild(li);
          });
          item.appendChild(list);
        }
        resolve({ ok: false });
      });
      xhr.addEventListener("error", function () {
        bar.classList.add("hidden");
        status.className = "errorlist";
        status.textContent = "The connection failed during the upload. Check the network and try again.";
        resolve({ ok: false });
      });
      xhr.send(data);
    });
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    if (!chosen.length && input.files.length) setFiles(input.files);
    if (!chosen.length) {
      queue.textContent = "";
      queue.appendChild(el("li", "errorlist", "Choose or drop a scan file first."));
      return;
    }
    var serverError = document.getElementById("upload-error");
    if (serverError) serverError.remove();
    submit.disabled = true;
    var all = groups(chosen);
    queue.textContent = "";
    var results = [];
    // One upload after the other: the server decodes each scan, and two CPU-heavy uploads gain nothing.
    all.reduce(function (previous, group) {
      return previous.then(function () {
        var item = el("li", "card");
        item.appendChild(el("div", "", label(group)));
        queue.appendChild(item);
        return uploadGroup(group, item).then(function (r) { results.push(r); });
      });
    }, Promise.resolve()).then(function () {
      submit.disabled = false;
      chosen = [];
      input.value = "";
      if (results.length === 1 && results[0].ok) window.location.assign(results[0].url);
    });
  });
})();
