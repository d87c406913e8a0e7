// The console's only script (CSP: script-src 'self'). Everything works without it;
// it adds the CSRF header to htmx requests and the live alert queue.
(function () {
  "use strict";
  var token = document.querySelector('meta[name="csrf-token"]');
  document.addEventListener("htmx:configRequest", function (event) {
    if (token && token.content) { event.detail.headers["X-CSRF-Token"] = token.content; }
  });

  var table = document.getElementById("queue");
  if (!table || !window.EventSource) { return; }
  var rows = document.getElementById("queue-rows");
  var status = document.getElementById("live-status");
  var sound = document.getElementById("sound");
  if (sound) {
    sound.checked = localStorage.getItem("prevent.sound") === "on";
    sound.addEventListener("change", function () {
      localStorage.setItem("prevent.sound", sound.checked ? "on" : "off");
    });
  }

  function ids() {
    return Array.prototype.map.call(rows.querySelectorAll("tr[data-alert-id]"),
      function (tr) { return tr.getAttribute("data-alert-id"); });
  }

  // The unit's time zone (PREVENT_TIME_ZONE, in <meta name="time-zone">), 24-hour clock: the
  // same clock as every time the server renders, not the browser's own zone and format.
  function unitTime() {
    var meta = document.querySelector('meta[name="time-zone"]');
    var options = {hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
                   timeZoneName: "short"};
    if (meta && meta.content) { options.timeZone = meta.content; }
    try { return new Date().toLocaleTimeString("en-CA", options); }
    catch (e) { delete options.timeZone; return new Date().toLocaleTimeString("en-CA", options); }
  }

  function tone() {
    if (!sound || !sound.checked || !window.AudioContext) { return; }
    var ctx = new AudioContext(), osc = ctx.createOscillator(), gain = ctx.createGain();
    osc.frequency.value = 880; gain.gain.value = 0.15;
    osc.connect(gain); gain.connect(ctx.destination);
    osc.start(); osc.stop(ctx.currentTime + 0.4);
  }

  function refresh() {
    var before = ids();
    var query = new URLSearchParams(new FormData(document.querySelector("form.filters"))).toString();
    fetch(table.getAttribute("data-rows") + "?" + query, {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        rows.innerHTML = html;
        var fresh = ids().filter(function (id) { return before.indexOf(id) < 0; });
        fresh.forEach(function (id) {
          var tr = rows.querySelector('tr[data-alert-id="' + id + '"]');
          if (tr) { tr.classList.add("new"); }
        });
        if (fresh.length) {
          status.textContent = fresh.length + " new alert" + (fresh.length > 1 ? "s" : "") +
            " (marked NEW) at " + unitTime();
          tone();
        }
      })
      .catch(function () { status.textContent = "Live updates paused; reload the page."; });
  }

  var source = new EventSource(table.getAttribute("data-stream"));
  source.addEventListener("alerts", function (event) {
    var data = JSON.parse(event.data);
    if (!data.initial) { refresh(); }
  });
})();
