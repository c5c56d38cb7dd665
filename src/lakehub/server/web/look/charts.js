/* LakeHub's charts: every element with data-chart="<id>" draws the JSON in <script id="<id>">:
   {"title": "...", "x": "step", "series": [{"label": "...", "x": [...], "y": [...]}]}
   with uPlot (vendored: uplot.min.js, MIT). Series are aligned on the union of their x values. */
(function () {
  var COLORS = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#0a7ea4", "#bf3989", "#57606a"];
  function draw(el) {
    var spec = JSON.parse(document.getElementById(el.getAttribute("data-chart")).textContent);
    var xs = {};
    spec.series.forEach(function (s) { s.x.forEach(function (x) { xs[x] = true; }); });
    var x = Object.keys(xs).map(Number).sort(function (a, b) { return a - b; });
    var data = [x];
    spec.series.forEach(function (s) {
      var at = {};
      s.x.forEach(function (v, i) { at[v] = s.y[i]; });
      data.push(x.map(function (v) { return v in at ? at[v] : null; }));
    });
    var series = [{ label: spec.x || "step" }];
    spec.series.forEach(function (s, i) {
      series.push({ label: s.label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true,
                    points: { show: x.length < 60 } });
    });
    var width = Math.max(280, Math.min(el.clientWidth || 560, 900));
    new uPlot({ title: spec.title, width: width, height: 240, series: series,
                scales: { x: { time: false } }, axes: [{ label: spec.x || "step" }, {}] }, data, el);
    el.setAttribute("data-drawn", String(x.length));
  }
  document.querySelectorAll("[data-chart]").forEach(draw);
})();
