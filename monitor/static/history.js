// Chart data per run: the whole run from GET /api/history.json (at most POINTS buckets, each with
// the loss_min..loss_max of the steps it stands for), the live tail from the WebSocket after it,
// and finer points for a zoomed iteration range spliced in over the overview.
window.VsrHistory = (onChange) => {
  "use strict";
  const { getJSON } = window.VsrFormat;
  const POINTS = 2000, ZOOM_POINTS = 1000;
  // A watched live run is fetched again after STALE_MS, or once its live tail outgrows its overview
  // (an overview fetched before the monitor had stored much) or MAX_TAIL points.
  const STALE_MS = 30000, MIN_TAIL = 50, MAX_TAIL = 1000;
  const cache = {};  // run id -> { points, validations, tail, fine, at, busy }
  let zoom = null;   // {from, to} while the charts are zoomed

  const lastIteration = (list) => (list.length ? list[list.length - 1].iteration : -Infinity);
  const inRange = (p, r) => p.iteration >= r.from && p.iteration <= r.to;
  const entry = (id) => (cache[id] = cache[id] || { points: [], validations: [], tail: [], fine: null, at: 0, busy: false });

  async function fetchRun(id, range) {
    const params = range ? { run: id, points: ZOOM_POINTS, from: range.from, to: range.to } : { run: id, points: POINTS };
    const body = await getJSON("/api/history.json", params);
    const points = Array.isArray(body.history) ? body.history : [];
    return { points: range ? points.filter((p) => inRange(p, range)) : points,
             validations: Array.isArray(body.validations) ? body.validations : [] };
  }

  // Fetch a run's overview when it has none yet, or (live runs) when it has grown stale.
  function want(id, live) {
    const e = entry(id);
    if (zoom && !e.fine) fetchFine(id, zoom);
    const tailCap = Math.min(MAX_TAIL, Math.max(MIN_TAIL, e.points.length));
    const stale = e.at === 0 || (live && (Date.now() - e.at > STALE_MS || e.tail.length > tailCap));
    if (!stale || e.busy) return;
    e.busy = true;
    fetchRun(id)
      .then(({ points, validations }) => {
        e.points = points;
        e.validations = validations;
        e.tail = e.tail.filter((p) => p.iteration > lastIteration(points));
      })
      .catch(() => {})  // not known to the monitor (yet): keep what the WebSocket brings
      .finally(() => { e.at = Date.now(); e.busy = false; onChange(); });
  }

  function fetchFine(id, range) {
    const e = entry(id);
    e.fine = { ...range, points: null };
    fetchRun(id, range)
      .then(({ points }) => { if (e.fine && e.fine.from === range.from && e.fine.to === range.to) e.fine.points = points; })
      .catch(() => { e.fine = null; })
      .finally(onChange);
  }

  // The charts were zoomed to [from, to] (null: zoomed out): fetch finer points for `ids`.
  function setZoom(range, ids) {
    zoom = range;
    for (const e of Object.values(cache)) e.fine = null;
    if (range) for (const id of ids) fetchFine(id, range);
    onChange();
  }

  function addStatus(id, d) {
    const e = cache[id];
    if (!e || typeof d.iteration !== "number" || d.iteration <= lastIteration(e.tail.length ? e.tail : e.points)) return;
    e.tail.push({ iteration: d.iteration, total_loss: d.total_loss, learn_rate: d.learn_rate, iter_speed: d.iter_speed,
                  gpu_memory: d.gpu_memory, timestamp: d.timestamp, loss_min: d.loss_min, loss_max: d.loss_max });
  }

  function addValidation(id, v) {
    const e = cache[id];
    if (!e || typeof v.iteration !== "number" || v.iteration <= lastIteration(e.validations)) return;
    const point = { ...v, image: true };  // the frame's image bytes stay on the server
    delete point.image_format;
    e.validations.push(point);
  }

  // Oldest first: the overview with the zoomed range's finer points in its place, then the live tail.
  function points(id) {
    const e = cache[id];
    if (!e) return [];
    const fine = e.fine && e.fine.points;
    const base = fine ? [...e.points.filter((p) => !inRange(p, e.fine)), ...fine].sort((a, b) => a.iteration - b.iteration)
      : e.points;
    const after = lastIteration(base);
    return e.tail.length ? [...base, ...e.tail.filter((p) => p.iteration > after)] : base;
  }

  const validations = (id) => (cache[id] ? cache[id].validations : []);
  function stale(id) { for (const [key, e] of Object.entries(cache)) if (id == null || key === id) e.at = 0; }

  return { want, setZoom, zoom: () => zoom, addStatus, addValidation, points, validations, stale };
};
