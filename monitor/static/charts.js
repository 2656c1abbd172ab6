// Charts with the vendored uPlot. Every chart draws the selected run; the loss and validation
// charts also draw each ticked run, one colour per run, named in the legend.
// - loss (log): each point's loss_min..loss_max as a band, so a one-step spike never thins away;
// - validation: model (and, for one run, bilinear); a click on a point shows that validation;
// - learning rate, iterations/s.
// Dragging across a history chart (loss, LR, it/s) zooms all three and asks for finer points
// (onZoom); a double click zooms out again.
window.VsrCharts = ($, handlers) => {
  "use strict";
  const { onZoom, onPick } = handlers;
  const COLOURS = ["#5b9dff", "#2ecc71", "#f39c12", "#e056fd", "#00cec9", "#ff7675"];
  const AXIS = { stroke: "#8b93a7", grid: { stroke: "#2a2f3e", width: 1 }, ticks: { stroke: "#2a2f3e" } };
  const PICK_RADIUS = 30;  // px from a validation point that still picks it
  const made = {};         // chart element id -> { sig, plot, runs: run id per series }
  let zoom = null;         // {from, to}: the history charts' x range; null: the whole run
  let marker = null;       // the iteration of the validation on show
  let quiet = false;       // scale changes we make ourselves are not the user zooming

  // y labels: exponents for tiny values, else as many decimals as the tick step needs
  function yTicks(u, splits) {
    const log = u.scales.y.distr === 3;
    const step = splits.length > 1 ? Math.abs(splits[1] - splits[0]) || 1 : 1;
    const decimals = Math.min(6, Math.max(0, -Math.floor(Math.log10(step))));
    return splits.map((v) => (v == null ? "" : v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential(0)
      : log ? String(Number(v.toPrecision(2))) : v.toFixed(decimals)));
  }
  const YAXIS = { ...AXIS, size: 56, values: yTicks };
  const positive = (v) => (typeof v === "number" && v > 0 ? v : null);
  const finite = (v) => (typeof v === "number" && isFinite(v) ? v : null);
  const fade = (hex, alpha) => hex + Math.round(alpha * 255).toString(16).padStart(2, "0");
  const colour = (k) => COLOURS[k % COLOURS.length];

  function ema(values, alpha) {
    let acc = null;
    return values.map((v) => (v == null ? acc : (acc = acc == null ? v : alpha * acc + (1 - alpha) * v)));
  }

  // a series; history lines are dense, so only validation series draw their points
  function line(label, stroke, extra = {}) {
    return { label, stroke, width: 2, spanGaps: true, points: { show: false }, ...extra };
  }

  // One spec: series (after x), the run each series belongs to, bands, and the data they share.
  function spec(tables, series, runs, bands = []) {
    const data = tables.length > 1 ? uPlot.join(tables) : tables[0] || [[]];
    return { series, runs, bands, data, sig: JSON.stringify(series.map((s) => [s.label, s.stroke])) };
  }

  function lossSpec(view) {
    const alpha = Number($("smooth").value), single = view.runs.length === 1;
    const tables = [], series = [], runs = [], bands = [];
    for (const r of view.runs) {
      const pts = r.points, raw = pts.map((p) => positive(p.total_loss)), columns = [];
      const add = (s, values) => { series.push(s); runs.push(r.id); columns.push(values); return series.length; };
      if (single) add(line("loss", fade(r.colour, 0.35), { width: 1 }), raw);
      add(line(single ? "smoothed" : r.name, r.colour), ema(raw, alpha));
      const edge = (label) => line(label, fade(r.colour, 0.3), { width: 1, legend: single });
      const hi = add(edge("max"), pts.map((p) => positive(p.loss_max ?? p.total_loss)));
      const lo = add(edge("min"), pts.map((p) => positive(p.loss_min ?? p.total_loss)));
      bands.push({ series: [hi, lo], fill: fade(r.colour, 0.16) });
      tables.push([pts.map((p) => p.iteration), ...columns]);
    }
    return spec(tables, series, runs, bands);
  }

  function validationSpec(view) {
    const key = $("val-metric").value, single = view.runs.length === 1;
    const tables = [], series = [], runs = [], dot = { show: true, size: 7 };
    for (const r of view.runs) {
      const pts = r.validations, columns = [pts.map((p) => finite(p[key]))];
      series.push(line(single ? "model" : r.name, r.colour, { points: dot }));
      runs.push(r.id);
      if (single) {
        series.push(line("bilinear", "#8b93a7", { width: 1, dash: [4, 4], points: dot }));
        runs.push(r.id);
        columns.push(pts.map((p) => finite(p["baseline_" + key])));
      }
      tables.push([pts.map((p) => p.iteration), ...columns]);
    }
    return spec(tables, series, runs);
  }

  function selectedSpec(view, key, label) {
    const r = view.runs[0], pts = r ? r.points : [];
    return spec([[pts.map((p) => p.iteration), pts.map((p) => finite(p[key]))]], [line(label, colour(0))], [r && r.id]);
  }

  // ---- zoom: reported when the user changes a history chart's x range ---------------------
  function rangeOf(u) {
    const xs = u.data[0];
    if (!xs || xs.length < 2) return null;
    const { min, max } = u.scales.x, first = xs[0], last = xs[xs.length - 1];
    if (min <= first + 0.5 && max >= last - 0.5) return null;
    return { from: Math.max(first, Math.floor(min)), to: Math.min(last, Math.ceil(max)) };
  }
  const same = (a, b) => (a === b) || (!!a && !!b && a.from === b.from && a.to === b.to);

  function reportZoom(u) {
    if (quiet) return;
    const range = rangeOf(u);
    if (same(range, zoom)) return;
    zoom = range;
    onZoom(range);
  }

  function applyZoom(u) {
    const xs = u.data[0];
    if (!xs || xs.length < 2) return;
    const [lo, hi] = zoom ? [zoom.from, zoom.to] : [xs[0], xs[xs.length - 1]];
    const off = Math.abs(u.scales.x.min - lo) > 0.5 || Math.abs(u.scales.x.max - hi) > 0.5;
    if (hi > lo && off) u.setScale("x", { min: lo, max: hi });
  }

  // Our own setData/setScale take effect in uPlot's next microtask; ours runs after it.
  function quietly(fn) {
    quiet = true;
    try { fn(); } finally { queueMicrotask(() => { quiet = false; }); }
  }

  // ---- validation chart: a click picks the nearest point, a dashed line marks the one on show ------
  function pickAt(u, runs) {
    const { left, top } = u.cursor;
    if (left == null || left < 0) return;
    let best = null;
    for (let s = 1; s < u.series.length; s++) {
      u.data[s].forEach((y, j) => {
        if (y == null) return;
        const dx = u.valToPos(u.data[0][j], "x") - left, dy = u.valToPos(y, "y") - top, d = Math.hypot(dx, dy);
        if (!best || d < best.d) best = { d, run: runs[s - 1], iteration: u.data[0][j] };
      });
    }
    if (best && best.d <= PICK_RADIUS) onPick(best.run, best.iteration);
  }

  function drawMarker(u) {
    if (marker == null) return;
    const x = u.valToPos(marker, "x", true), { left, top, width, height } = u.bbox;
    if (x < left || x > left + width) return;
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = "rgba(230, 232, 239, 0.55)";
    ctx.lineWidth = devicePixelRatio;
    ctx.setLineDash([4 * devicePixelRatio, 4 * devicePixelRatio]);
    ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
    ctx.restore();
  }

  // ---- building and updating ----------------------------------------------------------------
  function options(el, s, { log = false, history = false, pickable = false } = {}) {
    return {
      width: Math.max(el.clientWidth, 200), height: 200, series: [{ label: "iteration" }, ...s.series],
      bands: s.bands, legend: { live: true }, cursor: { drag: { x: !pickable, y: false } },
      scales: { x: { time: false }, y: log ? { distr: 3 } : {} }, axes: [AXIS, YAXIS],
      hooks: { setScale: history ? [(u, key) => { if (key === "x") reportZoom(u); }] : [],
               draw: pickable ? [drawMarker] : [] },
    };
  }

  function hideLegendRows(plot, series) {
    const rows = plot.root.querySelectorAll(".u-legend .u-series");
    series.forEach((s, i) => { if (s.legend === false && rows[i + 1]) rows[i + 1].style.display = "none"; });
  }

  function create(id, s, opts) {
    const el = $(id), plot = new uPlot(options(el, s, opts), s.data, el);
    hideLegendRows(plot, s.series);
    if (opts.pickable) plot.over.addEventListener("click", () => pickAt(plot, made[id].runs));
    return plot;
  }

  function draw(id, s, opts) {
    let chart = made[id];
    if (chart && chart.sig !== s.sig) { chart.plot.destroy(); chart = made[id] = null; }
    if (!(s.data[0] && s.data[0].length) && !chart) return;
    if (!chart) chart = made[id] = { sig: s.sig, plot: create(id, s, opts) };
    else chart.plot.setData(s.data, !(opts.history && zoom));
    chart.runs = s.runs;
    if (opts.history) applyZoom(chart.plot);
  }

  // view: { runs: [{id, name, colour, points, validations}] (selected first), zoom, marker }
  function update(view) {
    zoom = view.zoom;
    const redraw = marker !== view.marker;
    marker = view.marker;
    quietly(() => {
      draw("chart-loss", lossSpec(view), { log: true, history: true });
      draw("chart-val", validationSpec(view), { pickable: true });
      draw("chart-lr", selectedSpec(view, "learn_rate", "learning rate"), { log: true, history: true });
      draw("chart-speed", selectedSpec(view, "iter_speed", "it/s"), { history: true });
    });
    if (redraw && made["chart-val"]) made["chart-val"].plot.redraw(false);
  }

  function reset() {
    for (const id of Object.keys(made)) { if (made[id]) made[id].plot.destroy(); delete made[id]; }
  }

  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      quietly(() => {
        for (const [id, c] of Object.entries(made)) if (c) c.plot.setSize({ width: Math.max($(id).clientWidth, 200), height: 200 });
      });
    }, 100);
  });

  // for tests and debugging: the uPlot instance behind a chart element
  const plot = (id) => (made[id] ? made[id].plot : null);
  return { update, reset, colour, plot };
};
