// The network: the map of China with the centers, hubs and provinces; the panels and tables.
import { api, h, loadGeo, num, pct, poll, put, state, svg, util, when } from "./core.js";
import { HEIGHT, WIDTH, around, loadProvinces, placeLabels, project, provinceLayer } from "./geo.js";

const METRICS = {
  utilization: { label: "Utilization (cards, or CPU)", get: (c) => util(c), fmt: pct, ramp: ["#2a9d4b", "#f2c94c", "#d64545"], lo: 0, hi: 1 },
  green: { label: "Green share of power", get: (c) => c.signals.green_fraction, fmt: pct, ramp: ["#8a8f98", "#9fd18b", "#1d8a3a"], lo: 0, hi: 1 },
  price: { label: "Energy price (CNY/kWh)", get: (c) => c.signals.price_cny_per_kwh, fmt: (x) => num(x, 3), ramp: ["#2a9d4b", "#f2c94c", "#d64545"], lo: null, hi: null },
  carbon: { label: "Carbon (g CO₂/kWh)", get: (c) => c.signals.carbon_g_per_kwh, fmt: (x) => num(x, 0), ramp: ["#2a9d4b", "#f2c94c", "#6b4b3a"], lo: null, hi: null },
};

function mix(a, b, t) {
  const p = (s) => [1, 3, 5].map((i) => parseInt(s.slice(i, i + 2), 16));
  const [x, y] = [p(a), p(b)];
  return `rgb(${x.map((v, i) => Math.round(v + (y[i] - v) * t)).join(",")})`;
}

function colour(ramp, t) {
  t = Math.max(0, Math.min(1, isFinite(t) ? t : 0));
  return t < 0.5 ? mix(ramp[0], ramp[1], t * 2) : mix(ramp[1], ramp[2], (t - 0.5) * 2);
}

const HUB_R = 22;  // the dashed ring of a national hub
// Where a hub's name may go: above or below its ring, beside it, then farther out.
const HUB_LABEL_OFFSETS = [[0, -HUB_R - 5], [0, HUB_R + 13], [HUB_R + 22, 4], [-HUB_R - 22, 4], ...around(12, 5).slice(1)];
const markerRadius = (cards) => 5 + Math.min(9, Math.sqrt(cards / 400));

// Labels of the hubs (first) and the provinces (smallest first: they have the least room),
// placed where they cover no center marker.
function labelMap(root, g, provinces, markers) {
  const boxes = markers.map(([x, y, r]) => ({ x: x - r - 3, y: y - r - 3, w: 2 * r + 6, h: 2 * r + 6 }));
  const hubs = g.hubs.map((x) => ({ text: x.name_zh, cls: "hub-label", at: project(x.lat, x.lon), offsets: HUB_LABEL_OFFSETS }));
  const named = provinces.filter((f) => f.properties.label).map((f) => {
    const [lon, lat] = f.properties.label;
    const d = root.querySelector(`[data-province="${f.id}"]`).getBBox();
    return { text: f.properties.name, cls: "province-label", at: project(lat, lon), offsets: around(8, 4), size: d.width * d.height };
  }).sort((a, b) => a.size - b.size);
  placeLabels(root, [...hubs, ...named], boxes);
}

export async function renderMap() {
  const view = state.page;
  const [g, provinces] = await Promise.all([loadGeo(), loadProvinces()]);
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
    const root = svg("svg", { class: "map", viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": `Map of ${centers.length} computing centers` });
    root.append(provinceLayer(provinces));  // under everything else
    // the backbone between hubs (a ring in longitude order) and spokes center -> hub
    const hubsByLon = [...g.hubs].sort((a, b) => a.lon - b.lon);
    for (let i = 0; i + 1 < hubsByLon.length; i++) {
      const [x1, y1] = hubPos[hubsByLon[i].id], [x2, y2] = hubPos[hubsByLon[i + 1].id];
      root.append(svg("line", { class: "backbone", x1, y1, x2, y2 }));
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
      root.append(svg("circle", { class: "hub", cx, cy, r: HUB_R }));
    }
    const markers = [];
    for (const c of centers) {
      const pos = byId[c.id];
      if (!pos) continue;
      const [x, y] = project(pos.lat, pos.lon);
      const v = m.get(c);
      const r = markerRadius(Object.values(c.capacity.cards).reduce((a, b) => a + b, 0));
      markers.push([x, y, r]);
      const circle = svg("circle", {
        class: `center${selected === c.id ? " selected" : ""}`, cx: x, cy: y,
        r, fill: colour(m.ramp, scale(v)),
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
    labelMap(root, g, provinces, markers);  // in the document now: its text can be measured
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
        state.me.role === "provider" ? "You own no centers yet: an operator grants them with `suanwang tenants centers`." : "This scenario has no centers."));
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
