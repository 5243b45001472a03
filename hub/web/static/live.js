// Live fragments over Server-Sent Events, for the floor, the machine page and the kiosk.
// The script tag names its stream: <script src="live.js" data-stream="/plancher/flux">.
// Each "fragments" event maps element ids to their new HTML. EventSource reconnects by
// itself; while it is down the #connexion-perdue banner shows.
(function () {
  "use strict";
  var script = document.currentScript;
  var url = script && script.getAttribute("data-stream");
  if (!url) { return; }
  var banner = document.getElementById("connexion-perdue");
  var csrfMeta = document.querySelector('meta[name="csrf"]');
  var lastMessage = Date.now();
  var source = null;

  function setLive(up) {
    document.body.setAttribute("data-live", up ? "open" : "lost");
    if (banner) { banner.hidden = up; }
  }

  function refillCsrf(root) {
    if (!csrfMeta) { return; }
    var inputs = root.querySelectorAll('input[name="csrf"]');
    for (var i = 0; i < inputs.length; i++) { inputs[i].value = csrfMeta.content; }
  }

  function apply(fragments) {
    Object.keys(fragments).forEach(function (id) {
      var el = document.getElementById(id);
      if (!el) { return; }
      var t = document.createElement("template");
      t.innerHTML = fragments[id].trim();
      var fresh = t.content.firstElementChild;
      if (!fresh) { return; }
      refillCsrf(fresh);
      el.replaceWith(fresh);
    });
    tick();
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function tick() {
    var now = Date.now();
    var items = document.querySelectorAll("[data-until]:not([data-within])");
    for (var i = 0; i < items.length; i++) {
      var left = Math.round((Date.parse(items[i].getAttribute("data-until")) - now) / 1000);
      var text;
      if (isNaN(left)) { continue; }
      if (left <= 0) { text = "0:00"; }
      else if (left >= 3600) { text = Math.floor(left / 3600) + " h " + pad(Math.floor(left % 3600 / 60)); }
      else { text = Math.floor(left / 60) + ":" + pad(left % 60); }
      items[i].textContent = text;
      items[i].setAttribute("data-left", String(Math.max(left, 0)));
    }
    // Warnings (kiosk): shown while above < seconds left <= within.
    var warns = document.querySelectorAll("[data-within]");
    for (var j = 0; j < warns.length; j++) {
      var w = warns[j];
      var l = (Date.parse(w.getAttribute("data-until")) - now) / 1000;
      w.hidden = !(l > Number(w.getAttribute("data-above")) && l <= Number(w.getAttribute("data-within")));
    }
  }

  function connect() {
    source = new EventSource(url);
    source.addEventListener("open", function () { lastMessage = Date.now(); setLive(true); });
    source.addEventListener("error", function () {
      setLive(false);
      if (source.readyState === EventSource.CLOSED) {  // e.g. a 401: try again later
        source.close();
        setTimeout(connect, 3000);
      }
    });
    source.addEventListener("ping", function () { lastMessage = Date.now(); setLive(true); });
    source.addEventListener("fragments", function (e) {
      lastMessage = Date.now();
      setLive(true);
      apply(JSON.parse(e.data).fragments);
    });
  }

  // A half-open connection sends nothing: after 25 s of silence, reconnect.
  setInterval(function () {
    if (Date.now() - lastMessage > 25000 && source) {
      setLive(false);
      source.close();
      lastMessage = Date.now();
      connect();
    }
  }, 5000);
  setInterval(tick, 1000);
  tick();
  connect();
})();
