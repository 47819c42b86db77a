/* The emergency pages' little JavaScript (gateway/ui/pages/emergency.py):
   - the form: "All hamlets" ticks every hamlet; the button says it is working (the text-to-speech takes a moment);
   - the confirm step with the microphone: ask for the microphone, start a push stream (POST /api/streams,
     priority emergency) and open the progress view with it;
   - the progress view of a microphone broadcast: MediaRecorder chunks (webm/opus) to /api/streams/{id}/chunk,
     in order, until Stop. */
(function () {
  "use strict";
  var d = window.denloa;

  function formPage() {
    var form = document.getElementById("em-form");
    if (!form) { return; }
    var all = document.getElementById("zone-all");
    var zones = form.querySelectorAll('input[name="zones"]');
    all.addEventListener("change", function () { zones.forEach(function (z) { z.checked = all.checked; }); });
    zones.forEach(function (z) { z.addEventListener("change", function () { if (!z.checked) { all.checked = false; } }); });
    form.addEventListener("submit", function () {
      document.getElementById("em-working").hidden = false;
      setTimeout(function () { document.getElementById("em-next").disabled = true; }, 0);
    });
  }

  function confirmPage() {
    var form = document.getElementById("em-confirm-form");
    if (!form) { return; }
    var button = document.getElementById("em-confirm");
    var error = document.getElementById("em-confirm-error");
    form.addEventListener("submit", function (e) {
      if (form.getAttribute("data-source") !== "mic") {
        setTimeout(function () { button.disabled = true; }, 0);  // one emergency per click
        return;
      }
      e.preventDefault();
      button.disabled = true;
      error.hidden = true;
      var media = navigator.mediaDevices;
      var ask = media && media.getUserMedia ? media.getUserMedia({ audio: true }) : Promise.reject(new Error(""));
      ask.then(function (stream) {
        stream.getTracks().forEach(function (t) { t.stop(); });
        return d.api("POST", "/api/streams", {
          kind: "push", zones: form.getAttribute("data-zones").split(","), priority: "emergency",
          volume: parseInt(form.getAttribute("data-volume"), 10), max_seconds: 1800 });
      }).then(function (started) {
        window.location.href = "/emergency/" + encodeURIComponent(started.batch) + "?stream=" + encodeURIComponent(started.id);
      }).catch(function (err) {
        error.textContent = (err && err.message) || window.denloa.s("emergency.no_mic");
        error.hidden = false;
        button.disabled = false;
      });
    });
  }

  function micPage() {
    var panel = document.getElementById("mic-panel");
    if (!panel) { return; }
    var id = panel.getAttribute("data-stream");
    var state = document.getElementById("mic-state");
    var words = document.getElementById("mic-words");
    var queue = [], sending = false, ended = false, recorder = null, tracks = [];
    function say(key) { state.textContent = words.getAttribute("data-" + key); }
    function finish(key) {
      ended = true;
      if (recorder && recorder.state !== "inactive") { try { recorder.stop(); } catch (x) { /* already */ } }
      tracks.forEach(function (t) { t.stop(); });
      say(key);
    }
    function pump() {
      if (sending || !queue.length || ended) { return; }
      sending = true;
      var blob = queue.shift();
      d.api("POST", "/api/streams/" + encodeURIComponent(id) + "/chunk", blob, true)
        .then(function () { sending = false; pump(); })
        .catch(function () { sending = false; finish("ended"); });
    }
    navigator.mediaDevices.getUserMedia({ audio: true }).then(function (stream) {
      tracks = stream.getTracks();
      var type = window.MediaRecorder && MediaRecorder.isTypeSupported("audio/webm;codecs=opus") ? "audio/webm;codecs=opus" : "";
      recorder = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
      recorder.ondataavailable = function (e) { if (e.data && e.data.size && !ended) { queue.push(e.data); pump(); } };
      recorder.start(250);
      say("live");
    }).catch(function () { finish("denied"); });
    var stop = document.getElementById("em-stop-form");
    if (stop) { stop.addEventListener("submit", function () { finish("ended"); }); }
    window.addEventListener("pagehide", function () { finish("ended"); });
  }

  function start() {
    if (!window.denloa) { return setTimeout(start, 50); }
    d = window.denloa;
    formPage(); confirmPage(); micPage();
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
