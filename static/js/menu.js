/* <details class="menu" data-menu>: a button that opens a short list of links. The browser opens and closes it
 * (keyboard included); this closes it on Escape, returning the focus to its button, and on a click elsewhere. */
(function () {
  "use strict";
  const menus = document.querySelectorAll("details[data-menu]");
  if (!menus.length) return;
  document.addEventListener("click", (event) => {
    menus.forEach((menu) => { if (menu.open && !menu.contains(event.target)) menu.open = false; });
  });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    menus.forEach((menu) => {
      if (!menu.open) return;
      menu.open = false;
      menu.querySelector("summary").focus();
    });
  });
})();
