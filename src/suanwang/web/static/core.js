// suanwang console: what every page uses (no framework, no build step). The API key lives in
// sessionStorage and goes out as "Authorization: Bearer" on every call.

export const KEY = "suanwang.apiKey";
export const FINAL = new Set(["succeeded", "failed", "cancelled", "lost"]);
export const STATES = ["pending", "scheduled", "running", "migrating", "succeeded", "failed", "cancelled", "lost"];
export const KINDS = ["inference", "interactive", "training", "finetune", "hpc", "render", "analytics", "backup"];
export const STACKS = ["cuda", "cann", "dtk", "neuware", "cpu"];

// The signed-in tenant ({tenant_id, name, role}), the element the current route renders into
// (inside <main>), and what app.js does to sign out (a refused key) and to show the page again.
export const state = { me: null, page: null, signOut: () => {}, route: () => {} };

const statusBar = document.getElementById("status");
let timers = [];        // polling timers of the current page
let geo = null;         // /v1/network/map, loaded once

// An element: attributes ("on..." listen, null/false left out) and children, nested arrays of
// them at any depth (null, undefined and false skipped; anything else not a node is text).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "style") el.style.cssText = v; // CSSOM: allowed by the CSP (no inline styles)
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// An SVG element, as h() makes HTML ones.
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "style") el.style.cssText = v;
    else el.setAttribute(k, v);
  }
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

export const pct = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(0)}%`);
export const num = (x, d = 2) => (x === null || x === undefined ? "–" : Number(x).toFixed(d));
export const when = (t) => (t ? new Date(t).toLocaleString() : "–");
export const badge = (s) => h("span", { class: `badge ${s}` }, s);

// el.replaceChildren(...) that skips null, undefined and false (conditional children).
export function put(el, ...kids) {
  el.replaceChildren(...kids.flat(Infinity).filter((k) => k !== null && k !== undefined && k !== false));
}

export function setStatus(text, isError) {
  statusBar.hidden = !text;
  statusBar.textContent = text || "";
  statusBar.classList.toggle("error", !!isError);
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(formatDetail(detail) || `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }
}

function formatDetail(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  if (detail && typeof detail === "object") return detail.msg || JSON.stringify(detail);
  return "";
}

export async function api(path, options = {}) {
  const key = sessionStorage.getItem(KEY);
  const headers = Object.assign({}, options.headers || {});
  if (key) headers.Authorization = `Bearer ${key}`;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  let r;
  try {
    r = await fetch(path, {
      method: options.method || "GET",
      headers,
      body: options.body !== undefined ? JSON.stringify(options.body) : undefined,
    });
  } catch (e) {
    throw new ApiError(0, `the server cannot be reached (${e.message})`);
  }
  const text = await r.text();
  let data = text;
  if ((r.headers.get("content-type") || "").includes("application/json")) {
    try { data = JSON.parse(text); } catch (e) { /* keep the text */ }
  }
  if (r.status === 401 && !options.signingIn) {
    state.signOut("Your API key was refused; sign in again.");
    throw new ApiError(401, "signed out");
  }
  if (!r.ok) throw new ApiError(r.status, data && data.detail !== undefined ? data.detail : data);
  return data;
}

// Run fn now and every ms while `owner` (the page that asked) is the current page.
export function poll(fn, ms, owner) {
  if (owner !== state.page) return Promise.resolve();  // the user already moved on
  let busy = false;
  let timer = null;
  const tick = async () => {
    if (owner !== state.page) { clearInterval(timer); return; }  // the user moved on
    if (busy) return;
    busy = true;
    try { await fn(); setStatus(""); } catch (e) {
      if (e.status !== 401) setStatus(`Could not refresh: ${e.message}`, true);
    } finally { busy = false; }
  };
  timer = setInterval(tick, ms);
  timers.push(timer);
  return tick();
}

export function stopPolling() {
  for (const t of timers) clearInterval(t);
  timers = [];
}

export function errorBox(e) {
  const box = h("div", { class: "error-box", role: "alert" });
  if (e instanceof ApiError && Array.isArray(e.detail)) {
    box.append(`The server refused this (${e.status}):`);
    box.append(h("ul", {}, e.detail.map((d) => h("li", {}, `${(d.loc || []).slice(1).join(".") || "request"}: ${d.msg}`))));
  } else {
    box.append(e.message || String(e));
  }
  return box;
}

// Show 422 problems next to the fields they name (inputs carry data-field="a.b").
export function markFields(form, e) {
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  for (const el of form.querySelectorAll(".field-error")) el.remove();
  if (!(e instanceof ApiError) || !Array.isArray(e.detail)) return;
  const byField = new Map();  // one message per field: the first, and how many more
  for (const d of e.detail) {
    const loc = (d.loc || []).slice(1).filter((p) => p !== "job").join(".");
    if (!byField.has(loc)) byField.set(loc, []);
    byField.get(loc).push(d.msg);
  }
  for (const [loc, msgs] of byField) {
    const input = form.querySelector(`[data-field="${CSS.escape(loc)}"]`);
    if (!input) continue;
    input.setAttribute("aria-invalid", "true");
    const more = msgs.length > 1 ? ` (and ${msgs.length - 1} more problems, listed below)` : "";
    input.insertAdjacentElement("afterend", h("div", { class: "field-error" }, msgs[0] + more));
  }
}

export async function loadGeo() {
  if (!geo) geo = await api("/v1/network/map");
  return geo;
}

// A labelled form field (the hint after the label).
export function field(label, input, hint) {
  return h("div", {}, h("label", { for: input.id }, label, hint ? h("span", { class: "hint" }, ` ${hint}`) : null), input);
}

// A select of the scenario's places (provinces), Beijing first chosen.
export async function originSelect(id, fieldName) {
  const g = await loadGeo();
  const sel = h("select", { id, "data-field": fieldName, required: true },
    g.provinces.map((p) => h("option", { value: p.id }, `${p.name} ${p.name_zh}`)));
  sel.value = "beijing";
  return sel;
}

// Utilization of a center (/v1/centers): of its cards, or of its CPU cores if it has none.
export function util(c) {
  const cards = Object.values(c.capacity.cards).reduce((a, b) => a + b, 0);
  return cards > 0 ? c.utilization.cards : c.utilization.cpu;
}
