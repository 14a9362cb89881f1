// suanwang console: a small single-page app over the JSON API (no framework, no build step).
// The API key lives in sessionStorage and goes out as "Authorization: Bearer" on every call.
"use strict";

const KEY = "suanwang.apiKey";
const FINAL = new Set(["succeeded", "failed", "cancelled", "lost"]);
const STATES = ["pending", "scheduled", "running", "migrating", "succeeded", "failed", "cancelled", "lost"];
const KINDS = ["inference", "interactive", "training", "finetune", "hpc", "render", "analytics", "backup"];
const STACKS = ["cuda", "cann", "dtk", "neuware", "cpu"];

const view = document.getElementById("view");
const statusBar = document.getElementById("status");
let me = null;          // {tenant_id, name, role}
let timers = [];        // polling timers of the current page
let geo = null;         // /v1/network/map, loaded once
let currentPage = null; // the element the current route renders into (inside <main>)

// ------------------------------------------------------------------ helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const pct = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(0)}%`);
const num = (x, d = 2) => (x === null || x === undefined ? "–" : Number(x).toFixed(d));
const when = (t) => (t ? new Date(t).toLocaleString() : "–");
const badge = (state) => h("span", { class: `badge ${state}` }, state);

// el.replaceChildren(...) that skips null, undefined and false (conditional children).
function put(el, ...kids) {
  el.replaceChildren(...kids.flat().filter((k) => k !== null && k !== undefined && k !== false));
}

function setStatus(text, isError) {
  statusBar.hidden = !text;
  statusBar.textContent = text || "";
  statusBar.classList.toggle("error", !!isError);
}

class ApiError extends Error {
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

async function api(path, options = {}) {
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
    signOut("Your API key was refused; sign in again.");
    throw new ApiError(401, "signed out");
  }
  if (!r.ok) throw new ApiError(r.status, data && data.detail !== undefined ? data.detail : data);
  return data;
}

// Run fn now and every ms while `owner` (the page that asked) is the current page.
function poll(fn, ms, owner) {
  if (owner !== currentPage) return Promise.resolve();  // the user already moved on
  let busy = false;
  let timer = null;
  const tick = async () => {
    if (owner !== currentPage) { clearInterval(timer); return; }  // the user moved on
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

function stopPolling() {
  for (const t of timers) clearInterval(t);
  timers = [];
}

function errorBox(e) {
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
function markFields(form, e) {
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

async function loadGeo() {
  if (!geo) geo = await api("/v1/network/map");
  return geo;
}

// ------------------------------------------------------------------ sign-in

function signOut(message) {
  sessionStorage.removeItem(KEY);
  me = null;
  stopPolling();
  document.getElementById("nav").hidden = true;
  document.getElementById("who").hidden = true;
  renderSignIn(message);
}

function renderSignIn(message) {
  const input = h("input", {
    id: "api-key", name: "api_key", type: "password", autocomplete: "off", required: true,
    placeholder: "sw_…", size: 50, "aria-describedby": "key-hint",
  });
  const err = h("div", { id: "sign-in-error" });
  const form = h("form", { class: "stack", id: "sign-in", onsubmit: async (ev) => {
    ev.preventDefault();
    put(err);
    sessionStorage.setItem(KEY, input.value.trim());
    try {
      me = await api("/v1/me", { signingIn: true });
    } catch (e) {
      sessionStorage.removeItem(KEY);
      err.append(errorBox(e.status === 401 ? new Error("That API key was not accepted.") : e));
      input.focus();
      return;
    }
    signedIn();
    if (!location.hash || location.hash === "#/signin") location.hash = "#/map";
    else route();
  } },
    h("label", { for: "api-key" }, "API key"),
    input,
    h("p", { id: "key-hint", class: "hint muted" },
      "The key from ", h("code", {}, "suanwang demo"), " or ", h("code", {}, "suanwang tenants create"),
      ". It is kept in this browser tab only (sessionStorage)."),
    err,
    h("div", { class: "actions" }, h("button", { class: "primary", type: "submit" }, "Sign in")));
  put(view, 
    h("div", { class: "panel", style: "max-width: 620px" },
      h("h1", {}, "Sign in to the suanwang console"),
      message ? h("div", { class: "error-box", role: "alert" }, message) : null,
      form));
  input.focus();
}

function signedIn() {
  document.getElementById("nav").hidden = false;
  document.getElementById("who").hidden = false;
  document.getElementById("who-name").textContent = `${me.name} (${me.role})`;
  document.getElementById("nav-operator").hidden = me.role !== "operator";
  document.getElementById("nav-whatif").hidden = me.role !== "operator";
}

document.getElementById("sign-out").addEventListener("click", () => signOut("Signed out."));

// ------------------------------------------------------------------ map

const METRICS = {
  utilization: { label: "Utilization (cards, or CPU)", get: (c) => util(c), fmt: pct, ramp: ["#2a9d4b", "#f2c94c", "#d64545"], lo: 0, hi: 1 },
  green: { label: "Green share of power", get: (c) => c.signals.green_fraction, fmt: pct, ramp: ["#8a8f98", "#9fd18b", "#1d8a3a"], lo: 0, hi: 1 },
  price: { label: "Energy price (CNY/kWh)", get: (c) => c.signals.price_cny_per_kwh, fmt: (x) => num(x, 3), ramp: ["#2a9d4b", "#f2c94c", "#d64545"], lo: null, hi: null },
  carbon: { label: "Carbon (g CO₂/kWh)", get: (c) => c.signals.carbon_g_per_kwh, fmt: (x) => num(x, 0), ramp: ["#2a9d4b", "#f2c94c", "#6b4b3a"], lo: null, hi: null },
};

function util(c) {
  const cards = Object.values(c.capacity.cards).reduce((a, b) => a + b, 0);
  return cards > 0 ? c.utilization.cards : c.utilization.cpu;
}

function mix(a, b, t) {
  const p = (s) => [1, 3, 5].map((i) => parseInt(s.slice(i, i + 2), 16));
  const [x, y] = [p(a), p(b)];
  return `rgb(${x.map((v, i) => Math.round(v + (y[i] - v) * t)).join(",")})`;
}

function colour(ramp, t) {
  t = Math.max(0, Math.min(1, isFinite(t) ? t : 0));
  return t < 0.5 ? mix(ramp[0], ramp[1], t * 2) : mix(ramp[1], ramp[2], (t - 0.5) * 2);
}

// Equirectangular projection with the longitude scaled at 36°N (China's middle latitude).
const W = 800, H = 600, LON0 = 74, LON1 = 133, LAT0 = 17.5, LAT1 = 49;
const KX = Math.cos((36 * Math.PI) / 180);
function project(lat, lon) {
  const sx = W / ((LON1 - LON0) * KX), sy = H / (LAT1 - LAT0), s = Math.min(sx, sy);
  return [(lon - LON0) * KX * s + 10, (LAT1 - lat) * s + 5];
}

async function renderMap() {
  const view = currentPage;
  const g = await loadGeo();
  const metricSel = h("select", { id: "metric", "aria-label": "Colour centers by" },
    Object.entries(METRICS).map(([k, m]) => h("option", { value: k }, m.label)));
  metricSel.value = sessionStorage.getItem("suanwang.metric") || "utilization";
  const mapBox = h("div", { id: "map" });
  const panel = h("div", { id: "center-panel" }, h("p", { class: "muted" }, "Select a center on the map (click, or Tab and Enter) to see its panel."));
  const hubsBox = h("div", { id: "hubs" });
  const nationalBox = h("div", { id: "national" });
  const table = h("div", { id: "centers-table" });
  put(view, 
    h("h1", {}, "The network ", h("span", { class: "sub", id: "scenario-name" }, g.scenario)),
    h("div", { class: "grid2" },
      h("div", {},
        h("div", { class: "filters" }, h("label", {}, "Colour centers by", metricSel)),
        mapBox),
      h("div", {},
        h("div", { class: "panel" }, nationalBox),
        h("div", { class: "panel" }, panel),
        h("div", { class: "panel" }, h("h2", {}, "Hubs"), hubsBox))),
    h("div", { class: "panel" }, h("h2", {}, "All centers"), table));

  let centers = [], network = null, drained = new Set(), selected = null;
  const draw = () => {
    const m = METRICS[metricSel.value];
    const values = centers.map(m.get);
    const lo = m.lo !== null ? m.lo : Math.min(...values);
    const hi = m.hi !== null ? m.hi : Math.max(...values);
    const scale = (v) => (hi > lo ? (v - lo) / (hi - lo) : 0.5);
    const byId = Object.fromEntries(g.centers.map((c) => [c.id, c]));
    const hubPos = Object.fromEntries(g.hubs.map((x) => [x.id, project(x.lat, x.lon)]));
    const [right, bottom] = project(LAT0, LON1);
    const root = svg("svg", { class: "map", viewBox: `0 0 ${Math.ceil(right + 10)} ${Math.ceil(bottom + 5)}`, role: "img", "aria-label": `Map of ${centers.length} computing centers` });
    // the backbone between hubs (a ring in longitude order) and spokes center -> hub
    const hubsByLon = [...g.hubs].sort((a, b) => a.lon - b.lon);
    for (let i = 0; i + 1 < hubsByLon.length; i++) {
      const [x1, y1] = hubPos[hubsByLon[i].id], [x2, y2] = hubPos[hubsByLon[i + 1].id];
      root.append(svg("line", { class: "backbone", x1, y1, x2, y2 }));
    }
    for (const p of g.provinces) {
      const [x, y] = project(p.lat, p.lon);
      root.append(svg("circle", { class: "province", cx: x, cy: y, r: 2 }));
      const east = x > right * 0.85;  // labels at the right edge go to the left of their dot
      root.append(svg("text", { class: "province-label", x: east ? x - 4 : x + 4, y: y + 3, "text-anchor": east ? "end" : "start" }, p.name));
    }
    for (const c of centers) {
      const pos = byId[c.id];
      if (pos && c.hub && hubPos[c.hub]) {
        const [x1, y1] = project(pos.lat, pos.lon), [x2, y2] = hubPos[c.hub];
        root.append(svg("line", { class: "spoke", x1, y1, x2, y2 }));
      }
    }
    for (const x of g.hubs) {
      const [cx, cy] = hubPos[x.id];
      root.append(svg("circle", { class: "hub", cx, cy, r: 22 }));
      root.append(svg("text", { class: "hub-label", x: cx + 24, y: cy - 12 }, x.name_zh));
    }
    for (const c of centers) {
      const pos = byId[c.id];
      if (!pos) continue;
      const [x, y] = project(pos.lat, pos.lon);
      const v = m.get(c);
      const cards = Object.values(c.capacity.cards).reduce((a, b) => a + b, 0);
      const circle = svg("circle", {
        class: `center${selected === c.id ? " selected" : ""}`, cx: x, cy: y,
        r: 5 + Math.min(9, Math.sqrt(cards / 400)), fill: colour(m.ramp, scale(v)),
        tabindex: 0, role: "button", "data-center": c.id,
        "aria-label": `${c.name}: ${m.label} ${m.fmt(v)}${drained.has(c.id) ? ", drained" : ""}`,
        onclick: () => { selected = c.id; draw(); },
        onkeydown: (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); selected = c.id; draw(); root.querySelector(`[data-center="${c.id}"]`).focus(); } },
      }, svg("title", {}, `${c.name} (${c.name_zh}): ${m.fmt(v)}`));
      root.append(circle);
    }
    const legend = h("div", { class: "legend" },
      h("span", {}, m.fmt(lo)),
      h("span", { class: "ramp", style: `background: linear-gradient(90deg, ${m.ramp.join(",")})` }),
      h("span", {}, m.fmt(hi)),
      h("span", {}, ` ${m.label} · dashed rings: national hubs · size: cards`));
    put(mapBox, root, legend);
    renderCenterPanel(panel, centers.find((c) => c.id === selected), drained);
    renderCentersTable(table, centers, drained, (id) => { selected = id; draw(); });
  };
  metricSel.addEventListener("change", () => { sessionStorage.setItem("suanwang.metric", metricSel.value); draw(); });

  await poll(async () => {
    const [cl, net, dr] = await Promise.all([api("/v1/centers"), api("/v1/network"), api("/v1/centers/drained")]);
    centers = cl.centers;
    network = net;
    drained = new Set(dr.map((d) => d.center_id));
    if (centers.length === 0) {
      put(mapBox, h("div", { class: "empty" },
        me.role === "provider" ? "You own no centers yet: an operator grants them with `suanwang tenants centers`." : "This scenario has no centers."));
    } else {
      draw();
    }
    renderNetwork(nationalBox, hubsBox, network, centers);
  }, 5000, view);
}

function totalsRow(t) {
  const cards = Object.values(t.capacity.cards).reduce((a, b) => a + b, 0);
  const used = Object.values(t.used.cards).reduce((a, b) => a + b, 0);
  return [cards, used];
}

function renderNetwork(nationalBox, hubsBox, net, centers) {
  const [cards, used] = totalsRow(net.national);
  const green = centers.length ? centers.reduce((a, c) => a + c.signals.green_fraction, 0) / centers.length : 0;
  put(nationalBox, 
    h("h2", {}, "National"),
    h("dl", { class: "kv" },
      h("dt", {}, "Centers"), h("dd", {}, net.national.centers),
      h("dt", {}, "Cards in use"), h("dd", {}, `${used} of ${cards} (${pct(net.national.utilization.cards)})`),
      h("dt", {}, "CPU cores in use"), h("dd", {}, `${net.national.used.cpu_cores} of ${net.national.capacity.cpu_cores} (${pct(net.national.utilization.cpu)})`),
      h("dt", {}, "Mean green share now"), h("dd", {}, pct(green)),
      h("dt", {}, "Signals for"), h("dd", {}, centers.length ? when(centers[0].signals.hour) : "–")));
  const byHub = {};
  for (const c of centers) (byHub[c.hub || ""] = byHub[c.hub || ""] || []).push(c);
  put(hubsBox, h("table", { id: "hub-table" },
    h("thead", {}, h("tr", {}, h("th", {}, "Hub"), h("th", { class: "num" }, "Centers"), h("th", { class: "num" }, "Cards used"),
      h("th", { class: "num" }, "Util."), h("th", { class: "num" }, "Green"), h("th", { class: "num" }, "CNY/kWh"))),
    h("tbody", {}, net.hubs.map((t) => {
      const cs = byHub[t.id || ""] || [];
      const avg = (f) => (cs.length ? cs.reduce((a, c) => a + f(c), 0) / cs.length : null);
      const [cap, u] = totalsRow(t);
      return h("tr", { "data-hub": t.id || "none" }, h("td", {}, t.name), h("td", { class: "num" }, t.centers),
        h("td", { class: "num" }, `${u}/${cap}`), h("td", { class: "num" }, pct(t.utilization.cards)),
        h("td", { class: "num" }, pct(avg((c) => c.signals.green_fraction))),
        h("td", { class: "num" }, num(avg((c) => c.signals.price_cny_per_kwh), 3)));
    }))));
}

function renderCenterPanel(panel, c, drained) {
  if (!c) return;
  const cards = Object.entries(c.capacity.cards).map(([m, n]) => `${m}: ${c.used.cards[m] || 0}/${n}`).join(", ") || "none";
  put(panel, 
    h("h2", { id: "center-title" }, `${c.name} `, h("span", { lang: "zh" }, c.name_zh)),
    drained.has(c.id) ? h("p", { class: "error-box" }, "Drained: takes no new jobs.") : null,
    h("dl", { class: "kv" },
      h("dt", {}, "Id"), h("dd", {}, c.id),
      h("dt", {}, "Type"), h("dd", {}, c.type),
      h("dt", {}, "Province · hub"), h("dd", {}, `${c.province} · ${c.hub || "outside the hubs"}`),
      h("dt", {}, "Utilization"), h("dd", {}, `cards ${pct(c.utilization.cards)}, CPU ${pct(c.utilization.cpu)}`),
      h("dt", {}, "Cards used"), h("dd", {}, cards),
      h("dt", {}, "CPU cores"), h("dd", {}, `${c.used.cpu_cores}/${c.capacity.cpu_cores}`),
      h("dt", {}, "Energy price"), h("dd", {}, `${num(c.signals.price_cny_per_kwh, 3)} CNY/kWh`),
      h("dt", {}, "Green share"), h("dd", {}, pct(c.signals.green_fraction)),
      h("dt", {}, "Carbon"), h("dd", {}, `${num(c.signals.carbon_g_per_kwh, 0)} g CO₂/kWh`),
      h("dt", {}, "PUE"), h("dd", {}, num(c.pue, 2))),
    h("p", {}, h("a", { href: `#/jobs?center=${encodeURIComponent(c.id)}` }, "Jobs on this center")));
}

function renderCentersTable(box, centers, drained, select) {
  put(box, h("table", {},
    h("thead", {}, h("tr", {}, ["Center", "Hub", "Util. (cards)", "CPU", "CNY/kWh", "Green", "g CO₂/kWh", "PUE", ""].map((t, i) => h("th", { class: i >= 2 && i < 8 ? "num" : null }, t)))),
    h("tbody", {}, centers.map((c) => h("tr", { "data-center-row": c.id },
      h("td", {}, h("button", { type: "button", class: "link", style: "color: var(--accent)", onclick: () => select(c.id) }, c.name), " ", h("span", { class: "muted", lang: "zh" }, c.name_zh)),
      h("td", {}, c.hub || "–"),
      h("td", { class: "num" }, pct(c.utilization.cards)),
      h("td", { class: "num" }, pct(c.utilization.cpu)),
      h("td", { class: "num" }, num(c.signals.price_cny_per_kwh, 3)),
      h("td", { class: "num" }, pct(c.signals.green_fraction)),
      h("td", { class: "num" }, num(c.signals.carbon_g_per_kwh, 0)),
      h("td", { class: "num" }, num(c.pue, 2)),
      h("td", {}, drained.has(c.id) ? h("span", { class: "badge failed" }, "drained") : ""))))));
}

// ------------------------------------------------------------------ jobs

async function renderJobs(params) {
  const view = currentPage;
  const stateSel = h("select", { id: "filter-state" }, h("option", { value: "" }, "any"), STATES.map((s) => h("option", { value: s }, s)));
  const kindSel = h("select", { id: "filter-kind" }, h("option", { value: "" }, "any"), KINDS.map((s) => h("option", { value: s }, s)));
  const nameIn = h("input", { id: "filter-name", type: "search", placeholder: "part of the name" });
  const centerIn = h("input", { id: "filter-center", type: "search", placeholder: "center id" });
  stateSel.value = params.get("state") || "";
  kindSel.value = params.get("kind") || "";
  centerIn.value = params.get("center") || "";
  const box = h("div", { id: "jobs-table" }, h("p", { class: "muted" }, "Loading…"));
  put(view, 
    h("h1", {}, "Jobs"),
    h("div", { class: "filters", role: "search" },
      h("label", {}, "State", stateSel), h("label", {}, "Kind", kindSel),
      h("label", {}, "Name", nameIn), h("label", {}, "Center", centerIn),
      h("a", { class: "button", href: "#/submit" }, "Submit a job")),
    box);
  let items = [];
  const draw = () => {
    const name = nameIn.value.trim().toLowerCase(), center = centerIn.value.trim().toLowerCase();
    const shown = items.filter((j) => (!kindSel.value || j.kind === kindSel.value)
      && (!name || j.name.toLowerCase().includes(name))
      && (!center || (j.center_id || "").toLowerCase().includes(center)));
    if (shown.length === 0) {
      const filtering = stateSel.value || kindSel.value || name || center;
      put(box, h("div", { class: "empty" }, filtering
        ? "No job matches these filters."
        : h("span", {}, "No jobs yet. ", h("a", { href: "#/submit" }, "Submit one"), " or ", h("a", { href: "#/apps" }, "run an app"), ".")));
      return;
    }
    put(box, h("table", {},
      h("thead", {}, h("tr", {}, ["Name", "State", "Kind", "Origin", "Center", "Submitted", "Ended"].map((t) => h("th", {}, t)))),
      h("tbody", {}, shown.map((j) => h("tr", { "data-job": j.id },
        h("td", {}, h("a", { href: `#/jobs/${j.id}` }, j.name)), h("td", {}, badge(j.state)), h("td", {}, j.kind),
        h("td", {}, j.origin), h("td", {}, j.center_id || "–"), h("td", {}, when(j.submitted_at)), h("td", {}, when(j.ended_at)))))),
      h("p", { class: "sub" }, `${shown.length} of ${items.length} jobs shown (newest first; refreshed every 3 s)`));
  };
  const refresh = async () => {
    const q = stateSel.value ? `?state=${stateSel.value}&limit=500` : "?limit=500";
    items = (await api(`/v1/jobs${q}`)).items;
    draw();
  };
  const syncUrl = () => {
    const p = new URLSearchParams();
    for (const [k, el] of [["state", stateSel], ["kind", kindSel], ["center", centerIn]]) if (el.value) p.set(k, el.value);
    history.replaceState(null, "", `#/jobs${p.toString() ? "?" + p : ""}`);
  };
  stateSel.addEventListener("change", () => { syncUrl(); refresh().catch((e) => put(box, errorBox(e))); });
  for (const el of [kindSel, nameIn, centerIn]) el.addEventListener("input", () => { syncUrl(); draw(); });
  await poll(refresh, 3000, view);
}

async function renderJob(id) {
  const view = currentPage;
  const head = h("div", {}), placement = h("div", { id: "placement" }), events = h("div", { id: "events" });
  const logs = h("pre", { class: "logs", id: "logs", tabindex: 0, "aria-label": "Job output" }, "");
  put(view, 
    h("p", {}, h("a", { href: "#/jobs" }, "← All jobs")),
    head,
    h("div", { class: "grid2" },
      h("div", {}, h("div", { class: "panel" }, h("h2", {}, "Placement"), placement),
        h("div", { class: "panel" }, h("h2", {}, "Output"), logs)),
      h("div", {}, h("div", { class: "panel" }, h("h2", {}, "State history"), events))));
  let done = false;
  const refresh = async () => {
    if (done) return;
    let job;
    try {
      job = await api(`/v1/jobs/${encodeURIComponent(id)}`);
    } catch (e) {
      if (e.status === 404) {
        done = true;
        put(view, h("h1", {}, "Job not found"), h("div", { class: "empty" }, `There is no job ${id} that you may see.`), h("p", {}, h("a", { href: "#/jobs" }, "All jobs")));
        return;
      }
      throw e;
    }
    const [evs, text] = await Promise.all([api(`/v1/jobs/${id}/events`), api(`/v1/jobs/${id}/logs`)]);
    const cancel = !FINAL.has(job.state) && (me.role === "operator" || job.tenant_id === me.tenant_id)
      ? h("button", { type: "button", class: "danger secondary", id: "cancel-job", onclick: async (ev) => {
        ev.target.disabled = true;
        try { await api(`/v1/jobs/${id}/cancel`, { method: "POST" }); await refresh(); } catch (e) { head.append(errorBox(e)); }
      } }, "Cancel job") : null;
    put(head, 
      h("h1", {}, job.name, " ", h("span", { id: "job-state" }, badge(job.state))),
      h("div", { class: "panel" }, h("dl", { class: "kv" },
        h("dt", {}, "Id"), h("dd", {}, job.id),
        h("dt", {}, "Kind · origin"), h("dd", {}, `${job.kind} · ${job.origin}`),
        h("dt", {}, "Resources"), h("dd", {}, `${job.spec.resources.count} × ${job.spec.resources.accelerator} cards, ${job.spec.resources.cpus} CPU cores, ${job.spec.resources.mem_gb} GB`),
        h("dt", {}, "Stacks"), h("dd", {}, (job.spec.stacks || []).join(", ")),
        h("dt", {}, "Center · accelerator"), h("dd", {}, job.center_id ? `${job.center_id} · ${job.pool_model}` : "not placed yet"),
        h("dt", {}, "Planned start"), h("dd", {}, when(job.start_at)),
        h("dt", {}, "Exit code"), h("dd", {}, job.exit_code === null ? "–" : job.exit_code),
        h("dt", {}, "Command"), h("dd", {}, h("code", {}, job.spec.command || "(script)"))),
        cancel ? h("div", { class: "actions" }, cancel) : null));
    renderPlacement(placement, job);
    put(events, evs.length === 0 ? h("div", { class: "empty" }, "No events yet.") : h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "At"), h("th", {}, "From"), h("th", {}, "To"), h("th", {}, "Detail"))),
      h("tbody", {}, evs.map((e) => h("tr", { "data-event": e.to_state }, h("td", {}, when(e.at)), h("td", {}, e.from_state ? badge(e.from_state) : "–"),
        h("td", {}, badge(e.to_state)), h("td", { class: "sub" }, Object.entries(e.detail || {}).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join("; ")))))));
    logs.textContent = text || (FINAL.has(job.state) ? "(no output)" : "(no output yet)");
    if (FINAL.has(job.state)) done = true;
  };
  await poll(refresh, 2000, view);
}

function renderPlacement(box, job) {
  const d = job.decision;
  if (!d || !d.chosen) {
    put(box, h("div", { class: "empty" }, job.state === "pending" ? "Waiting for the dispatcher to place this job…" : "No placement was recorded."));
    return;
  }
  const cols = [["center", "Center", (x) => x], ["accelerator", "Cards", (x) => x], ["cost_cny", "Cost (CNY)", (x) => num(x, 2)],
    ["energy_kwh", "Energy (kWh)", (x) => num(x, 1)], ["carbon_kg", "Carbon (kg)", (x) => num(x, 2)],
    ["transfer_cost_cny", "Transfer (CNY)", (x) => num(x, 2)], ["latency_ms", "Latency (ms)", (x) => num(x, 1)], ["runtime_s", "Runtime (h)", (x) => num(x / 3600, 2)]];
  const row = (r, label, cls) => h("tr", { class: cls }, h("td", {}, label), cols.map(([k, , f]) => h("td", { class: k === "center" || k === "accelerator" ? null : "num" }, f(r[k]))));
  put(box, 
    d.reason ? h("p", { id: "placement-reason" }, d.reason) : null,
    h("table", { id: "placement-table" },
      h("thead", {}, h("tr", {}, h("th", {}, ""), cols.map(([k, t]) => h("th", { class: k === "center" || k === "accelerator" ? null : "num" }, t)))),
      h("tbody", {},
        row(d.chosen, "chosen", "chosen"),
        d.if_started_now ? row(d.if_started_now, "chosen, started now", "") : null,
        (d.runners_up || []).map((r, i) => row(r, `runner-up ${i + 1}`, "")))),
    h("p", { class: "sub" }, "Costs are forecasts at placement: energy at the center's price and green share over the run, plus moving the data."));
}

// ------------------------------------------------------------------ submit

function field(label, input, hint) {
  return h("div", {}, h("label", { for: input.id }, label, hint ? h("span", { class: "hint" }, ` ${hint}`) : null), input);
}

async function originSelect(id, fieldName) {
  const g = await loadGeo();
  const sel = h("select", { id, "data-field": fieldName, required: true },
    g.provinces.map((p) => h("option", { value: p.id }, `${p.name} ${p.name_zh}`)));
  sel.value = "beijing";
  return sel;
}

async function renderSubmit() {
  const view = currentPage;
  const input = (id, attrs) => h("input", Object.assign({ id, name: id }, attrs));
  const name = input("name", { "data-field": "name", required: true, value: "my-job", maxlength: 200 });
  const command = h("textarea", { id: "command", "data-field": "command", required: true }, "echo hello from the network; sleep 1; echo done");
  const kind = h("select", { id: "kind", "data-field": "kind" }, KINDS.map((k) => h("option", { value: k }, k)));
  kind.value = "inference";
  const origin = await originSelect("origin", "origin");
  const count = input("count", { type: "number", min: 0, value: 1, "data-field": "resources.count" });
  const cpus = input("cpus", { type: "number", min: 1, value: 4, "data-field": "resources.cpus" });
  const mem = input("mem_gb", { type: "number", min: 1, step: "any", value: 16, "data-field": "resources.mem_gb" });
  const acc = input("accelerator", { value: "any", "data-field": "resources.accelerator" });
  const duration = input("duration_s", { type: "number", min: 1, value: 600, "data-field": "duration_s" });
  const deadline = input("deadline_s", { type: "number", min: 1, placeholder: "none", "data-field": "deadline_s" });
  const dataGb = input("data_gb", { type: "number", min: 0, step: "any", value: 0, "data-field": "data_gb" });
  const ckpt = input("checkpointable", { type: "checkbox" });
  const stackBoxes = STACKS.map((s) => h("label", { style: "font-weight: 400; display: inline-flex; gap: 4px; margin-right: 12px" },
    h("input", { type: "checkbox", value: s, name: "stacks", checked: s === "cuda" }), s));
  const stacksGroup = h("fieldset", { "data-field": "stacks", style: "border: 0; padding: 0" }, h("legend", { class: "sr" }, "Software stacks"), stackBoxes);
  const err = h("div", { id: "submit-error" });
  const button = h("button", { class: "primary", type: "submit", id: "submit-job" }, "Submit job");
  const form = h("form", { class: "stack panel", id: "submit-form", novalidate: true, onsubmit: async (ev) => {
    ev.preventDefault();
    put(err);
    const stacks = [...form.querySelectorAll("input[name=stacks]:checked")].map((b) => b.value);
    const body = {
      name: name.value, command: command.value, kind: kind.value, origin: origin.value,
      resources: { count: Number(count.value), cpus: Number(cpus.value), mem_gb: Number(mem.value), accelerator: acc.value || "any" },
      duration_s: Number(duration.value), data_gb: Number(dataGb.value || 0), checkpointable: ckpt.checked,
    };
    if (stacks.length) body.stacks = stacks;
    if (deadline.value) body.deadline_s = Number(deadline.value);
    button.disabled = true;
    try {
      const job = await api("/v1/jobs", { method: "POST", body });
      location.hash = `#/jobs/${job.id}`;
    } catch (e) {
      markFields(form, e);
      err.append(errorBox(e));
    } finally { button.disabled = false; }
  } },
    field("Name", name),
    field("Command", command, "(a shell command line; runs on the center's executor)"),
    h("div", { class: "row" }, field("Kind", kind), field("Origin", origin, "(where users and data are)")),
    h("div", { class: "row" }, field("Cards", count, "(0: CPU only)"), field("Accelerator", acc, "(model or any)"), field("CPU cores", cpus), field("Memory (GB)", mem)),
    h("div", { class: "row" }, field("Duration (s)", duration, "(on an A100)"), field("Deadline (s)", deadline, "(optional)"), field("Data to move (GB)", dataGb)),
    h("label", {}, "Software stacks"), stacksGroup,
    h("label", { style: "font-weight: 400" }, ckpt, " checkpointable (may be moved: SIGUSR1 → exit 85)"),
    err,
    h("div", { class: "actions" }, button));
  put(view, h("h1", {}, "Submit a job"),
    h("p", { class: "muted" }, "The network chooses where and when it runs. Inference and interactive jobs start at once; others may wait for a cheaper, greener hour (give a deadline to bound that)."),
    form);
}

// ------------------------------------------------------------------ apps

async function renderApps() {
  const view = currentPage;
  const list = await api("/v1/apps");
  const cards = list.items.map((a) => h("article", { class: "card", "data-app": a.id },
    h("h2", {}, a.name),
    h("div", { class: "meta" }, `${a.category} · ${a.template.kind} · ${a.template.stacks.join(", ")} · by ${a.publisher}`),
    h("p", {}, a.summary),
    h("a", { class: "button primary", href: `#/apps/${a.id}`, "aria-label": `Open ${a.name}` }, "Open")));
  put(view, h("h1", {}, "App marketplace"),
    h("p", { class: "muted" }, "Packaged applications: choose one, fill in its parameters and the network runs it where it is cheapest and greenest."),
    cards.length ? h("div", { class: "cards", id: "app-cards" }, cards) : h("div", { class: "empty" }, "No apps are published."),
    me.role !== "consumer" ? renderPublish() : null);
}

// A form editing an app as JSON: `send(spec)` publishes or saves it; problems go into `err`.
function appJsonForm({ id, spec, rows, hint, button, err, send }) {
  const text = h("textarea", { id: `${id}-spec`, rows, "aria-describedby": `${id}-hint` }, JSON.stringify(spec, null, 2));
  return h("form", { class: "stack", id: `${id}-form`, onsubmit: async (ev) => {
    ev.preventDefault();
    put(err);
    let body;
    try { body = JSON.parse(text.value); } catch (e) { err.append(errorBox(new Error(`Not valid JSON: ${e.message}`))); return; }
    try { await send(body); } catch (e) { err.append(errorBox(e)); }
  } },
    h("label", { for: `${id}-spec` }, "App (JSON)"), text,
    h("p", { id: `${id}-hint`, class: "hint muted" }, hint),
    err, h("div", { class: "actions" }, button));
}

function renderPublish() {
  const example = {
    id: "my-app", name: "My app", category: "AI inference", summary: "What it does, in one line.",
    parameters: [{ name: "gpus", type: "int", label: "Cards", default: 1, min: 1, max: 8 }],
    template: { kind: "inference", stacks: ["cuda"], resources: { count: "{gpus}", cpus: "{gpus} * 8" }, duration_s: 600, command: "echo serving on {gpus} cards" },
  };
  const form = appJsonForm({ id: "publish", spec: example, rows: 14, err: h("div", {}),
    hint: "Numeric fields take a number or a product such as \"{gpus} * 8\"; {name} in the command is replaced by the value (text is shell-quoted).",
    button: h("button", { class: "secondary", type: "submit" }, "Publish app"),
    send: async (spec) => {
      const app = await api("/v1/apps", { method: "POST", body: spec });
      location.hash = `#/apps/${app.id}`;
    } });
  return h("details", { class: "panel" }, h("summary", {}, "Publish an app (providers and operators)"), form);
}

async function renderApp(id) {
  const view = currentPage;
  let app;
  try { app = await api(`/v1/apps/${encodeURIComponent(id)}`); } catch (e) {
    put(view, h("h1", {}, "App not found"), h("div", { class: "empty" }, e.status === 404 ? `There is no app ${id}.` : e.message), h("p", {}, h("a", { href: "#/apps" }, "All apps")));
    return;
  }
  const inputs = {};
  const params = app.parameters.map((p) => {
    let el;
    const attrs = { id: `param-${p.name}`, name: p.name, "data-field": `parameters.${p.name}` };
    if (p.type === "choice") {
      el = h("select", attrs, p.choices.map((c) => h("option", { value: c }, c)));
      el.value = p.default;
    } else if (p.type === "string") {
      el = h("input", Object.assign(attrs, { value: p.default }));
    } else {
      el = h("input", Object.assign(attrs, { type: "number", step: p.type === "int" ? 1 : "any", value: p.default,
        min: p.min !== null ? p.min : null, max: p.max !== null ? p.max : null }));
    }
    inputs[p.name] = [p, el];
    const range = p.min !== null || p.max !== null ? `(${p.min !== null ? p.min : ""}–${p.max !== null ? p.max : ""})` : "";
    return field(p.label, el, [p.description, range].filter(Boolean).join(" "));
  });
  const origin = await originSelect("app-origin", "origin");
  const jobName = h("input", { id: "app-job-name", value: app.id, "data-field": "name" });
  const err = h("div", { id: "run-error" });
  const button = h("button", { class: "primary", type: "submit", id: "run-app" }, `Run ${app.name}`);
  const form = h("form", { class: "stack panel", id: "app-form", novalidate: true, onsubmit: async (ev) => {
    ev.preventDefault();
    put(err);
    const values = {};
    for (const [name, [p, el]] of Object.entries(inputs)) {
      values[name] = p.type === "int" || p.type === "float" ? (el.value === "" ? null : Number(el.value)) : el.value;
    }
    button.disabled = true;
    try {
      const job = await api(`/v1/apps/${app.id}/run`, { method: "POST", body: { origin: origin.value, name: jobName.value, parameters: values } });
      location.hash = `#/jobs/${job.id}`;
    } catch (e) {
      markFields(form, e);
      err.append(errorBox(e));
    } finally { button.disabled = false; }
  } },
    params, h("div", { class: "row" }, field("Job name", jobName), field("Origin", origin, "(where you and your data are)")),
    err, h("div", { class: "actions" }, button));
  const t = app.template;
  put(view, 
    h("p", {}, h("a", { href: "#/apps" }, "← All apps")),
    h("h1", {}, app.name),
    h("p", {}, app.summary), app.description ? h("p", { class: "muted" }, app.description) : null,
    h("div", { class: "grid2" }, form,
      h("div", { class: "panel" }, h("h2", {}, "Template"), h("dl", { class: "kv" },
        h("dt", {}, "Kind"), h("dd", {}, t.kind), h("dt", {}, "Stacks"), h("dd", {}, t.stacks.join(", ")),
        h("dt", {}, "Resources"), h("dd", {}, Object.entries(t.resources).map(([k, v]) => `${k}: ${v}`).join(", ")),
        h("dt", {}, "Duration (s)"), h("dd", {}, t.duration_s), h("dt", {}, "Checkpointable"), h("dd", {}, t.checkpointable ? "yes" : "no"),
        h("dt", {}, "Publisher"), h("dd", {}, app.publisher)),
        h("h2", {}, "Command"), h("pre", { class: "logs" }, t.command))),
    app.editable ? renderManageApp(app) : null);
}

// Update (PUT) or delete (DELETE) a published app: its publisher and operators see this.
function renderManageApp(app) {
  const spec = { id: app.id, name: app.name, category: app.category, summary: app.summary, description: app.description,
    parameters: app.parameters, template: app.template };
  const form = appJsonForm({ id: "edit", spec, rows: 18, err: h("div", { id: "manage-error" }),
    hint: "The whole app as it will be published; the id cannot change. Jobs already run from it are not affected.",
    button: h("button", { class: "primary", type: "submit", id: "save-app" }, "Save changes"),
    send: async (body) => {
      await api(`/v1/apps/${encodeURIComponent(app.id)}`, { method: "PUT", body });
      route();  // show the saved app
    } });
  const err = h("div", { id: "delete-error" });
  const del = h("button", { class: "danger", type: "button", id: "delete-app", onclick: async () => {
    put(err);
    if (!window.confirm(`Delete the app ${app.name} (${app.id}) from the marketplace? Jobs already run from it stay.`)) return;
    try {
      await api(`/v1/apps/${encodeURIComponent(app.id)}`, { method: "DELETE" });
      location.hash = "#/apps";
    } catch (e) { err.append(errorBox(e)); }
  } }, "Delete app");
  return h("section", { class: "panel", id: "manage-app", "aria-labelledby": "manage-title" },
    h("h2", { id: "manage-title" }, "Manage this app"),
    h("p", { class: "muted" }, `Published by ${app.publisher}; you may change or delete it.`),
    h("details", {}, h("summary", {}, "Edit"), form),
    err, h("div", { class: "actions" }, del));
}

// ------------------------------------------------------------------ billing

let billingAvailable = null;

async function hasBilling() {
  if (billingAvailable === null) {
    const doc = await fetch("/openapi.json").then((r) => r.json());
    const paths = doc.paths || {};
    billingAvailable = !!(paths["/v1/billing/balance"] && paths["/v1/billing/invoices/{period}"]);
  }
  return billingAvailable;
}

function months(n) {
  const out = [];
  const d = new Date();
  let y = d.getUTCFullYear(), m = d.getUTCMonth() + 1;
  for (let i = 0; i < n; i++) {
    out.push(`${y}-${String(m).padStart(2, "0")}`);
    if (--m === 0) { m = 12; y -= 1; }
  }
  return out;
}

const cny = (x) => (x === null || x === undefined ? "–" : `¥${x}`);

function kvList(obj) {
  return h("dl", { class: "kv" }, Object.entries(obj).map(([k, v]) =>
    [h("dt", {}, k.replace(/_/g, " ")), h("dd", {}, v !== null && typeof v === "object" ? JSON.stringify(v) : String(v))]));
}

async function renderBilling(parts) {
  const view = currentPage;
  if (!(await hasBilling())) {
    put(view, h("h1", {}, "Billing"), h("div", { class: "empty", id: "billing-unavailable" },
      "Billing is not available on this server: it offers no /v1/billing endpoints. Balances, usage and invoices will appear here once it does."));
    return;
  }
  if (parts[0] === "invoices" && parts[1]) { await renderInvoice(parts[1]); return; }
  const bal = await api("/v1/billing/balance");
  const invoices = h("table", { id: "invoice-list" },
    h("thead", {}, h("tr", {}, h("th", {}, "Month"), h("th", { class: "num" }, "Charges"), h("th", { class: "num" }, "Jobs"), h("th", { class: "num" }, "Top-ups"))),
    h("tbody", {}));
  const body = invoices.querySelector("tbody");
  const docs = await Promise.all(months(6).map((p) => api(`/v1/billing/invoices/${p}`).catch((e) => ({ period: p, error: e.message }))));
  for (const doc of docs) {
    body.append(h("tr", { "data-period": doc.period },
      h("td", {}, h("a", { href: `#/billing/invoices/${doc.period}` }, doc.period)),
      h("td", { class: "num" }, doc.error ? doc.error : cny(doc.total_cny)),
      h("td", { class: "num" }, doc.lines ? doc.lines.length : "–"),
      h("td", { class: "num" }, cny(doc.topups_cny))));
  }
  const sections = [
    h("div", { class: "panel", id: "balance" }, h("h2", {}, "Balance"),
      h("dl", { class: "kv" },
        h("dt", {}, "Prepaid"), h("dd", { id: "balance-prepaid" }, cny(bal.prepaid_cny)),
        h("dt", {}, "Held for running jobs"), h("dd", {}, cny(bal.held_cny)),
        h("dt", {}, "Owed (postpaid)"), h("dd", {}, cny(bal.owed_cny)),
        h("dt", {}, "Prepaid balance required to submit"), h("dd", {}, bal.billing_required ? "yes" : "no"),
        h("dt", {}, "Free trial left"), h("dd", { id: "balance-trial" }, bal.trial
          ? `${qtyText(bal.trial.card_hours_left)} card-hours · ${qtyText(bal.trial.storage_gb_months_left)} GB-months · ${qtyText(bal.trial.tokens_left)} tokens (covered so far ${cny(bal.trial.free_cny)})`
          : "–"))),
    h("div", { class: "panel" }, h("h2", {}, "Invoices"), invoices,
      h("p", { class: "sub" }, "One invoice per month (UTC); each line is a job, traceable to its metered usage records.")),
  ];
  if (me.role !== "consumer") {
    const period = months(1)[0];
    let settlement;
    try { settlement = kvList(await api(`/v1/billing/settlements/${period}`)); } catch (e) { settlement = errorBox(e); }
    sections.push(h("div", { class: "panel", id: "settlement" }, h("h2", {}, `Settlement ${period}`), settlement));
  }
  if (me.role === "operator") sections.push(renderTopUp());
  put(view, h("h1", {}, "Billing"), ...sections);
}

/** A quantity for people: thousands separated, at most 2 decimals ("1,234.5"). */
function qtyText(x) {
  return Number(x).toLocaleString("en", { maximumFractionDigits: 2 });
}

function renderTopUp() {
  const tenant = h("input", { id: "topup-tenant", "data-field": "tenant", required: true, placeholder: "tenant name or id" });
  const amount = h("input", { id: "topup-amount", "data-field": "amount_cny", required: true, placeholder: "100.00" });
  const msg = h("div", { role: "status" });
  const form = h("form", { class: "stack", id: "topup-form", novalidate: true, onsubmit: async (ev) => {
    ev.preventDefault();
    put(msg);
    try {
      const r = await api("/v1/billing/topups", { method: "POST", body: { tenant: tenant.value, amount_cny: amount.value } });
      put(msg, `Credited ¥${r.amount_cny}; prepaid balance now ¥${r.balance.prepaid_cny}.`);
      markFields(form, null);
    } catch (e) { markFields(form, e); put(msg, errorBox(e)); }
  } },
    h("div", { class: "row" }, field("Tenant", tenant), field("Amount (CNY)", amount)), msg,
    h("div", { class: "actions" }, h("button", { class: "secondary", type: "submit" }, "Top up")));
  return h("div", { class: "panel" }, h("h2", {}, "Top up a balance (operators)"), form);
}

async function renderInvoice(period) {
  const view = currentPage;
  const doc = await api(`/v1/billing/invoices/${encodeURIComponent(period)}`);
  const csvLink = h("button", { type: "button", class: "secondary", onclick: async () => {
    const r = await fetch(`/v1/billing/invoices/${period}?format=csv`, { headers: { Authorization: `Bearer ${sessionStorage.getItem(KEY)}` } });
    const url = URL.createObjectURL(new Blob([await r.text()], { type: "text/csv" }));
    const a = h("a", { href: url, download: `invoice-${period}.csv` });
    document.body.append(a); a.click(); a.remove();
  } }, "Download CSV");
  put(view, 
    h("p", {}, h("a", { href: "#/billing" }, "← Billing")),
    h("h1", { id: "invoice-title" }, `Invoice ${doc.period} · ${doc.tenant}`),
    h("div", { class: "panel" }, h("dl", { class: "kv" },
      h("dt", {}, "Total charges"), h("dd", { id: "invoice-total" }, cny(doc.total_cny)),
      h("dt", {}, "Top-ups"), h("dd", {}, cny(doc.topups_cny)),
      h("dt", {}, "Prepaid balance now"), h("dd", {}, cny(doc.balance && doc.balance.prepaid_cny)),
      h("dt", {}, "Owed now"), h("dd", {}, cny(doc.balance && doc.balance.owed_cny))),
      h("div", { class: "actions" }, csvLink)),
    h("div", { class: "panel" }, h("h2", {}, "Lines"), doc.lines.length === 0
      ? h("div", { class: "empty", id: "invoice-empty" }, "No charges in this month yet: a job is charged when it ends.")
      : h("table", { id: "invoice-lines" },
        h("thead", {}, h("tr", {}, ["Job or reservation", "Settled", "Centers", "SCU", "Tokens", "Storage", "Free (trial)", "Amount"].map((t, i) => h("th", { class: i >= 3 ? "num" : null }, t)))),
        h("tbody", {}, doc.lines.map((l) => h("tr", {},
          h("td", {}, l.job_id ? h("a", { href: `#/jobs/${l.job_id}` }, l.name || l.job_id)
            : l.reservation_id ? `${l.kind === "refund" ? "Refund of reservation" : "Reservation"} ${l.reservation_id.slice(0, 8)}: ${l.units} × ${l.model}, ${when(l.start)} – ${when(l.end)}`
            : "–"),
          h("td", {}, when(l.settled_at)), h("td", {}, (l.centers || []).join(", ")),
          h("td", { class: "num" }, l.scu),
          h("td", { class: "num", "data-col": "tokens" }, l.tokens ? qtyText(l.tokens) : "–"),
          h("td", { class: "num" }, l.storage_cny && l.storage_cny !== "0.00" ? cny(l.storage_cny) : "–"),
          h("td", { class: "num", "data-col": "free" }, l.free_cny && l.free_cny !== "0.00" ? cny(l.free_cny) : "–"),
          h("td", { class: "num" }, cny(l.amount_cny))))))));
}

// ------------------------------------------------------------------ operator

async function renderOperator() {
  const view = currentPage;
  if (me.role !== "operator") {
    put(view, h("h1", {}, "Operator"), h("div", { class: "empty" }, "These views are for operators; your key is a " + me.role + "'s."));
    return;
  }
  const box = h("div", { id: "drain-table" });
  const msg = h("div", { role: "status" });
  put(view, h("h1", {}, "Operator: centers"),
    h("p", { class: "muted" }, "Drain a center to stop new placements there: checkpointable jobs move away, others finish. ",
      h("a", { href: "/metrics", target: "_blank" }, "Prometheus metrics")), msg, box);
  const refresh = async () => {
    const [cl, dr] = await Promise.all([api("/v1/centers"), api("/v1/centers/drained")]);
    const drained = Object.fromEntries(dr.map((d) => [d.center_id, d]));
    put(box, h("table", {},
      h("thead", {}, h("tr", {}, ["Center", "Hub", "Util.", "State", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, cl.centers.map((c) => {
        const d = drained[c.id];
        const act = async (ev) => {
          ev.target.disabled = true;
          try {
            const body = d ? undefined : { reason: "drained from the console" };
            await api(`/v1/centers/${c.id}/${d ? "undrain" : "drain"}`, { method: "POST", body });
            put(msg, `${c.name}: ${d ? "open to new jobs" : "drained"}.`);
            await refresh();
          } catch (e) { put(msg, errorBox(e)); ev.target.disabled = false; }
        };
        return h("tr", { "data-center-row": c.id }, h("td", {}, c.name, " ", h("span", { class: "muted", lang: "zh" }, c.name_zh)), h("td", {}, c.hub || "–"),
          h("td", {}, pct(util(c))), h("td", {}, d ? h("span", { class: "badge failed" }, `drained ${d.reason ? "(" + d.reason + ")" : ""}`) : h("span", { class: "badge succeeded" }, "open")),
          h("td", {}, h("button", { type: "button", class: d ? "secondary" : "danger secondary", "data-action": d ? "undrain" : "drain", onclick: act }, d ? "Undrain" : "Drain")));
      }))));
  };
  await poll(refresh, 5000, view);
}

// ------------------------------------------------------------------ what-if

const POLICY_NAMES = ["nearest", "first-fit", "cheapest", "greenest", "suanwang"];
const SIM_COLUMNS = [
  ["cost_cny", "Cost (CNY)", (x) => num(x, 0)], ["energy_kwh", "Energy (kWh)", (x) => num(x, 0)],
  ["green_share", "Green", pct], ["carbon_t", "Carbon (t)", (x) => num(x, 2)],
  ["mean_wait_s", "Mean wait (s)", (x) => num(x, 0)], ["p95_wait_s", "p95 wait (s)", (x) => num(x, 0)],
  ["deadline_misses", "Deadline misses", (x) => x], ["completed", "Completed", (x) => x],
  ["rejected", "Rejected", (x) => x], ["unfinished", "Unfinished", (x) => x], ["utilization", "Utilization", pct],
];

// The largest trace the server takes (characters; whatif_input.MAX_TRACE_CHARS).
const MAX_TRACE_CHARS = 48000;

async function renderWhatIf(runId) {
  const view = currentPage;
  if (me.role !== "operator") {
    put(view, h("h1", {}, "What-if"), h("div", { class: "empty" }, `What-if runs are for operators; your key is a ${me.role}'s.`));
    return;
  }
  if (runId) { await renderWhatIfRun(runId); return; }
  const scenarios = (await api("/v1/whatif/scenarios")).items;
  const num_ = (id, value, attrs) => h("input", Object.assign({ id, type: "number", value, "data-field": id }, attrs || {}));
  const inline = "font-weight: 400; display: inline-flex; gap: 4px; margin-right: 12px";
  // scenario and its edits
  const scenarioSel = h("select", { id: "scenario", "data-field": "scenario" },
    scenarios.map((s) => h("option", { value: s.id }, s.id === "served" ? `${s.name} (served by this server)` : `${s.name} (bundled)`)));
  const capacity = num_("capacity_scale", 1, { min: 0, max: 10, step: "any", "data-field": "edits.capacity_scale" });
  const tariff = num_("tariff_scale", 1, { min: 0.1, max: 10, step: "any", "data-field": "edits.tariff_scale" });
  const centersBox = h("div", { id: "center-edits" });
  let centerInputs = [];
  const showCenters = () => {
    const sc = scenarios.find((s) => s.id === scenarioSel.value);
    centerInputs = sc.centers.map((c) => {
      const inp = (k, value, attrs) => h("input", Object.assign({ type: "number", value, step: "any", "data-center": c.id, "data-key": k,
        "data-field": `edits.centers.${c.id}.${k}`, "aria-label": `${k === "cards" ? "Cards" : k === "pue" ? "PUE" : k === "cpu_cores" ? "CPU cores" : "Green PPA share"} of ${c.id}` }, attrs));
      return { c, inputs: [inp("cards", c.cards, { min: 0, step: 1 }), inp("pue", c.pue, { min: 1, max: 3 }),
        inp("green_ppa_share", c.green_ppa_share, { min: 0, max: 1 }), inp("cpu_cores", c.cpu_cores, { min: 0, step: 1 })] };
    });
    put(centersBox, h("table", { id: "center-edit-table" },
      h("thead", {}, h("tr", {}, ["Center", "Province", "Cards", "PUE", "Green PPA share", "CPU cores"].map((t) => h("th", {}, t)))),
      h("tbody", {}, centerInputs.map(({ c, inputs }) => h("tr", { "data-center": c.id }, h("td", {}, c.name), h("td", {}, c.province),
        inputs.map((i) => h("td", {}, i)))))));
  };
  scenarioSel.addEventListener("change", showCenters);
  showCenters();
  // or the whole scenario as YAML (checked by the server: problems name their line)
  const yamlText = h("textarea", { id: "scenario-yaml", rows: 16, "data-field": "scenario_yaml", spellcheck: "false",
    placeholder: "Empty: the scenario chosen above. Load its YAML to edit everything (centers, provinces, tariffs, network)." });
  const loadYaml = h("button", { class: "secondary", type: "button", id: "load-yaml", onclick: async () => {
    put(err);
    try {
      yamlText.value = (await api(`/v1/whatif/scenarios/${encodeURIComponent(scenarioSel.value)}/yaml`)).yaml;
      yamlText.focus();
    } catch (e) { err.append(errorBox(e)); }
  } }, "Load the YAML of this scenario");
  const clearYaml = h("button", { class: "secondary", type: "button", onclick: () => { yamlText.value = ""; } }, "Clear");
  // Select line n (1-based) of the YAML box, where the server found a problem.
  const showLine = (n) => {
    const full = yamlText.value;
    const lines = full.split("\n");
    const start = lines.slice(0, n - 1).reduce((a, l) => a + l.length + 1, 0);
    yamlText.value = lines.slice(0, n).join("\n");  // how far down line n ends
    const bottom = yamlText.scrollHeight;
    yamlText.value = full;
    yamlText.focus();
    yamlText.setSelectionRange(start, start + (lines[n - 1] || "").length);
    yamlText.scrollTop = Math.max(0, bottom - yamlText.clientHeight / 2);
  };
  const edits = () => {
    const out = { capacity_scale: Number(capacity.value), tariff_scale: Number(tariff.value), centers: {} };
    for (const { c, inputs } of centerInputs) {
      for (const i of inputs) {
        const k = i.dataset.key;
        if (i.value === "" || Number(i.value) === c[k]) continue;
        (out.centers[c.id] = out.centers[c.id] || {})[k] = Number(i.value);
      }
    }
    const changed = out.capacity_scale !== 1 || out.tariff_scale !== 1 || Object.keys(out.centers).length;
    return changed ? out : null;
  };
  // workload: synthetic or an uploaded trace
  const synthetic = h("input", { type: "radio", name: "workload", value: "synthetic", id: "workload-synthetic", checked: true });
  const upload = h("input", { type: "radio", name: "workload", value: "trace", id: "workload-trace" });
  const traceFile = h("input", { id: "trace-file", type: "file", accept: ".csv,text/csv", "data-field": "trace.text" });
  const traceFormat = h("select", { id: "trace-format", "data-field": "trace.format" },
    ["suanwang", "philly", "alibaba-gpu-2023"].map((f) => h("option", { value: f }, f)));
  const jobs = num_("jobs", 2000, { min: 10, max: 50000 });
  const days = num_("days", 1, { min: 0.1, max: 7, step: "any" });
  const load = num_("load", "", { min: 0.05, max: 1.5, step: "any", placeholder: "as generated" });
  const traceJobs = num_("trace_jobs", "", { min: 10, max: 50000, placeholder: "all", "data-field": "jobs" });
  const synthBox = h("div", { class: "row", id: "synthetic-fields" }, field("Jobs", jobs, "(synthetic)"), field("Arrival days", days), field("Load", load, "(optional, 0–1.5)"));
  const traceBox = h("div", { class: "row", id: "trace-fields", hidden: true },
    field("Trace file", traceFile, `(CSV, at most ${MAX_TRACE_CHARS / 1000} kB)`), field("Format", traceFormat), field("Use at most", traceJobs, "(the trace's first N, in arrival order)"));
  const toggle = () => { synthBox.hidden = !synthetic.checked; traceBox.hidden = synthetic.checked; };
  synthetic.addEventListener("change", toggle);
  upload.addEventListener("change", toggle);
  const seed = num_("seed", 0, { min: 0 });
  const drain = num_("drain_days", 2, { min: 0, max: 14, step: "any" });
  const bound = h("input", { id: "bound", type: "checkbox" });
  const boxes = POLICY_NAMES.map((p) => h("label", { style: inline },
    h("input", { type: "checkbox", name: "policy", value: p, checked: true }), p));
  const err = h("div", { id: "whatif-error" });
  const button = h("button", { class: "primary", type: "submit", id: "run-whatif" }, "Run simulation");
  const form = h("form", { class: "stack panel", id: "whatif-form", novalidate: true, onsubmit: async (ev) => {
    ev.preventDefault();
    put(err);
    const body = { scenario: scenarioSel.value, seed: Number(seed.value), drain_days: Number(drain.value), bound: bound.checked,
      policies: [...form.querySelectorAll("input[name=policy]:checked")].map((b) => b.value) };
    const e = edits();
    if (e) body.edits = e;
    if (yamlText.value.trim()) body.scenario_yaml = yamlText.value;
    if (synthetic.checked) {
      body.jobs = Number(jobs.value);
      body.days = Number(days.value);
      if (load.value) body.load = Number(load.value);
    } else {
      const file = traceFile.files[0];
      if (!file) { err.append(errorBox(new Error("Choose a trace file to upload."))); traceFile.focus(); return; }
      if (file.size > 4 * MAX_TRACE_CHARS) { err.append(errorBox(new Error(`${file.name} is ${file.size} bytes; traces of at most ${MAX_TRACE_CHARS} characters can be uploaded (use suanwang simulate --trace for bigger ones).`))); return; }
      const text = await file.text();
      if (text.length > MAX_TRACE_CHARS) { err.append(errorBox(new Error(`${file.name} has ${text.length} characters; at most ${MAX_TRACE_CHARS} can be uploaded (use suanwang simulate --trace for bigger traces).`))); return; }
      body.trace = { format: traceFormat.value, name: file.name.replace(/[^\w .+-]/g, "_").slice(0, 100), text };
      if (traceJobs.value) body.jobs = Number(traceJobs.value);
    }
    button.disabled = true;
    try {
      const r = await api("/v1/whatif", { method: "POST", body });
      location.hash = `#/whatif/${r.id}`;
    } catch (e) {
      markFields(form, e);
      err.append(errorBox(e));
      const bad = Array.isArray(e.detail) && e.detail.find((d) => d.loc && d.loc[1] === "scenario_yaml" && d.line);
      if (bad) showLine(bad.line);
    } finally { button.disabled = false; }
  } },
    h("h2", {}, "Scenario"),
    field("Scenario to simulate", scenarioSel),
    h("details", { id: "edit-scenario" }, h("summary", {}, "Edit the scenario (capacity, PUE, green power, tariffs)"),
      h("div", { class: "row" }, field("Capacity scale", capacity, "(× every center's cards and CPU cores)"), field("Tariff scale", tariff, "(× every province's grid tariff)")),
      h("p", { class: "sub" }, "Per center: cards (split over its models as today), PUE, share of green power bought (PPA), CPU cores. Only changed values are sent."),
      centersBox,
      h("details", { id: "edit-yaml" }, h("summary", {}, "Or edit the whole scenario as YAML"),
        h("p", { class: "sub" }, "The scenario file (docs/formats-scenario.md) without comments and sources. When this box is not empty it is simulated instead of the scenario chosen above; the scales and center changes above still apply to it."),
        h("label", { for: "scenario-yaml" }, "Scenario YAML"), yamlText,
        h("div", { class: "actions" }, loadYaml, clearYaml))),
    h("h2", {}, "Workload"),
    h("div", { role: "radiogroup", "aria-label": "Workload" },
      h("label", { style: inline, for: "workload-synthetic" }, synthetic, "synthetic"),
      h("label", { style: inline, for: "workload-trace" }, upload, "upload a trace")),
    synthBox, traceBox,
    h("h2", {}, "Policies"), h("div", { "data-field": "policies" }, boxes),
    h("div", { class: "row" }, field("Seed", seed), field("Drain days", drain, "(simulated after the last arrival)")),
    h("label", { style: "font-weight: 400" }, bound, " also solve the offline LP bound (slower; for runs of up to 5,000)"),
    err, h("div", { class: "actions" }, button));
  const recent = h("div", { id: "whatif-runs" });
  put(view, h("h1", {}, "What-if: simulate the network"),
    h("p", { class: "muted" }, "Runs the simulator (the digital twin) in the background: a scenario, as it is or edited, with a synthetic workload or an uploaded trace; every chosen policy on the same jobs and signals. One run at a time, at most 50,000 jobs and 7 days of arrivals; for bigger studies use suanwang simulate."),
    form, h("div", { class: "panel" }, h("h2", {}, "Recent runs"), recent));
  await poll(async () => {
    const runs = await api("/v1/whatif");
    put(recent, runs.length === 0 ? h("div", { class: "empty" }, "No runs yet.") : h("table", {},
      h("thead", {}, h("tr", {}, ["Started", "State", "Scenario", "Workload", "Policies", "Seconds"].map((t) => h("th", {}, t)))),
      h("tbody", {}, runs.map((r) => h("tr", {}, h("td", {}, h("a", { href: `#/whatif/${r.id}` }, when(r.created_at))), h("td", {}, r.state),
        h("td", {}, r.request.scenario + (r.changes.length ? " (edited)" : "")),
        h("td", {}, r.trace ? `${r.trace.name} (${r.trace.format})` : `${r.request.jobs || 2000} synthetic`),
        h("td", {}, r.request.policies.join(", ")), h("td", {}, r.seconds))))));
  }, 3000, view);
}

async function renderWhatIfRun(runId) {
  const view = currentPage;
  const bar = h("progress", { id: "whatif-progress", max: 1, value: 0 });
  const step = h("p", { id: "whatif-step", class: "muted" });
  const about = h("div", { id: "whatif-about" });
  const result = h("div", { id: "whatif-result" });
  put(view, h("p", {}, h("a", { href: "#/whatif" }, "← What-if")), h("h1", {}, "What-if run"),
    h("div", { class: "panel" }, bar, step, about), result);
  let done = false;
  await poll(async () => {
    if (done) return;
    const r = await api(`/v1/whatif/${encodeURIComponent(runId)}`);
    bar.value = r.progress;
    step.textContent = r.state === "running" ? `${r.step} (${r.seconds} s)` : `${r.state} after ${r.seconds} s`;
    put(about, h("p", { class: "sub" }, `Scenario: ${r.request.scenario}. Workload: `,
      r.trace ? `trace ${r.trace.name} (${r.trace.format}, ${r.trace.chars} characters)` : `${r.request.jobs || 2000} synthetic jobs over ${r.request.days} days`,
      `. Seed ${r.request.seed}.`),
      r.changes.length ? h("div", {}, h("p", { class: "sub" }, "Edits:"), h("ul", { id: "whatif-changes" }, r.changes.map((c) => h("li", {}, c)))) : null);
    if (r.state === "failed") { done = true; put(result, errorBox(new Error(r.error))); }
    if (r.state !== "done") return;
    done = true;
    const doc = r.result;
    const names = Object.keys(doc.policies);
    const skipped = Object.entries(doc.workload.skipped || {});
    put(result, h("div", { class: "panel" },
      h("h2", {}, `${doc.jobs} jobs on ${doc.scenario}`),
      h("table", { id: "whatif-table" },
        h("thead", {}, h("tr", {}, h("th", {}, "Policy"), SIM_COLUMNS.map(([, t]) => h("th", { class: "num" }, t)))),
        h("tbody", {}, names.map((n) => h("tr", { "data-policy": n }, h("td", {}, n),
          SIM_COLUMNS.map(([k, , f]) => h("td", { class: "num", "data-metric": k }, f(doc.policies[n][k]))))),
          doc.bound ? h("tr", { "data-policy": "bound" }, h("td", {}, "offline bound"), h("td", { class: "num" }, num(doc.bound.cost_cny, 0)),
            h("td", { class: "num" }, num(doc.bound.energy_kwh, 0)), h("td", {}, ""), h("td", { class: "num" }, num(doc.bound.carbon_t, 2))) : null)),
      doc.bound_error ? errorBox(new Error(`bound: ${doc.bound_error}`)) : null,
      h("p", { class: "sub", id: "whatif-workload" }, `Workload: ${doc.workload.source}${r.trace ? `, ${doc.workload.rows} rows` : ""}, arrivals over ${num(doc.workload.arrival_days, 2)} days.`,
        skipped.length ? ` Not simulated: ${skipped.map(([k, n]) => `${n} ${k}`).join("; ")}.` : "")));
  }, 1000, view);
}

// ------------------------------------------------------------------ router

async function route() {
  stopPolling();
  setStatus("");
  if (!sessionStorage.getItem(KEY)) { renderSignIn(); return; }
  if (!me) {
    try { me = await api("/v1/me"); } catch (e) { if (e.status !== 401) setStatus(e.message, true); return; }
    signedIn();
  }
  const [path, query] = (location.hash.slice(1) || "/map").split("?");
  const parts = path.split("/").filter(Boolean);
  const params = new URLSearchParams(query || "");
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.nav === (parts[0] || "map")) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  currentPage = h("div", { class: "page" }, h("p", { class: "muted" }, "Loading…"));
  put(view, currentPage);
  const page = currentPage;
  try {
    switch (parts[0] || "map") {
      case "map": await renderMap(); break;
      case "jobs": await (parts[1] ? renderJob(parts[1]) : renderJobs(params)); break;
      case "submit": await renderSubmit(); break;
      case "apps": await (parts[1] ? renderApp(parts[1]) : renderApps()); break;
      case "billing": await renderBilling(parts.slice(1)); break;
      case "operator": await renderOperator(); break;
      case "whatif": await renderWhatIf(parts[1]); break;
      default: put(page, h("h1", {}, "Not found"), h("div", { class: "empty" }, "No such page."), h("p", {}, h("a", { href: "#/map" }, "The network")));
    }
  } catch (e) {
    if (e.status === 401 || page !== currentPage) return;
    put(page, h("h1", {}, "Something went wrong"), errorBox(e));
  }
  view.focus({ preventScroll: true });
}

window.addEventListener("hashchange", route);
route();
