/* The PACS import page: once a series' Import button is pressed, the retrieval and the upload checks take a few
 * seconds. Say so on the button and disable the others, so that nobody imports twice or wonders whether it
 * started; the server answers with the scan page (or this page with the reason). */
(function () {
  "use strict";
  const results = document.querySelector("[data-pacs-results]");
  if (!results) return;
  results.addEventListener("submit", (event) => {
    const form = event.target.closest("form");
    if (!form) return;
    results.setAttribute("aria-busy", "true");
    results.querySelectorAll("form button").forEach((button) => { button.disabled = true; });
    const pressed = form.querySelector("button");
    pressed.textContent = "Importing…";
  });
})();
