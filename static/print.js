// Buttons marked data-print open the browser's print dialog (print CSS fits the page to A4).
document.addEventListener("click", function (event) {
  "use strict";
  if (event.target.closest("[data-print]")) { window.print(); }
});
