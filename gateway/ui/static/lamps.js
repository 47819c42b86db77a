/* Lamp programs page: show only the fields of the chosen kind of time (sun or clock), and keep the
   "now" column of the lamps table live from /live. Without JavaScript every field stays visible. */
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  ["on", "off"].forEach(function (key) {
    var set = document.getElementById(key + "-set");
    if (!set) { return; }
    var sync = function () {
      var clock = document.getElementById(key + "-kind-clock").checked;
      set.classList.toggle("kind-clock", clock);
      set.classList.toggle("kind-sun", !clock);
    };
    set.addEventListener("change", sync);
    sync();
  });
  var cells = document.querySelectorAll(".lamp-now[data-node]");
  if (cells.length && window.denloa) {
    window.denloa.live(function (kind, data) {
      if (kind !== "nodes") { return; }
      cells.forEach(function (cell) {
        var n = data[cell.getAttribute("data-node")];
        if (!n) { return; }
        var lamp = n.tele && n.tele.lamp;
        var badge = document.createElement("span");
        if (!n.online) { badge.className = "badge bad"; badge.textContent = window.denloa.s("node.offline"); }
        else if (lamp && lamp.lvl > 0) { badge.className = "badge ok"; badge.textContent = window.denloa.s("lamp.lit", { level: lamp.lvl }); }
        else { badge.className = "badge off"; badge.textContent = window.denloa.s("lamp.off"); }
        cell.replaceChildren(badge);
      });
    });
  }
})();
