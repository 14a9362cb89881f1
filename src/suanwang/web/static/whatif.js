// What-if: run the simulator on a scenario (as it is, edited, or as YAML) with a synthetic
// workload or an uploaded trace, and read the report.
import { api, errorBox, field, h, markFields, num, pct, poll, put, state, when } from "./core.js";

const POLICY_NAMES = ["nearest", "first-fit", "cheapest", "greenest", "suanwang"];
const SIM_COLUMNS = [
  ["cost_cny", "Cost (CNY)", (x) => num(x, 0)], ["energy_kwh", "Energy (kWh)", (x) => num(x, 0)],
  ["green_share", "Green", pct], ["carbon_t", "Carbon (t)", (x) => num(x, 2)],
  ["mean_wait_s", "Mean wait (s)", (x) => num(x, 0)], ["p95_wait_s", "p95 wait (s)", (x) => num(x, 0)],
  ["deadline_misses", "Deadline misses", (x) => x], ["completed", "Completed", (x) => x],
  ["rejected", "Rejected", (x) => x], ["expired", "Expired", (x) => x ?? 0], ["unfinished", "Unfinished", (x) => x], ["utilization", "Utilization", pct],
];

// The largest trace the server takes (characters; whatif_input.MAX_TRACE_CHARS).
const MAX_TRACE_CHARS = 48000;

export async function renderWhatIf(runId) {
  const view = state.page;
  if (state.me.role !== "operator") {
    put(view, h("h1", {}, "What-if"), h("div", { class: "empty" }, `What-if runs are for operators; your key is a ${state.me.role}'s.`));
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
  const view = state.page;
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
          doc.bound ? h("tr", { "data-policy": "bound" }, h("td", {}, `${doc.bound.kind ?? "relaxed"} bound`), h("td", { class: "num" }, num(doc.bound.cost_cny, 0)),
            h("td", { class: "num" }, num(doc.bound.energy_kwh, 0)), h("td", {}, ""), h("td", { class: "num" }, num(doc.bound.carbon_t, 2))) : null)),
      doc.bound_error ? errorBox(new Error(`bound: ${doc.bound_error}`)) : null,
      h("p", { class: "sub", id: "whatif-workload" }, `Workload: ${doc.workload.source}${r.trace ? `, ${doc.workload.rows} rows` : ""}, arrivals over ${num(doc.workload.arrival_days, 2)} days.`,
        skipped.length ? ` Not simulated: ${skipped.map(([k, n]) => `${n} ${k}`).join("; ")}.` : "")));
  }, 1000, view);
}
