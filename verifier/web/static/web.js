// Shows every time in the viewer's time zone, in one unambiguous form whatever the browser's
// locale (2026-12-05 14:00, never 12/05/2026, 2:00 PM); the UTC time stays in the title (on hover).
(function () {
  "use strict";
  var numeric = new Intl.DateTimeFormat("en-GB", {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
    hourCycle: "h23"
  });
  function local(ts, form) {
    var p = {};
    numeric.formatToParts(new Date(ts * 1000)).forEach(function (x) { p[x.type] = x.value; });
    var date = p.year + "-" + p.month + "-" + p.day, time = p.hour + ":" + p.minute;
    if (form === "date") { return date; }
    if (form === "time") { return time; }
    if (form === "day") { return p.month + "-" + p.day; }
    if (form === "tick") { return p.month + "-" + p.day + " " + p.hour + "h"; }
    return date + " " + time + ":" + p.second;
  }
  function run() {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    document.querySelectorAll("[data-ts]").forEach(function (el) {
      var ts = Number(el.getAttribute("data-ts"));
      if (!isFinite(ts)) { return; }
      var form = el.getAttribute("data-form") || "datetime";
      var utc = el.textContent;
      if (el.tagName.toLowerCase() === "title") {
        // a chart mark's tooltip: "<UTC time>: value" becomes "<local time>: value (UTC ...)"
        var cut = utc.indexOf(" UTC");
        if (cut > 0) { el.textContent = local(ts, form) + utc.slice(cut + 4) + " (" + utc.slice(0, cut + 4) + ")"; }
        return;
      }
      el.textContent = local(ts, form);
      if (el.tagName.toLowerCase() === "time") { el.setAttribute("title", utc + " (" + zone + " shown)"); }
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", run); } else { run(); }
})();
