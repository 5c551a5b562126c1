/* rsb-tune serve: keeps an open page current without reloading it, and sorts tables.
   Plain JavaScript, no library, nothing fetched from elsewhere. The server renders every
   part; this script only re-fetches the live part of a page and swaps it in. */
(function () {
  "use strict";
  var body = document.body;
  var pollMs = Math.min(5, Math.max(1, Number(body.dataset.pollS) || 2)) * 1000;
  var sortState = {key: null, dir: 1};

  function cellValue(row, index, numeric) {
    var cell = row.children[index];
    var v = cell ? (cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent) : "";
    if (!numeric) return v;
    var n = parseFloat(v);
    return isNaN(n) ? -Infinity : n;
  }

  function applySort(table) {
    if (!table || sortState.key === null) return;
    var ths = table.tHead.rows[0].cells, index = -1, numeric = false;
    for (var i = 0; i < ths.length; i++) {
      ths[i].classList.remove("asc", "desc");
      if (ths[i].dataset.key === sortState.key) { index = i; numeric = ths[i].dataset.type === "num"; }
    }
    if (index < 0) return;
    ths[index].classList.add(sortState.dir > 0 ? "asc" : "desc");
    var tbody = table.tBodies[0];
    var rows = Array.prototype.slice.call(tbody.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, index, numeric), y = cellValue(b, index, numeric);
      return (x < y ? -1 : x > y ? 1 : 0) * sortState.dir;
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
  }

  function wireSorting() {
    var table = document.querySelector("table.sortable");
    if (!table) return;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      if (!th.dataset.key) return;
      th.tabIndex = 0;
      th.title = "sort";
      th.addEventListener("click", function () {
        sortState.dir = sortState.key === th.dataset.key ? -sortState.dir : 1;
        sortState.key = th.dataset.key;
        applySort(table);
      });
    });
    applySort(table);
  }

  function poll(url, onHtml, keepGoing) {
    var timer = null;
    function tick() {
      fetch(url(), {credentials: "same-origin", cache: "no-store"}).then(function (r) {
        if (r.status === 204) return null;
        if (!r.ok) throw new Error(String(r.status));
        return r.text().then(function (text) { onHtml(text, r.headers); });
      }).catch(function () { /* a missed poll: the next one catches up */ })
        .then(function () { if (keepGoing()) timer = setTimeout(tick, pollMs); });
    }
    if (keepGoing()) timer = setTimeout(tick, pollMs);
  }

  function liveSection() { return document.querySelector("#live .counts"); }

  if (body.dataset.page === "study") {
    var name = encodeURIComponent(body.dataset.name);
    wireSorting();
    poll(function () { return "/studies/" + name + "/live?v=" + encodeURIComponent(body.dataset.version); },
      function (text, headers) {
        document.getElementById("live").innerHTML = text;
        body.dataset.version = headers.get("X-Version") || body.dataset.version;
        wireSorting();
      },
      function () {
        var s = liveSection();
        return !s || s.dataset.state === "running" || s.dataset.figures === "drawing";
      });
  } else if (body.dataset.page === "compare") {
    poll(function () { return location.pathname + location.search + "&fragment=1"; },
      function (text) { document.getElementById("live").innerHTML = text; },
      function () { var s = liveSection(); return s && s.dataset.figures === "drawing"; });
  } else if (body.dataset.page === "index") {
    var select = document.getElementById("kind-filter");
    if (select) select.addEventListener("change", function () {
      location.search = select.value ? "?kind=" + encodeURIComponent(select.value) : "";
    });
    poll(function () { return "/?fragment=1" + (body.dataset.kind ? "&kind=" + encodeURIComponent(body.dataset.kind) : ""); },
      function (text) { document.getElementById("study-rows").innerHTML = text; },
      function () { return true; });
  }
}());
