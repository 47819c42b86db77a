/* The dashboard's live map: /live (server-sent events) -> colours, titles, the table, alerts, on air,
   the emergency banner; no reload. The server sends the words (in the page's language) and the classes. */
(function () {
  "use strict";
  function setText(el, text) { if (el && el.textContent !== text) { el.textContent = text; } }
  function list(id, items, render) {
    var ul = document.getElementById(id);
    if (!ul) { return; }
    ul.textContent = "";
    if (!items.length) {
      var li = document.createElement("li"); li.className = "muted"; li.textContent = ul.getAttribute("data-empty") || "";
      ul.appendChild(li); return;
    }
    items.forEach(function (item) { ul.appendChild(render(item)); });
  }
  function nodes(data) {
    Object.keys(data).forEach(function (id) {
      var s = data[id];
      var g = document.getElementById("map-" + id);
      if (g) {
        if (g.getAttribute("class") !== s.cls) { g.setAttribute("class", s.cls); }
        setText(g.querySelector("title"), s.title);
      }
      var row = document.getElementById("row-" + id);
      if (row) {
        var badge = row.querySelector('[data-f="online"] .badge');
        if (badge) { badge.className = "badge " + (s.online ? "ok" : "bad"); setText(badge, s.online_text); }
        setText(row.querySelector('[data-f="lamp"]'), s.lamp_text || "–");
        setText(row.querySelector('[data-f="spk"]'), s.spk_text || "–");
        setText(row.querySelector('[data-f="fault"]'), s.fault_text || "");
      }
    });
  }
  function alerts(data) {
    list("alerts-list", data, function (a) {
      var li = document.createElement("li"); li.className = "sev-" + a.severity; li.textContent = a.text; return li;
    });
  }
  function onair(data) {
    list("onair-list", data, function (o) {
      var li = document.createElement("li");
      if (o.emergency) { li.className = "sev-critical"; }
      var b = document.createElement("strong"); b.textContent = o.title;
      li.appendChild(b); li.appendChild(document.createTextNode(": " + o.names.join(", ")));
      return li;
    });
  }
  function emergency(data) {
    var box = document.getElementById("emergency-banner");
    if (!box) { return; }
    box.textContent = "";
    data.forEach(function (e) {
      var p = document.createElement("p"); p.className = "emergency-live";
      var b = document.createElement("strong"); b.textContent = e.text; p.appendChild(b);
      p.appendChild(document.createTextNode(" · " + e.count + " · "));
      var a = document.createElement("a"); a.href = "/emergency/" + encodeURIComponent(e.batch); a.textContent = e.link;
      p.appendChild(a); box.appendChild(p);
    });
  }
  var handlers = { nodes: nodes, alerts: alerts, onair: onair, emergency: emergency };
  function start() {
    if (!window.denloa) { return setTimeout(start, 50); }
    window.denloa.live(function (kind, data) { if (handlers[kind]) { handlers[kind](data); } });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
