/* Broadcasts pages: show the form's parts that fit the choices, TTS preview, clip playback, upload,
   recording in the browser (MediaRecorder), the "all zones" box, and a confirm before deleting. */
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };

  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (e) { if (!window.confirm(f.getAttribute("data-confirm"))) { e.preventDefault(); } });
  });

  var form = $("bc-form");
  if (!form) { return; }

  function checkedSource() { var r = form.querySelector("input[name=source]:checked"); return r ? r.value : ""; }
  function sync() {
    var repeat = $("repeat").value, source = checkedSource();
    form.querySelectorAll("[data-repeat]").forEach(function (el) { el.hidden = el.getAttribute("data-repeat") !== repeat; });
    form.querySelectorAll("[data-source]").forEach(function (el) { el.hidden = el.getAttribute("data-source").split(" ").indexOf(source) < 0; });
  }
  form.addEventListener("change", sync);
  sync();

  var all = $("zone-all");
  if (all) {
    all.addEventListener("change", function () {
      form.querySelectorAll("input.zone").forEach(function (z) { z.checked = all.checked; });
    });
  }

  function say(el, text, bad) {
    el.textContent = "";
    var p = document.createElement("p");
    p.className = bad ? "error" : "muted";
    if (bad) { p.setAttribute("role", "alert"); }
    p.textContent = text;
    el.appendChild(p);
  }
  function refusal(el, err) {
    /* the server's refusal in both languages: a commune officer may forward it to the supplier */
    el.textContent = "";
    var d = err.data || {};
    var p = document.createElement("p");
    p.className = "error"; p.setAttribute("role", "alert");
    var vi = document.createElement("span"); vi.lang = "vi"; vi.textContent = d.message || err.message;
    p.appendChild(vi);
    if (d.message_en && d.message_en !== d.message) {
      p.appendChild(document.createTextNode(" / "));
      var en = document.createElement("span"); en.lang = "en"; en.textContent = d.message_en;
      p.appendChild(en);
    }
    el.appendChild(p);
  }

  /* TTS preview: the WAV comes back as a blob, played in the page */
  var previewUrl = null;
  $("tts-preview").addEventListener("click", function () {
    var status = $("tts-status"), audio = $("tts-audio");
    status.textContent = window.denloa.s("tts.making");
    window.denloa.api("POST", "/api/tts/preview", {
      text: $("tts_text").value, voice: $("voice").value, speed: parseFloat(String($("speed").value).replace(",", ".")) || 1.0
    }).then(function (blob) {
      if (previewUrl) { URL.revokeObjectURL(previewUrl); }
      previewUrl = URL.createObjectURL(blob);
      audio.src = previewUrl;
      status.textContent = window.denloa.s("tts.ready");
      var played = audio.play();
      if (played && played.catch) { played.catch(function () { /* autoplay refused: the controls are there */ }); }
    }).catch(function (err) { refusal(status, err); });
  });

  $("clip-play").addEventListener("click", function () {
    var id = $("clip").value, audio = $("clip-audio");
    if (!id) { return; }
    audio.src = "/api/clips/" + id + "/audio";
    var played = audio.play();
    if (played && played.catch) { played.catch(function () {}); }
  });

  function addClip(row) {
    var sel = $("clip"), opt = null;
    for (var i = 0; i < sel.options.length; i++) { if (sel.options[i].value === row.id) { opt = sel.options[i]; } }
    if (!opt) {
      opt = document.createElement("option");
      opt.value = row.id;
      var s = Math.round(row.duration_ms / 1000);
      opt.textContent = row.title + " (" + Math.floor(s / 60) + ":" + ("0" + s % 60).slice(-2) + ")";
      sel.appendChild(opt);
    }
    sel.value = row.id;
    sel.dispatchEvent(new Event("change", { bubbles: true }));
  }
  function sendClip(fileOrBlob, filename, source, status) {
    var fd = new FormData();
    fd.append("file", fileOrBlob, filename);
    fd.append("title", $("title").value || filename);
    fd.append("category", $("category").value);
    fd.append("source", source);
    say(status, window.denloa.s("clip.uploading"));
    return window.denloa.api("POST", "/api/clips", fd, true).then(function (row) {
      addClip(row);
      say(status, window.denloa.s("clip.added", { title: row.title, seconds: Math.round(row.duration_ms / 1000) }));
    }).catch(function (err) { refusal(status, err); });
  }
  $("upload-send").addEventListener("click", function () {
    var input = $("upload-file"), status = $("upload-status");
    if (!input.files || !input.files[0]) { say(status, window.denloa.s("clip.no_file"), true); return; }
    sendClip(input.files[0], input.files[0].name, "upload", status);
  });

  /* recording: MediaRecorder -> a WebM/Opus (or whatever the browser makes) clip with source "recording" */
  var recorder = null, chunks = [];
  $("rec-start").addEventListener("click", function () {
    var status = $("rec-status");
    if (!navigator.mediaDevices || !window.MediaRecorder) {
      say(status, window.denloa.s("rec.unsupported"), true); return;
    }
    navigator.mediaDevices.getUserMedia({ audio: true }).then(function (stream) {
      chunks = [];
      recorder = new MediaRecorder(stream);
      recorder.ondataavailable = function (e) { if (e.data && e.data.size) { chunks.push(e.data); } };
      recorder.onstop = function () {
        stream.getTracks().forEach(function (tr) { tr.stop(); });
        var type = recorder.mimeType || "audio/webm";
        var ext = type.indexOf("ogg") >= 0 ? ".ogg" : type.indexOf("mp4") >= 0 ? ".m4a" : ".webm";
        sendClip(new Blob(chunks, { type: type }), "ghi-am" + ext, "recording", status);
      };
      recorder.start();
      $("rec-start").disabled = true; $("rec-stop").disabled = false;
      say(status, window.denloa.s("rec.recording"));
    }).catch(function () { say(status, window.denloa.s("rec.no_mic"), true); });
  });
  $("rec-stop").addEventListener("click", function () {
    if (recorder && recorder.state !== "inactive") { recorder.stop(); }
    $("rec-start").disabled = false; $("rec-stop").disabled = true;
  });
})();
