// VSR++ dashboard: one WebSocket (/ws) feeds the live runs; actions go to POST /api/action.
// Past runs come from the monitor's store: runs.js (the list), history.js (chart data),
// validation.js (one validation's image and metrics); charts.js draws.
// Every string from a trainer is put on the page with textContent, never innerHTML.
(() => {
  "use strict";
  const { $, num, pct, fixed, sci, clock, put, text, cell, element, getJSON } = window.VsrFormat;
  const MAX_EVENTS = 200;
  // event kinds shown in red (docs/protocol.md lists every kind)
  const ALERT_KINDS = new Set(["error", "nan_skipped", "diverged", "recovered", "checkpoint_refused"]);

  // ---- token: opened once as /?token=..., then kept in sessionStorage -------------
  const params = new URLSearchParams(location.search);
  if (params.has("token")) {
    sessionStorage.setItem("vsrpp-token", params.get("token"));
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : ""));
  }
  const token = () => sessionStorage.getItem("vsrpp-token");

  // ---- model -------------------------------------------------------------------
  // runs: the live runs from the WebSocket, keyed by run id. picked: the run the user chose
  // (sticky, live or past); shown: the run followed automatically, which moves to another run
  // only when it goes offline; without live runs, the newest stored one.
  const model = { runs: {}, picked: params.get("run"), shown: null, stored: {} };  // ?run=ID: an alert's link
  const runList = () => runs.all(model.runs);
  const summary = (id) => runList().find((r) => r.id === id) || null;
  const known = (id) => id != null && (!!model.runs[id] || !!summary(id));
  function selectedName() {
    if (known(model.picked)) return model.picked;
    if (model.runs[model.shown]) return model.shown;
    const list = runList();
    return known(runs.current()) ? runs.current() : list.length ? list[0].id : null;
  }
  const selected = () => model.runs[selectedName()] || null;
  function follow(name) {
    const shown = model.runs[model.shown];
    if (!shown || !shown.status.trainer_online || model.shown === name) model.shown = name;
  }

  function emptyRun() { return { status: {}, events: [], checkpoints: null }; }
  function runOf(name) {
    if (!model.runs[name]) { model.runs[name] = emptyRun(); refreshRuns(); }
    return model.runs[name];
  }
  function pushEvent(run, e) { run.events.push(e); if (run.events.length > MAX_EVENTS) run.events.shift(); }

  function applyFrame(msg) {
    const run = runOf(msg.run), d = msg.data;
    follow(msg.run);
    run.status.trainer_online = true;
    if (msg.topic === "status") {
      Object.assign(run.status, d);
      hist.addStatus(msg.run, d);
    } else if (msg.topic === "event") {
      pushEvent(run, d);
    } else if (msg.topic === "validation") {
      hist.addValidation(msg.run, d);
      run.status.is_validating = false;
    }
  }

  function onMessage(msg) {
    if (msg.type === "snapshot") { model.runs = msg.runs; model.shown = msg.current; hist.stale(); refreshRuns(); }
    else if (msg.type === "frame") applyFrame(msg);
    else if (msg.type === "alert") {  // an alert of the monitor's (alerts.js may show it as a notification)
      pushEvent(runOf(msg.run), msg.alert);
      window.dispatchEvent(new CustomEvent("vsrpp:alert", { detail: msg }));
    }
    else if (msg.type === "run") { model.runs[msg.run] = msg.snapshot; hist.stale(msg.run); }
    else if (msg.type === "online") { runOf(msg.run).status.trainer_online = msg.online; refreshRuns(); }
    else if (msg.type === "checkpoints") runOf(msg.run).checkpoints = msg.checkpoints;
    schedule(msg.type === "frame" && msg.topic === "status" ? 250 : 0);
  }

  // ---- live connection -----------------------------------------------------------
  let retry = 500;
  function connect() {
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
    ws.onopen = () => { retry = 500; $("badge-link").hidden = true; };
    ws.onmessage = (e) => onMessage(JSON.parse(e.data));
    ws.onclose = () => {
      $("badge-link").hidden = false;
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 5000);
    };
  }

  // ---- actions -----------------------------------------------------------------
  async function act(command) {
    if (command === "stop" && !confirm("Stop training? The trainer saves a checkpoint and exits.")) return;
    const headers = { "Content-Type": "application/json" };
    if (token()) headers["X-Token"] = token();
    say(command + "…");
    try {
      const res = await fetch("/api/action", { method: "POST", headers,
        body: JSON.stringify({ command, run: selectedName() }) });
      const body = await res.json().catch(() => ({}));
      say(res.ok ? command + ": accepted" : command + ": " + (body.error || res.status), !res.ok);
      if (res.ok && command === "validate") { const r = selected(); if (r) { r.status.is_validating = true; schedule(0); } }
    } catch (err) { say(command + ": " + err, true); }
  }
  function say(text, error) { const m = $("action-msg"); m.textContent = text; m.classList.toggle("error", !!error); }

  // ---- rendering -----------------------------------------------------------------
  let timer = null, last = 0;
  function schedule(wait) {
    if (timer) return;
    timer = setTimeout(() => { timer = null; last = Date.now(); requestAnimationFrame(render); },
                       Math.max(0, wait - (Date.now() - last)));
  }

  function render() {
    const id = selectedName(), run = selected(), s = run ? run.status : id ? storedStatus(id) : {};
    const online = !!s.trainer_online, ended = !!id && !online && summary(id)?.ended != null;
    $("badge-offline").hidden = online || ended;
    $("badge-training").hidden = !(online && s.is_training && !s.is_validating && !s.is_paused);
    $("badge-validating").hidden = !(online && s.is_validating);
    $("badge-paused").hidden = !(online && s.is_paused);
    renderDivergence(s);
    renderTitle(id, online);
    renderCards(s);
    renderActivity(s.activity);
    renderControls(s, online);
    renderRunSelect(id);
    const drawn = drawnIds(id);  // once a render: each row's colour is its place in this list
    runs.render(runList(), id, (rid) => colourOf(drawn, rid));
    if (!id) return;
    renderCheckpoints((run || storedRun(id)).checkpoints || []);
    renderEvents((run || storedRun(id)).events);
    renderCharts(id, drawn);
    const q = "?run=" + encodeURIComponent(id);
    $("dl-csv").href = "/api/history.csv" + q;
    $("dl-json").href = "/api/history.json" + q;
  }

  // A stored run's cards: its summary and its last history point.
  function storedStatus(id) {
    const r = summary(id) || {}, pts = hist.points(id), p = pts.length ? pts[pts.length - 1] : {};
    return { iteration: r.iteration ?? p.iteration, max_iterations: r.max_iterations, best_score: r.best_score,
             total_loss: p.total_loss, learn_rate: p.learn_rate, iter_speed: p.iter_speed, gpu_memory: p.gpu_memory };
  }

  function renderTitle(id, online) {
    const r = id ? summary(id) : null;
    text("run-name", id ? (r ? r.name : id) : "waiting for a trainer…");
    text("run-state", r && !online ? r.state : "");
    $("run-state").hidden = !r || online;
    text("run-origin", r && r.init_from ? "fine-tuned from " + r.init_from : "");
  }

  // ---- charts: the selected run first, then every ticked one ------------------------------
  const nameOf = (id) => (summary(id) || { name: id }).name;
  const isLive = (id) => !!(model.runs[id] && model.runs[id].status.trainer_online);
  function drawnIds(id) { return [id, ...runs.ticked().filter((t) => t !== id && known(t))]; }
  function colourOf(drawn, id) { const k = drawn.indexOf(id); return k < 0 ? null : charts.colour(k); }

  function renderCharts(id, ids) {
    for (const rid of ids) hist.want(rid, isLive(rid));
    if (!ids.includes(viewer.run())) viewer.follow(id);
    const list = ids.map((rid, k) => ({ id: rid, name: nameOf(rid), colour: charts.colour(k),
                                        points: hist.points(rid), validations: hist.validations(rid) }));
    charts.update({ runs: list, zoom: hist.zoom(), marker: viewer.iteration() ?? null });
    viewer.render(hist.validations(viewer.run()), nameOf(viewer.run()), id);
  }

  // A stored run's events (fetched once when it is shown) and checkpoints (the Refresh button);
  // live runs get theirs on the WebSocket.
  function storedRun(id) {
    if (!model.stored[id]) {
      const r = model.stored[id] = { events: [], checkpoints: null };
      getJSON("/api/events", { run: id }).then((b) => { r.events = b.events || []; schedule(0); }).catch(() => {});
    }
    return model.stored[id];
  }

  function renderCards(s) {
    text("m-iteration", (s.iteration || 0).toLocaleString());
    const max = s.max_iterations || 0;
    text("m-max", max ? "of " + max.toLocaleString() : "");
    $("m-progress").style.width = max ? Math.min(100, (100 * (s.iteration || 0)) / max) + "%" : "0";
    text("m-loss", fixed(4)(s.total_loss));
    text("m-lr", sci(s.learn_rate));
    text("m-eta", typeof s.time_remaining === "string" ? s.time_remaining : "–");
    text("m-speed", fixed(2)(s.iter_speed));
    text("m-gpu", num(s.gpu_memory, (x) => x.toFixed(1) + " GB"));
    text("m-best", pct(s.best_score));
  }

  function renderDivergence(s) {
    const skipped = s.skipped_steps || 0, rollbacks = s.rollbacks || 0, badge = $("badge-diverged");
    badge.hidden = !(skipped || rollbacks);
    const plural = (n, word) => n + " " + word + (n === 1 ? "" : "s");
    text("badge-diverged", "NaN: " + plural(skipped, "step") + " skipped · " + plural(rollbacks, "rollback"));
  }

  function renderActivity(act) {
    const box = $("activity"), entries = Object.entries(act && typeof act === "object" ? act : {})
      .filter(([, v]) => typeof v === "number" && isFinite(v) && v >= 0);
    const keys = entries.map(([k]) => k).join("\n");
    if (box.dataset.keys !== keys) {  // rebuild rows only when the layers change
      box.dataset.keys = keys;
      box.replaceChildren(...entries.map(([k]) => {
        const row = document.createElement("div"), name = document.createElement("span");
        const bar = document.createElement("span"), val = document.createElement("span");
        row.className = "act-row"; row.setAttribute("role", "listitem");
        name.className = "act-name"; name.textContent = k; name.title = k;
        bar.className = "act-bar"; bar.append(document.createElement("span")); val.className = "act-val";
        row.append(name, bar, val);
        return row;
      }));
    }
    const max = Math.max(0, ...entries.map(([, v]) => v)) || 1;
    entries.forEach(([, v], i) => {
      const row = box.children[i];
      row.children[1].firstChild.style.width = ((100 * v) / max).toFixed(1) + "%";
      put(row.children[2], v.toPrecision(3));
    });
  }

  function renderControls(s, online) {
    const pause = $("btn-pause");
    pause.dataset.command = s.is_paused ? "resume" : "pause";
    text("btn-pause", s.is_paused ? "Resume" : "Pause");
    for (const b of document.querySelectorAll(".controls .btn")) b.disabled = !online;
  }

  function renderRunSelect(id) {
    const sel = $("run-select"), list = runList();
    if (sel.options.length !== list.length || list.some((r, i) => sel.options[i].value !== r.id)) {
      sel.replaceChildren(...list.map((r) => { const o = document.createElement("option"); o.value = r.id; o.textContent = r.name; return o; }));
    }
    sel.value = id || "";
    sel.parentElement.hidden = list.length < 2;
  }

  function renderCheckpoints(list) {
    const body = $("ckpt-table").tBodies[0];
    body.replaceChildren();
    for (const c of list.slice(-10).reverse()) {
      const tr = body.insertRow();
      cell(tr, num(c.step, (x) => x.toLocaleString()));
      cell(tr, String(c.type ?? ""), "type-" + String(c.type ?? "").replace(/[^a-z]/g, ""));
      if (c.finite === false) cell(tr, "not finite", "not-finite"); else cell(tr, pct(c.quality));
      cell(tr, fixed(4)(c.loss)); cell(tr, String(c.date_str ?? ""));
    }
    if (!list.length) cell(body.insertRow(), "no checkpoints yet").colSpan = 5;
  }

  function renderEvents(events) {
    const ol = $("events");
    ol.replaceChildren(...events.slice(-50).reverse().map((e) => {
      const li = document.createElement("li");
      const kind = "kind" + (e.alert || ALERT_KINDS.has(e.kind) ? " alert" : "");
      li.append(element("time", "", clock(e.ts)), element("span", kind, e.kind ?? ""),
                element("span", "msg", e.message ?? ""));
      return li;
    }));
  }

  function choose(id) {
    model.picked = id;
    hist.setZoom(null, []);
    charts.reset();
    viewer.follow(id);
  }

  // ---- wiring ---------------------------------------------------------------------
  for (const b of document.querySelectorAll(".controls .btn")) b.addEventListener("click", () => act(b.dataset.command));
  $("run-select").addEventListener("change", (e) => choose(e.target.value));
  for (const id of ["smooth", "val-metric"]) $(id).addEventListener("input", () => schedule(0));
  $("btn-ckpt").addEventListener("click", async () => {
    const id = selectedName();
    const res = await fetch("/api/checkpoints?run=" + encodeURIComponent(id || ""));
    if (res.ok && id) { (model.runs[id] || storedRun(id)).checkpoints = (await res.json()).checkpoints; schedule(0); }
  });
  let runsTimer = null;
  function refreshRuns() {
    clearTimeout(runsTimer);
    runsTimer = setTimeout(() => runs.refresh().then(() => schedule(0)), 200);
  }
  const charts = window.VsrCharts($, { onZoom: (range) => hist.setZoom(range, drawnIds(selectedName())),
                                      onPick: (id, iteration) => viewer.pick(id, iteration) });
  const hist = window.VsrHistory(() => schedule(0));
  const runs = window.VsrRuns({ onSelect: choose, onTick: () => schedule(0) });
  const viewer = window.VsrValidation({ onChange: () => schedule(0) });
  window.VsrDashboard = { charts, hist, runs, viewer, model };  // for the console and the browser tests
  setInterval(refreshRuns, 5000);
  refreshRuns();
  connect();
  render();
})();
