// VSR++ dashboard: one WebSocket (/ws) feeds everything; actions go to POST /api/action.
// Every string from a trainer is put on the page with textContent, never innerHTML.
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
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
  // picked: the run the user chose (sticky); shown: the run followed automatically,
  // which moves to another run only when it goes offline.
  const model = { runs: {}, picked: null, shown: null };
  const selectedName = () => (model.runs[model.picked] ? model.picked : model.runs[model.shown] ? model.shown : null);
  const selected = () => model.runs[selectedName()] || null;
  function follow(name) {
    const shown = model.runs[model.shown];
    if (!shown || !shown.status.trainer_online || model.shown === name) model.shown = name;
  }

  function emptyRun() {
    return { status: {}, history: [], validations: [], events: [], validation: null,
             checkpoints: null, image_version: 0 };
  }
  function runOf(name) { return (model.runs[name] = model.runs[name] || emptyRun()); }

  function applyFrame(msg) {
    const run = runOf(msg.run), d = msg.data;
    follow(msg.run);
    run.status.trainer_online = true;
    if (msg.topic === "status") {
      Object.assign(run.status, d);
      run.history.push({ iteration: d.iteration, total_loss: d.total_loss, learn_rate: d.learn_rate,
                         iter_speed: d.iter_speed, gpu_memory: d.gpu_memory });
      if (run.history.length > 6000) run.history.splice(0, run.history.length - 4000);
    } else if (msg.topic === "event") {
      run.events.push(d);
      if (run.events.length > MAX_EVENTS) run.events.shift();
    } else if (msg.topic === "validation") {
      run.validation = d;
      run.validations.push(d);
      run.image_version = d.image_version || run.image_version;
      run.status.is_validating = false;
    }
  }

  function onMessage(msg) {
    if (msg.type === "snapshot") { model.runs = msg.runs; model.shown = msg.current; }
    else if (msg.type === "frame") applyFrame(msg);
    else if (msg.type === "run") model.runs[msg.run] = msg.snapshot;
    else if (msg.type === "online") runOf(msg.run).status.trainer_online = msg.online;
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

  // ---- formatting ---------------------------------------------------------------
  const num = (v, f) => (typeof v === "number" && isFinite(v) ? f(v) : "–");
  const pct = (v) => num(v, (x) => (100 * x).toFixed(1) + "%");
  const fixed = (n) => (v) => num(v, (x) => x.toFixed(n));
  const sci = (v) => num(v, (x) => x.toExponential(2));
  const clock = (ts) => (typeof ts === "number" ? new Date(ts * 1000).toLocaleTimeString() : "");
  function text(id, value) { const el = $(id); if (el.textContent !== value) el.textContent = value; }
  function cell(tr, value, cls) { const td = tr.insertCell(); td.textContent = value; if (cls) td.className = cls; return td; }

  // ---- rendering -----------------------------------------------------------------
  let timer = null, last = 0;
  function schedule(wait) {
    if (timer) return;
    timer = setTimeout(() => { timer = null; last = Date.now(); requestAnimationFrame(render); },
                       Math.max(0, wait - (Date.now() - last)));
  }

  function render() {
    const run = selected(), s = (run && run.status) || {};
    const online = !!s.trainer_online;
    $("badge-offline").hidden = online;
    $("badge-training").hidden = !(online && s.is_training && !s.is_validating && !s.is_paused);
    $("badge-validating").hidden = !(online && s.is_validating);
    $("badge-paused").hidden = !(online && s.is_paused);
    renderDivergence(s);
    text("run-name", selectedName() || "waiting for a trainer…");
    renderCards(s);
    renderActivity(s.activity);
    renderControls(s, online);
    renderRunSelect();
    if (!run) return;
    renderValidation(run);
    renderCheckpoints(run.checkpoints || []);
    renderEvents(run.events);
    renderRuns();
    charts.update(model, run);
    const q = "?run=" + encodeURIComponent(selectedName());
    $("dl-csv").href = "/api/history.csv" + q;
    $("dl-json").href = "/api/history.json" + q;
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
      if (row.children[2].textContent !== v.toPrecision(3)) row.children[2].textContent = v.toPrecision(3);
    });
  }

  function renderControls(s, online) {
    const pause = $("btn-pause");
    pause.dataset.command = s.is_paused ? "resume" : "pause";
    text("btn-pause", s.is_paused ? "Resume" : "Pause");
    for (const b of document.querySelectorAll(".controls .btn")) b.disabled = !online;
  }

  function renderRunSelect() {
    const sel = $("run-select"), names = Object.keys(model.runs);
    if (sel.options.length !== names.length || names.some((n, i) => sel.options[i].value !== n)) {
      sel.replaceChildren(...names.map((n) => { const o = document.createElement("option"); o.value = n; o.textContent = n; return o; }));
    }
    sel.value = selectedName() || "";
    sel.parentElement.hidden = names.length < 2;
  }

  function renderValidation(run) {
    const v = run.validation, body = $("val-table").tBodies[0];
    text("val-iter", v ? "iteration " + v.iteration : "none yet");
    text("val-space", v && v.metric_space === "y" ? "PSNR/SSIM on Y" : "PSNR/SSIM on RGB");
    $("val-space").hidden = !v;
    const rows = v ? [["Model", v.psnr, v.ssim, v.quality], ["Bilinear", v.baseline_psnr, v.baseline_ssim, v.baseline_quality]] : [];
    body.replaceChildren();
    for (const [name, p, ss, q] of rows) {
      const tr = body.insertRow();
      cell(tr, name); cell(tr, num(p, (x) => x.toFixed(2) + " dB")); cell(tr, fixed(4)(ss)); cell(tr, pct(q));
    }
    const img = $("val-image"), src = "/api/validation.png?run=" + encodeURIComponent(selectedName()) + "&v=" + run.image_version;
    if (run.image_version && img.dataset.src !== src) { img.dataset.src = src; img.src = src; }
    img.hidden = !run.image_version;
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
      const kind = "kind" + (ALERT_KINDS.has(e.kind) ? " alert" : "");
      for (const [tag, cls, value] of [["time", "", clock(e.ts)], ["span", kind, e.kind], ["span", "msg", e.message]]) {
        const el = document.createElement(tag); if (cls) el.className = cls; el.textContent = String(value ?? ""); li.append(el);
      }
      return li;
    }));
  }

  function renderRuns() {
    const body = $("runs-table").tBodies[0];
    body.replaceChildren();
    for (const [name, r] of Object.entries(model.runs)) {
      const s = r.status || {}, tr = body.insertRow();
      tr.className = name === selectedName() ? "current" : "";
      cell(tr, name, "name");
      const st = cell(tr, s.trainer_online ? (s.is_paused ? "paused" : s.is_validating ? "validating" : "online") : "offline");
      const dot = document.createElement("span"); dot.className = "dot" + (s.trainer_online ? " on" : ""); st.prepend(dot);
      cell(tr, (s.iteration || 0).toLocaleString()); cell(tr, fixed(4)(s.total_loss)); cell(tr, pct(s.best_score));
      tr.onclick = () => choose(name);
    }
  }

  function choose(name) { model.picked = name; charts.reset(); schedule(0); }

  // ---- wiring ---------------------------------------------------------------------
  for (const b of document.querySelectorAll(".controls .btn")) b.addEventListener("click", () => act(b.dataset.command));
  $("run-select").addEventListener("change", (e) => choose(e.target.value));
  for (const id of ["smooth", "overlay", "val-metric"]) $(id).addEventListener("input", () => { charts.reset(); schedule(0); });
  $("btn-ckpt").addEventListener("click", async () => {
    const res = await fetch("/api/checkpoints?run=" + encodeURIComponent(selectedName() || ""));
    if (res.ok) { const b = await res.json(); if (b.run) runOf(b.run).checkpoints = b.checkpoints; schedule(0); }
  });
  const charts = window.VsrCharts($);
  connect();
  render();
})();
