// Formatting and DOM helpers shared by the dashboard's modules (loaded first).
// Every string from a trainer goes onto the page through textContent, never innerHTML.
window.VsrFormat = (() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const num = (v, f) => (typeof v === "number" && isFinite(v) ? f(v) : "–");
  const pct = (v) => num(v, (x) => (100 * x).toFixed(1) + "%");
  const fixed = (n) => (v) => num(v, (x) => x.toFixed(n));
  const sci = (v) => num(v, (x) => x.toExponential(2));
  const count = (v) => num(v, (x) => x.toLocaleString());
  const clock = (ts) => (typeof ts === "number" ? new Date(ts * 1000).toLocaleTimeString() : "");
  const when = (ts) => num(ts, (x) => new Date(x * 1000).toLocaleString([], {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }));

  // 45s, 12m 5s, 3h 20m, 2d 4h
  function duration(seconds) {
    return num(seconds, (s) => {
      const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
      if (d) return d + "d " + h + "h";
      if (h) return h + "h " + m + "m";
      return m ? m + "m " + Math.floor(s % 60) + "s" : Math.floor(s) + "s";
    });
  }

  // an element's text, written only when it changed
  function put(el, value) { if (el.textContent !== value) el.textContent = value; }
  function text(id, value) { put($(id), value); }
  function cell(tr, value, cls) { const td = tr.insertCell(); td.textContent = value; if (cls) td.className = cls; return td; }
  function element(tag, cls, value) {
    const el = document.createElement(tag);
    if (cls) el.className = cls;
    if (value != null) el.textContent = String(value);
    return el;
  }

  const query = (params) => "?" + new URLSearchParams(
    Object.entries(params).filter(([, v]) => v != null).map(([k, v]) => [k, String(v)])).toString();
  async function getJSON(path, params = {}) {
    const res = await fetch(path + query(params));
    if (!res.ok) throw new Error(path + ": HTTP " + res.status);
    return res.json();
  }

  return { $, num, pct, fixed, sci, count, clock, when, duration, put, text, cell, element, query, getJSON };
})();
