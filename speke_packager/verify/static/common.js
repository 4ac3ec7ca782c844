// Shared by the player pages: playback state for `speke-packager serve --check`, EME events.
(function () {
  "use strict";
  var state = { errors: [], events: [], keySystem: [] };
  function note(list, text) { if (list.length < 200) list.push(String(text)); }
  window.__speke = {
    error: function (text) { note(state.errors, text); },
    event: function (text) { note(state.events, text); },
    keySystem: function (text) { note(state.keySystem, text); },
    params: new URLSearchParams(location.search),
    abs: function (p) { return p ? new URL(p, location.href).href : null; },
    snapshot: function () {
      var v = document.getElementById("video");
      var q = v && v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
      return {
        frames: q ? q.totalVideoFrames - q.droppedVideoFrames : 0,
        dropped: q ? q.droppedVideoFrames : 0,
        currentTime: v ? v.currentTime : 0,
        errors: state.errors.slice(), events: state.events.slice(),
        keySystem: state.keySystem.slice()
      };
    }
  };
  var S = window.__speke;
  // EME instrumentation: which key system, licence messages, key statuses.
  if (navigator.requestMediaKeySystemAccess) {
    var rmksa = navigator.requestMediaKeySystemAccess.bind(navigator);
    navigator.requestMediaKeySystemAccess = function (ks, cfg) {
      return rmksa(ks, cfg).then(function (a) { S.keySystem("access " + ks); return a; },
        function (e) { S.keySystem("access refused " + ks); throw e; });
    };
  }
  if (window.MediaKeys && !S.params.get("noeme")) {
    var create = MediaKeys.prototype.createSession;
    MediaKeys.prototype.createSession = function () {
      var s = create.apply(this, arguments);
      s.addEventListener("message", function (e) { S.keySystem("message " + e.messageType); });
      s.addEventListener("keystatuseschange", function () {
        s.keyStatuses.forEach(function (status) {
          S.keySystem("key status " + status);
          if (status === "internal-error" || status === "output-restricted" ||
              status === "expired") { S.error("key status " + status); }
        });
      });
      return s;
    };
  }
  document.addEventListener("DOMContentLoaded", function () {
    var v = document.getElementById("video");
    v.muted = true;
    v.addEventListener("encrypted", function (e) { S.keySystem("encrypted " + e.initDataType); });
    v.addEventListener("error", function () {
      var err = v.error;
      S.error("video error " + (err ? err.code + " " + (err.message || "") : ""));
    });
    ["loadedmetadata", "playing", "waiting", "ended"].forEach(function (n) {
      v.addEventListener(n, function () { S.event(n + " @" + v.currentTime.toFixed(2)); });
    });
  });
  window.addEventListener("error", function (e) { S.error("script error " + e.message); });
  window.addEventListener("unhandledrejection", function (e) {
    S.error("unhandled rejection " + (e.reason && (e.reason.message || e.reason.code) || e.reason));
  });
})();
