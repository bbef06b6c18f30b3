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
