// Shows every time in the viewer's time zone; the UTC time stays in the title (on hover).
(function () {
  "use strict";
  var forms = {
    date: { year: "numeric", month: "2-digit", day: "2-digit" },
    time: { hour: "2-digit", minute: "2-digit" },
    day: { month: "2-digit", day: "2-digit" },
    tick: { month: "2-digit", day: "2-digit", hour: "2-digit" },
    datetime: { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" }
  };
  function local(ts, form) {
    return new Intl.DateTimeFormat(undefined, forms[form] || forms.datetime).format(new Date(ts * 1000));
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
