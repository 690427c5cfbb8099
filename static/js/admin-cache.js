// The staff cache page: every 5 s, fetch the page again and swap in its live part, so the
// figures move without a reload (and without losing the scroll position or a focused button).
(function () {
  var live = document.getElementById("live");
  if (!live) return;
  setInterval(function () {
    if (document.hidden) return;
    fetch(live.dataset.refresh, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
        if (fresh) live.replaceWith(fresh), live = fresh;
      })
      .catch(function () {});
  }, 5000);
})();
