/* LakeHub's charts: every element with data-chart="<id>" draws the JSON in <script id="<id>">:
   {"title": "...", "x": "step", "series": [{"label": "...", "x": [...], "y": [...]}]}
   with uPlot (vendored: uplot.min.js, MIT). Series are aligned on the union of their x values.
   "time": true makes x unix seconds on a time axis; "unit" (bytes, seconds, percent, cores,
   persec, count) formats the y values. A drawn chart says how many points and series it drew
   (data-drawn, data-series). */
(function () {
  var COLORS = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#0a7ea4", "#bf3989", "#57606a"];
  var UNITS = ["", "K", "M", "G", "T", "P"];
  function fmt(unit, v) {
    if (v == null) return "";
    if (unit === "percent") return (v * 100).toFixed(v < 0.1 ? 1 : 0) + "%";
    if (unit === "seconds") return v < 1 ? (v * 1000).toPrecision(3) + " ms" : v.toPrecision(3) + " s";
    var base = unit === "bytes" ? 1024 : 1000, i = 0, a = Math.abs(v);
    while (a >= base && i < UNITS.length - 1) { a /= base; v /= base; i++; }
    var text = (Math.round(v * 100) / 100) + (UNITS[i] ? " " + UNITS[i] : "");
    return text + (unit === "bytes" ? (i ? "iB" : " B") : unit === "persec" ? "/s" : "");
  }
  function draw(el) {
    var spec = JSON.parse(document.getElementById(el.getAttribute("data-chart")).textContent);
    var xs = {};
    spec.series.forEach(function (s) { s.x.forEach(function (x) { xs[x] = true; }); });
    var x = Object.keys(xs).map(Number).sort(function (a, b) { return a - b; });
    var data = [x];
    spec.series.forEach(function (s) {
      var at = {};
      s.x.forEach(function (v, i) { at[v] = Number(s.y[i]); });  // "0.25", "NaN": numbers
      data.push(x.map(function (v) { return v in at ? at[v] : null; }));
    });
    var value = function (u, v) { return spec.unit ? fmt(spec.unit, v) : v; };
    var series = [{ label: spec.x || "step" }];
    spec.series.forEach(function (s, i) {
      series.push({ label: s.label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true,
                    points: { show: x.length < 60 }, value: value });
    });
    var yAxis = spec.unit ? { values: function (u, vs) { return vs.map(function (v) { return fmt(spec.unit, v); }); }, size: 70 } : {};
    var width = Math.max(280, Math.min(el.clientWidth || 560, 900));
    new uPlot({ title: spec.title, width: width, height: 240, series: series,
                scales: { x: { time: !!spec.time } },
                axes: [spec.time ? {} : { label: spec.x || "step" }, yAxis] }, data, el);
    el.setAttribute("data-drawn", String(x.length));
    el.setAttribute("data-series", String(spec.series.length));
  }
  document.querySelectorAll("[data-chart]").forEach(draw);
})();
