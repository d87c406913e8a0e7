// The alert page (CSP: script-src 'self'): the map, live updates without reload, and the
// preview following the decide form. The page works without it (post/redirect/get).
(function () {
  "use strict";
  var COLOURS = {to_notify: "#6b7280", notified: "#1d4ed8", acknowledged: "#15803d",
                 failed: "#b91c1c", patrol: "#7c3aed", visited: "#0f766e", event: "#111827"};
  var map = null, layer = null;

  function mapData() {
    var holder = document.getElementById("map-data");
    if (!holder) { return null; }
    try { return JSON.parse(holder.getAttribute("data-map")); } catch (e) { return null; }
  }

  // Markers are vector circles (SVG) and the outline a rectangle around them: both show
  // without a single tile, so the map still says where things are with no tile server.
  function drawMap() {
    var box = document.getElementById("alert-map");
    var data = mapData();
    if (!box || !data || !window.L) { return; }
    if (!map) {
      map = L.map(box, {scrollWheelZoom: false, attributionControl: true});
      if (data.tiles) {
        L.tileLayer(data.tiles, {maxZoom: 18, attribution: data.attribution || ""}).addTo(map);
      }
    }
    if (layer) { layer.remove(); }
    layer = L.featureGroup();
    var points = [];
    (data.sites || []).forEach(function (s) {
      var ll = [s.lat, s.lon];
      points.push(ll);
      L.circleMarker(ll, {radius: 9, color: "#fff", weight: 2, fillOpacity: 0.95,
                          fillColor: COLOURS[s.state] || COLOURS.to_notify,
                          className: "site-marker st-" + s.state})
        .bindTooltip(s.name + ": " + s.label).addTo(layer);
    });
    if (data.event) {
      var ev = [data.event.lat, data.event.lon];
      points.push(ev);
      L.circleMarker(ev, {radius: 11, color: COLOURS.event, weight: 3, fillColor: "#fbbf24",
                          fillOpacity: 0.9, className: "event-marker"})
        .bindTooltip("The event" + (data.event.place ? ": " + data.event.place : "")).addTo(layer);
    }
    if (points.length) {
      var bounds = L.latLngBounds(points).pad(0.25);
      L.rectangle(bounds, {color: "#374151", weight: 1, dashArray: "4 4", fill: false,
                           interactive: false, className: "map-outline"}).addTo(layer);
      layer.addTo(map);
      map.fitBounds(bounds, {maxZoom: 15});
    } else {
      layer.addTo(map);
      map.setView([43.65, -79.38], 10);
    }
    box.setAttribute("data-markers", String((data.sites || []).length));
  }

  // Unticking a site, channel or patrol in the decide form marks its preview rows left out.
  function followForm() {
    var form = document.getElementById("confirm-form");
    if (!form) { return; }
    function update() {
      var off = {site: [], channel: [], patrol: []};
      form.querySelectorAll("input[type=checkbox]").forEach(function (box) {
        if (!box.checked && off[box.name]) { off[box.name].push(box.value); }
      });
      document.querySelectorAll("#preview-notices tr[data-site-id]").forEach(function (tr) {
        mark(tr, off.site.indexOf(tr.getAttribute("data-site-id")) >= 0 ||
                 off.channel.indexOf(tr.getAttribute("data-channel")) >= 0);
      });
      document.querySelectorAll("#preview-patrols tr[data-patrol-site-id]").forEach(function (tr) {
        var site = tr.getAttribute("data-patrol-site-id");
        mark(tr, off.patrol.indexOf(site) >= 0 || off.site.indexOf(site) >= 0);
      });
    }
    function mark(tr, out) {
      tr.classList.toggle("left-out", out);
      var cell = tr.cells[0], badge = cell.querySelector(".badge.js-left-out");
      if (out && !badge) {
        badge = document.createElement("span");
        badge.className = "badge js-left-out";
        badge.textContent = "left out";
        cell.appendChild(document.createTextNode(" "));
        cell.appendChild(badge);
      } else if (!out && badge) { badge.remove(); }
    }
    form.addEventListener("change", update);
    update();
  }

  function busy() {
    var active = document.activeElement;
    return active && active.closest && active.closest("form") &&
      (active.tagName === "TEXTAREA" || active.tagName === "INPUT" || active.tagName === "SELECT");
  }

  function live() {
    var status = document.getElementById("live-alert");
    if (!status || !window.EventSource) { return; }
    var situation = document.getElementById("situation");
    var revision = situation ? situation.getAttribute("data-revision") : null;
    var pending = false;

    function swap(html, selector) {
      var doc = new DOMParser().parseFromString(html, "text/html");
      var fresh = doc.querySelector(selector), old = document.querySelector(selector);
      if (fresh && old) { old.replaceWith(document.adoptNode(fresh)); }
      return doc;
    }

    function refresh(newRevision) {
      if (newRevision !== revision) {
        // A decision (maybe another inspector's): the forms on this page are stale now.
        return fetch(location.pathname, {credentials: "same-origin"})
          .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
          .then(function (html) {
            var doc = new DOMParser().parseFromString(html, "text/html");
            var main = doc.querySelector("main"), badge = doc.getElementById("alert-status");
            if (main) {
              document.querySelector("main").innerHTML = main.innerHTML;
              revision = newRevision;
              var st = document.getElementById("live-alert");
              var who = doc.querySelector("[data-decided-by]");
              st.textContent = "This alert is now " + (badge ? badge.textContent : "changed") +
                (who ? " (" + who.getAttribute("data-decided-by") + ")" : "") + ", updated " +
                new Date().toLocaleTimeString("en-CA", {hour12: false, timeZone: zone()});
              st.className = "ok";
              map = null; layer = null;
              drawMap(); followForm();
            }
          });
      }
      return fetch(status.getAttribute("data-fragment"), {credentials: "same-origin"})
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) {
          if (busy() && document.activeElement.closest("#situation")) { return; }
          swap(html, "#situation");
          drawMap();
        });
    }

    var latest = null;
    function run() {
      pending = true;
      var wanted = latest;
      latest = null;
      refresh(wanted).catch(function () {
        var st = document.getElementById("live-alert");
        if (st) { st.textContent = "Live updates paused; reload the page."; }
      }).then(function () {
        pending = false;
        if (latest !== null) { run(); }  // something changed again meanwhile
      });
    }
    var source = new EventSource(status.getAttribute("data-stream"));
    source.addEventListener("alert", function (event) {
      var data = JSON.parse(event.data);
      if (data.initial) { return; }
      latest = data.revision;
      if (!pending) { run(); }
    });
  }

  function zone() {
    var meta = document.querySelector('meta[name="time-zone"]');
    return meta && meta.content ? meta.content : undefined;
  }

  function start() { drawMap(); followForm(); live(); }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else { start(); }
})();
