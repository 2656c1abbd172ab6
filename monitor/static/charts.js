// Live charts with the vendored uPlot: loss (log, smoothed, optional overlay of all runs),
// validation against the bilinear baseline, learning rate, iterations/s.
window.VsrCharts = ($) => {
  "use strict";
  const COLORS = ["#5b9dff", "#2ecc71", "#f39c12", "#e056fd", "#00cec9", "#ff7675"];
  const AXIS = { stroke: "#8b93a7", grid: { stroke: "#2a2f3e", width: 1 }, ticks: { stroke: "#2a2f3e" } };
  const made = {};

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

  function sortedBy(points) {
    for (let i = 1; i < points.length; i++) {
      if (points[i].iteration < points[i - 1].iteration) return [...points].sort((a, b) => a.iteration - b.iteration);
    }
    return points;
  }

  function ema(values, alpha) {
    let acc = null;
    return values.map((v) => (v == null ? acc : (acc = acc == null ? v : alpha * acc + (1 - alpha) * v)));
  }

  function lossData(model, run) {
    const alpha = Number($("smooth").value);
    if ($("overlay").checked) {
      const names = Object.keys(model.runs);
      const tables = names.map((n) => {
        const pts = sortedBy(model.runs[n].history || []);
        return [pts.map((p) => p.iteration), ema(pts.map((p) => positive(p.total_loss)), alpha)];
      });
      return { labels: names, data: tables.length ? uPlot.join(tables) : [[]] };
    }
    const pts = sortedBy(run.history || []);
    const raw = pts.map((p) => positive(p.total_loss));
    return { labels: ["loss", "smoothed"], data: [pts.map((p) => p.iteration), raw, ema(raw, alpha)] };
  }

  function validationData(run) {
    const key = $("val-metric").value, pts = sortedBy(run.validations || []);
    return { labels: ["model", "bilinear"],
             data: [pts.map((p) => p.iteration), pts.map((p) => finite(p[key])), pts.map((p) => finite(p["baseline_" + key]))] };
  }

  function seriesData(run, key, label) {
    const pts = sortedBy(run.history || []);
    return { labels: [label], data: [pts.map((p) => p.iteration), pts.map((p) => finite(p[key]))] };
  }

  function options(el, labels, { log = false, faintFirst = false } = {}) {
    const series = [{ label: "iteration" }, ...labels.map((label, i) => ({
      label, spanGaps: true, width: faintFirst && i === 0 ? 1 : 2,
      stroke: !faintFirst ? COLORS[i % COLORS.length] : i === 0 ? "rgba(91,157,255,0.3)" : COLORS[(i - 1) % COLORS.length],
    }))];
    return {
      width: Math.max(el.clientWidth, 200), height: 200, series, legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: false }, y: log ? { distr: 3 } : {} },
      axes: [AXIS, YAXIS],
    };
  }

  function draw(id, spec, opts) {
    const el = $(id), sig = spec.labels.join("|");
    const hasPoints = spec.data[0] && spec.data[0].length > 0;
    let chart = made[id];
    if (chart && chart.sig !== sig) { chart.plot.destroy(); chart = made[id] = null; }
    if (!hasPoints && !chart) return;
    if (!chart) {
      made[id] = { sig, plot: new uPlot(options(el, spec.labels, opts), spec.data, el) };
    } else {
      chart.plot.setData(spec.data);
    }
  }

  function update(model, run) {
    draw("chart-loss", lossData(model, run), { log: true, faintFirst: !$("overlay").checked });
    draw("chart-val", validationData(run), {});
    draw("chart-lr", seriesData(run, "learn_rate", "learning rate"), { log: true });
    draw("chart-speed", seriesData(run, "iter_speed", "it/s"), {});
  }

  function reset() {
    for (const id of Object.keys(made)) { if (made[id]) made[id].plot.destroy(); delete made[id]; }
  }

  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      for (const [id, c] of Object.entries(made)) if (c) c.plot.setSize({ width: Math.max($(id).clientWidth, 200), height: 200 });
    }, 100);
  });
  return { update, reset };
};
