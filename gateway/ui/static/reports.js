/* denloa reports: the print view's Print button (no inline script: the page works without it too). */
(function () {
  "use strict";
  var button = document.getElementById("print-now");
  if (button) { button.addEventListener("click", function () { window.print(); }); }
})();
