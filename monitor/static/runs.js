// The run list: every run the monitor knows (GET /api/runs), live or past, newest first, with the
// live runs' latest status from the WebSocket laid over it. A row click selects a run; a tick box
// overlays it on the loss and validation charts. Nothing here deletes anything.
window.VsrRuns = (handlers) => {
  "use strict";
  const { onSelect, onTick } = handlers;
  const { $, count, pct, when, duration, put, element, getJSON } = window.VsrFormat;
  const NONE_YET = "no runs yet: start a trainer, or read a run folder in with python -m monitor import RUN_DIR";
  let stored = [];        // summaries from /api/runs
  let current = null;     // the run the monitor follows
  const ticked = new Set();

  // One summary as /api/runs gives it (id, name, state, live, iteration, ..., init_from?).
  function normalise(r) {
    return { ...r, id: String(r.id), name: String(r.name ?? r.id), live: !!r.live, state: r.state || "offline" };
  }

  async function refresh() {
    try {
      const body = await getJSON("/api/runs");
      stored = (Array.isArray(body.runs) ? body.runs : []).map(normalise);
      current = body.current ?? null;
    } catch { /* the next refresh tries again */ }
  }

  function liveState(s) {
    if (typeof s.state === "string" && s.state) return s.state;
    return s.is_paused ? "paused" : s.is_validating ? "validating" : "training";
  }

  // Stored runs with the live ones' status over them; runs only the WebSocket knows yet come first.
  function all(wsRuns) {
    const known = new Set(stored.map((r) => r.id));
    const fresh = Object.keys(wsRuns).filter((id) => !known.has(id)).map((id) => normalise({ id, name: id }));
    return [...fresh, ...stored].map((r) => {
      const s = wsRuns[r.id] && wsRuns[r.id].status;
      if (!s || !s.trainer_online) return r;
      return { ...r, live: true, state: liveState(s), iteration: s.iteration ?? r.iteration,
               max_iterations: s.max_iterations || r.max_iterations, best_score: s.best_score ?? r.best_score };
    });
  }

  function runTime(r) {
    if (typeof r.duration === "number") return r.duration;
    if (typeof r.started !== "number") return null;
    return (typeof r.ended === "number" ? r.ended : Date.now() / 1000) - r.started;
  }

  function makeRow(r) {
    const tr = document.createElement("tr"), box = document.createElement("input");
    tr.dataset.id = r.id;
    box.type = "checkbox";
    box.addEventListener("change", () => { if (box.checked) ticked.add(r.id); else ticked.delete(r.id); onTick(); });
    box.addEventListener("click", (e) => e.stopPropagation());
    const tick = tr.insertCell(), name = tr.insertCell(), state = tr.insertCell();
    tick.className = "tick";
    tick.append(box, element("span", "swatch"));
    name.className = "name";
    name.append(element("span", "run-title"), element("span", "origin"));
    state.append(element("span", "dot"), element("span", "state-word"));
    for (let i = 0; i < 5; i++) tr.insertCell();
    tr.addEventListener("click", () => onSelect(r.id));
    return tr;
  }

  function emptyRow() {
    const tr = document.createElement("tr"), td = tr.insertCell();
    td.colSpan = 8;
    td.append(element("span", "sub", NONE_YET));
    return tr;
  }

  function fillRow(tr, r, selected, colour) {
    const [tick, name, state, iter, best, started, ended, took] = tr.cells;
    const box = tick.firstChild;
    box.checked = selected || ticked.has(r.id);
    box.disabled = selected;
    box.title = selected ? "the selected run is always drawn" : "overlay on the charts";
    box.setAttribute("aria-label", "overlay " + r.name);
    tick.lastChild.style.background = colour || "transparent";
    put(name.firstChild, r.name);
    put(name.lastChild, r.init_from ? "fine-tuned from " + r.init_from : "");
    state.firstChild.className = "dot" + (r.live ? " on" : " state-" + r.state);
    put(state.lastChild, r.state);
    put(iter, count(r.iteration) + (r.max_iterations ? " / " + count(r.max_iterations) : ""));
    put(best, pct(r.best_score));
    put(started, when(r.started));
    put(ended, r.live ? "running" : when(r.ended));
    put(took, duration(runTime(r)));
    tr.classList.toggle("current", selected);
  }

  // Rows are kept (their tick boxes too) and only rebuilt when the list of runs changes.
  function render(list, selectedId, colourOf) {
    const body = $("runs-table").tBodies[0];
    const ids = JSON.stringify(list.map((r) => r.id));
    if (body.dataset.ids !== ids) {
      body.dataset.ids = ids;
      body.replaceChildren(...(list.length ? list.map(makeRow) : [emptyRow()]));
    }
    list.forEach((r, i) => fillRow(body.rows[i], r, r.id === selectedId, colourOf(r.id)));
  }

  return { refresh, all, render, current: () => current, ticked: () => [...ticked] };
};
