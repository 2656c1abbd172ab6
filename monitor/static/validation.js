// One validation on show: its metrics (GET /api/validation?run=&iteration=) and its comparison
// image (GET /api/validation.png?run=&iteration=). It follows a run's latest validation until the
// user picks one (a click on the validation chart, or the step slider); "Latest" follows again.
window.VsrValidation = (handlers) => {
  "use strict";
  const { onChange } = handlers;
  const { $, num, fixed, pct, text, cell, query, getJSON } = window.VsrFormat;
  let run = null;      // the run whose validations are on show
  let pinned = null;   // the iteration picked by the user; null follows the latest
  let list = [];       // that run's validations, oldest first
  let shownKey = null, timer = null;

  function follow(runId) { run = runId; pinned = null; onChange(); }
  function pick(runId, iteration) { run = runId; pinned = iteration; onChange(); }

  function indexOf(iteration) {
    if (!list.length) return -1;
    if (iteration == null) return list.length - 1;
    let best = 0;
    list.forEach((v, i) => { if (Math.abs(v.iteration - iteration) < Math.abs(list[best].iteration - iteration)) best = i; });
    return best;
  }

  function fillMetrics(v) {
    const body = $("val-table").tBodies[0];
    text("val-space", v.metric_space === "y" ? "PSNR/SSIM on Y" : "PSNR/SSIM on RGB");
    $("val-space").hidden = false;
    body.replaceChildren();
    for (const [name, p, ss, q] of [["Model", v.psnr, v.ssim, v.quality],
                                    ["Bilinear", v.baseline_psnr, v.baseline_ssim, v.baseline_quality]]) {
      const tr = body.insertRow();
      cell(tr, name); cell(tr, num(p, (x) => x.toFixed(2) + " dB")); cell(tr, fixed(4)(ss)); cell(tr, pct(q));
    }
  }

  function showImage(v) {
    const img = $("val-image"), kept = v.image !== false;
    text("val-note", kept ? "" : "image not kept for this step (the monitor keeps the latest ones and every best)");
    img.hidden = !kept;
    const src = "/api/validation.png" + query({ run, iteration: v.iteration });
    if (kept && img.dataset.src !== src) { img.dataset.src = src; img.dataset.tries = "0"; img.src = src; }
  }

  // A validation that just arrived may not be stored yet: ask again twice, a second apart.
  function imageFailed() {
    const img = $("val-image"), tries = Number(img.dataset.tries || 0);
    if (tries < 2) {
      img.dataset.tries = String(tries + 1);
      setTimeout(() => { if (img.dataset.src) img.src = img.dataset.src + "&try=" + (tries + 1); }, 1000);
      return;
    }
    img.hidden = true;
    text("val-note", "no image for this step");
  }

  // The list's copy at once, then the monitor's own record of that step.
  function show(v) {
    const key = shownKey;
    fillMetrics(v);
    showImage(v);
    getJSON("/api/validation", { run, iteration: v.iteration })
      .then((full) => { if (shownKey === key && full.iteration === v.iteration) fillMetrics(full); })
      .catch(() => {});
  }

  function clear() {
    shownKey = null;
    $("val-table").tBodies[0].replaceChildren();
    $("val-space").hidden = true;
    $("val-image").hidden = true;
    text("val-note", "");
  }

  function renderSlider(i) {
    const slider = $("val-step");
    slider.max = String(Math.max(list.length - 1, 0));
    slider.value = String(Math.max(i, 0));
    slider.disabled = list.length < 2;
    text("val-count", list.length ? (i + 1) + " of " + list.length : "");
  }

  // validations: the run's list (oldest first); name: its display name; selectedId: the selected run.
  function render(validations, name, selectedId) {
    list = validations;
    const i = indexOf(pinned), v = list[i];
    renderSlider(i);
    $("val-latest").hidden = pinned == null;
    text("val-run", run !== selectedId ? name : "");
    text("val-iter", v ? "iteration " + v.iteration.toLocaleString() + (pinned == null ? " (latest)" : "") : "none yet");
    if (!v) { clear(); return; }
    const key = run + "|" + v.iteration;
    if (key === shownKey) return;
    shownKey = key;
    clearTimeout(timer);
    timer = setTimeout(() => show(v), 60);  // a dragged slider asks for the step it rests on
  }

  $("val-step").addEventListener("input", (e) => { const v = list[Number(e.target.value)]; if (v) pick(run, v.iteration); });
  $("val-latest").addEventListener("click", () => follow(run));
  $("val-image").addEventListener("error", imageFailed);

  return { follow, pick, render, run: () => run, pinned: () => pinned, iteration: () => (list[indexOf(pinned)] || {}).iteration };
};
