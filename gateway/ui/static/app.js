/* denloa staff UI: the little JavaScript every page shares.
   - denloa.api(method, path, body): fetch() to the JSON API with the session's CSRF token;
     rejects with the server's message in the page's language.
   - denloa.live(handler): one EventSource on /live (server-sent events) for the page; handler(kind, data).
   - denloa.t(vi, en): pick a string by the page's language (for the few strings built in JS). */
(function () {
  "use strict";
  var meta = function (name) { var m = document.querySelector('meta[name="' + name + '"]'); return m ? m.content : ""; };
  var lang = meta("lang") || "vi";
  var denloa = window.denloa = {
    lang: lang,
    csrf: meta("csrf-token"),
    t: function (vi, en) { return lang === "vi" ? vi : en; },
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
          var err = new Error(msg || denloa.t("Không thực hiện được (mã " + r.status + ")", "Could not do that (status " + r.status + ")"));
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
