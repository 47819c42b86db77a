/* Devices pages: live connection/output badges on the list (from /live), and on a node's page the
   telemetry charts (uPlot, from /api/nodes/{id}/telemetry) with a text summary under each. */
(function () {
  "use strict";
  var tzS = 0;

  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (e) { if (!window.confirm(form.getAttribute("data-confirm"))) { e.preventDefault(); } });
  });

  // ---- list: live state ----
  var rows = document.querySelectorAll("#nodes tr[data-node]");
  if (rows.length && window.denloa) {
    window.denloa.live(function (kind, data) {
      if (kind !== "nodes") { return; }
      rows.forEach(function (row) {
        var n = data[row.getAttribute("data-node")];
        if (!n) { return; }
        var conn = row.querySelector(".conn .badge");
        var wasOnline = conn && conn.classList.contains("ok");
        if (conn && wasOnline !== n.online) {
          conn.className = "badge " + (n.online ? "ok" : "bad");
          // the server's words, dated as on the page ("mất kết nối từ 17:02"); the bare word if an old frame lacks them
          conn.textContent = (n.online ? "● " : "✕ ") + (n.conn_text ||
            (n.online ? window.denloa.s("node.online") : window.denloa.s("node.offline")));
        }
      });
    });
  }

  // ---- node page: charts ----
  var box = document.getElementById("charts");
  if (!box) { return; }
  var node = box.getAttribute("data-node");
  var status = document.getElementById("chart-status");
  var select = document.getElementById("hours");
  var plots = [];
  var pad = function (n) { return (n < 10 ? "0" : "") + n; };
  var local = function (ts) { return new Date((ts + tzS) * 1000); };  // read with getUTC*: the site's time
  var hm = function (ts) { var d = local(ts); return pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()); };
  var dm = function (ts) { var d = local(ts); return pad(d.getUTCDate()) + "/" + pad(d.getUTCMonth() + 1); };
  var num = function (v) {
    var s = (Math.round(v * 10) / 10).toString();
    return window.denloa && window.denloa.lang === "vi" ? s.replace(".", ",") : s;
  };

  var lastPayload = null;
  function draw(payload) {
    lastPayload = payload;
    tzS = payload.tz_s || 0;
    var s = payload.series;
    var span = (payload.hours || 24) * 3600;
    plots.forEach(function (p) { p.destroy(); });
    plots = [];
    var total = 0;
    box.querySelectorAll("figure.chart").forEach(function (fig) {
      var key = fig.getAttribute("data-series");
      var scale = parseFloat(fig.getAttribute("data-scale") || "1");
      var ys = s[key].map(function (v) { return v === null || v === undefined ? null : v * scale; });
      var real = ys.filter(function (v) { return v !== null; });
      fig.setAttribute("data-points", String(real.length));
      total += real.length;
      var sum = fig.querySelector("figcaption");
      if (!real.length) {
        sum.textContent = window.denloa.s("chart.empty");
      } else {
        var unit = fig.getAttribute("data-unit");
        sum.textContent = window.denloa.s("chart.summary", {
          last: num(real[real.length - 1]), unit: unit, time: hm(s.t[s.t.length - 1]),
          min: num(Math.min.apply(null, real)), max: num(Math.max.apply(null, real)), n: real.length });
      }
      var el = fig.querySelector(".plot");
      el.replaceChildren();
      if (!window.uPlot) { return; }
      var width = Math.max(260, el.clientWidth || fig.clientWidth || 300);
      var opts = {
        width: width, height: 180, legend: { show: false }, cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true, range: [payload.now - span, payload.now + span * 0.02] } },
        tzDate: function (ts) { var d = local(ts); return new Date(d.getTime() + d.getTimezoneOffset() * 60000); },
        series: [{}, { label: key, stroke: "#0b5cad", width: 2, fill: "rgba(11,92,173,0.08)", spanGaps: false,
                      points: { show: real.length < 60, size: 7 } }],
        axes: [{ values: function (u, splits) { return splits.map(function (v) { return span > 86400 ? dm(v) + " " + hm(v) : hm(v); }); },
                 space: 70 },
               { values: function (u, splits) { return splits.map(function (v) { return num(v); }); }, size: 55 }]
      };
      plots.push(new window.uPlot(opts, [s.t, ys], el));
    });
    status.textContent = total ? window.denloa.s("chart.drawn", { hours: payload.hours }) : window.denloa.s("chart.empty");
    box.setAttribute("data-drawn", String(total));
  }

  function load() {
    var hours = select ? select.value : "24";
    fetch("/api/nodes/" + encodeURIComponent(node) + "/telemetry?hours=" + hours, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(draw)
      .catch(function () { status.textContent = window.denloa.s("chart.failed"); });
  }
  if (select) { select.addEventListener("change", load); }
  var resizing = null;
  window.addEventListener("resize", function () {  // a turned phone or a resized window: draw to the new width
    clearTimeout(resizing);
    resizing = setTimeout(function () { if (lastPayload) { draw(lastPayload); } }, 50);
  });
  load();
  setInterval(load, 60000);
})();
