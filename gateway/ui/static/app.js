/* denloa staff UI: the little JavaScript every page shares.
   - denloa.api(method, path, body): fetch() to the JSON API with the session's CSRF token;
     rejects with the server's message in the page's language.
   - denloa.live(handler): one EventSource on /live (server-sent events) for the page; handler(kind, data).
   - denloa.s(key, values): a string the script shows, in the page's language, from the one catalogue:
     gateway/ui/js_strings.py names the keys, base.html writes their translations once per page
     (<script type="application/json" id="denloa-strings">); %(name)s is filled from values, %% is "%". */
(function () {
  "use strict";
  var meta = function (name) { var m = document.querySelector('meta[name="' + name + '"]'); return m ? m.content : ""; };
  var lang = meta("lang") || "vi";
  var strings = null;
  var readStrings = function () {
    var el = document.getElementById("denloa-strings");
    if (!el) { return {}; }
    try { strings = JSON.parse(el.textContent) || {}; } catch (x) { strings = {}; }
    return strings;
  };
  var denloa = window.denloa = {
    lang: lang,
    csrf: meta("csrf-token"),
    s: function (key, values) {
      var all = strings || readStrings();
      var text = Object.prototype.hasOwnProperty.call(all, key) ? all[key] : key;
      if (!values) { return text; }
      return text.replace(/%\((\w+)\)s|%%/g, function (whole, name) {
        if (name === undefined) { return "%"; }
        return Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : whole;
      });
    },
    api: function (method, path, body, isForm) {
      var opts = { method: method, headers: { "X-CSRF-Token": denloa.csrf }, credentials: "same-origin" };
      if (body !== undefined && body !== null) {
        if (isForm) { opts.body = body; } else { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
      }
      return fetch(path, opts).then(function (r) {
        var type = r.headers.get("content-type") || "";
        var got = type.indexOf("json") >= 0 ? r.json() : r.blob();
        return got.then(function (data) {
          if (r.ok) { return data; }
          var msg = data && (lang === "vi" ? data.message : (data.message_en || data.message));
          var err = new Error(msg || denloa.s("api.failed", { status: r.status }));
          err.status = r.status; err.data = data; throw err;
        });
      });
    },
    live: function (handler) {
      if (!window.EventSource) { return null; }
      var source = new EventSource("/live");
      ["nodes", "alerts", "onair", "emergency"].forEach(function (kind) {
        source.addEventListener(kind, function (e) { try { handler(kind, JSON.parse(e.data)); } catch (x) { /* a bad frame is skipped */ } });
      });
      return source;
    }
  };
})();
