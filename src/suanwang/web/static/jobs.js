// Jobs: the list with its filters, a job's page (placement, state history, output), the form.
import {
  FINAL, KINDS, STACKS, STATES, api, badge, errorBox, field, h, markFields, num, originSelect,
  pct, poll, put, state, when,
} from "./core.js";
import { eventText, shortId, waitingShort, waitingText } from "./words.js";

// Why a job has not started, in a few words (the list) or null: a pending job's reason to
// wait under quotas, or a planned start later (deferred for price).
function notStarted(j) {
  const d = j.decision;
  if (j.state === "pending" && d && d.waiting) return waitingShort(d.waiting);
  if (j.state === "scheduled" && d && d.deferred_h > 0 && j.start_at && new Date(j.start_at) > new Date()) {
    return `deferred for price to ${when(j.start_at)}`;
  }
  return null;
}

function waitCell(j) {
  const why = notStarted(j);
  return why ? h("div", { class: "sub", "data-col": "waiting" }, why) : null;
}

// An event's detail: in words when the console knows it (a preemption, a checkpoint request;
// the job that preempted linked), then its other fields as they are.
function eventDetail(e) {
  const d = e.detail || {};
  const said = eventText(d);
  const rest = Object.entries(d).filter(([k]) => !said || !["event", "why", "by", "reason"].includes(k))
    .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join("; ");
  if (!said) return rest;
  return [h("span", { class: "event-words" }, said.text,
    said.by ? [" ", h("a", { href: `#/jobs/${said.by}`, title: said.by }, shortId(said.by))] : null, said.after),
  rest ? h("div", {}, rest) : null];
}

export async function renderJobs(params) {
  const view = state.page;
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
        h("td", {}, h("a", { href: `#/jobs/${j.id}` }, j.name)),
        h("td", {}, badge(j.state), waitCell(j)), h("td", {}, j.kind),
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

export async function renderJob(id) {
  const view = state.page;
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
    const cancel = !FINAL.has(job.state) && (state.me.role === "operator" || job.tenant_id === state.me.tenant_id)
      ? h("button", { type: "button", class: "danger secondary", id: "cancel-job", onclick: async (ev) => {
        ev.target.disabled = true;
        try { await api(`/v1/jobs/${id}/cancel`, { method: "POST" }); await refresh(); } catch (e) { head.append(errorBox(e)); }
      } }, "Cancel job") : null;
    put(head, 
      h("h1", {}, job.name, " ", h("span", { id: "job-state" }, badge(job.state))),
      h("div", { class: "panel" }, h("dl", { class: "kv" },
        h("dt", {}, "Id"), h("dd", {}, job.id),
        h("dt", {}, "Kind · origin"), h("dd", {}, `${job.kind} · ${job.origin}`),
        h("dt", {}, "Resources"), h("dd", {}, `${job.spec.resources.cards} × ${job.spec.resources.accelerator} cards, ${job.spec.resources.cpus} CPU cores, ${job.spec.resources.mem_gb} GB`),
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
        h("td", {}, badge(e.to_state)), h("td", { class: "sub" }, eventDetail(e)))))));
    logs.textContent = text || (FINAL.has(job.state) ? "(no output)" : "(no output yet)");
    if (FINAL.has(job.state)) done = true;
  };
  await poll(refresh, 2000, view);
}

// Decimals that tell every distinct amount apart (as the CLI and the stored reason do), so a
// choice and its runner-up never look tied when they are not.
export function distinctDigits(values) {
  const finite = values.filter((v) => v !== null && v !== undefined && Number.isFinite(v));
  const distinct = new Set(finite).size;
  const sig = (x) => (x === 0 ? 2 : Math.max(2, 3 - Math.floor(Math.log10(Math.abs(x)))));
  let d = Math.max(2, ...finite.map(sig));
  while (d < 12 && new Set(finite.map((v) => v.toFixed(d))).size < distinct) d += 1;
  return d;
}

function renderPlacement(box, job) {
  const d = job.decision;
  if (d && d.placed === false && d.waiting && job.state === "pending") {  // under quotas: not yet
    put(box,
      h("p", { id: "job-waiting", class: "waiting", "data-waiting": d.waiting }, waitingText(d.waiting)),
      h("p", { class: "sub" }, "The dispatcher looks again every round. ", h("a", { href: "#/quotas" }, "Quotas"), " shows what is used against each quota now."));
    return;
  }
  if (d && d.placed === false) {
    const excluded = Object.entries(d.excluded || {}).filter(([, n]) => n > 0);
    put(box,
      h("p", { id: "placement-reason", class: "error" }, d.reason),
      excluded.length ? h("table", { id: "placement-excluded" },
        h("thead", {}, h("tr", {}, h("th", {}, "Excluded by"), h("th", { class: "num" }, "Pools"))),
        h("tbody", {}, excluded.map(([k, n]) => h("tr", { "data-constraint": k }, h("td", {}, k), h("td", { class: "num" }, String(n)))))) : null);
    return;
  }
  if (!d || !d.chosen) {
    put(box, h("div", { class: "empty" }, job.state === "pending" ? "Waiting for the dispatcher to place this job…" : "No placement was recorded."));
    return;
  }
  const rows = [[d.chosen, "chosen", "chosen"]];
  if (d.if_started_now) rows.push([d.if_started_now, "chosen, started now", "started-now"]);
  (d.runners_up || []).forEach((r, i) => rows.push([r, `runner-up ${i + 1}`, "runner-up"]));
  const objective = (r) => (r.objective_cny ?? r.cost_cny);
  const digits = distinctDigits(rows.map(([r]) => objective(r)));
  const money = (x) => num(x, digits);
  const cols = [["center", "Center", (r) => r.center], ["accelerator", "Cards", (r) => r.accelerator],
    ["start_at", "Start", (r) => when(r.start_at)], ["objective_cny", "Objective (CNY)", (r) => money(objective(r))],
    ["energy_cost_cny", "Energy (CNY)", (r) => money(r.energy_cost_cny)], ["carbon_cost_cny", "Carbon (CNY)", (r) => money(r.carbon_cost_cny)],
    ["transfer_cost_cny", "Transfer (CNY)", (r) => money(r.transfer_cost_cny)], ["waiting_cost_cny", "Waiting (CNY)", (r) => money(r.waiting_cost_cny)],
    ["offer_premium_cny", "Offer (CNY)", (r) => money(r.offer_premium_cny)], ["energy_kwh", "Energy (kWh)", (r) => num(r.energy_kwh, 1)],
    ["green_share", "Green", (r) => pct(r.green_share)], ["latency_ms", "Latency (ms)", (r) => num(r.latency_ms, 2)],
    ["runtime_s", "Runtime (h)", (r) => num(r.runtime_s / 3600, 2)], ["lost", "Why not", (r) => r.lost || ""]];
  const text = new Set(["center", "accelerator", "start_at", "lost"]);
  const row = ([r, label, cls]) => h("tr", { class: cls }, h("td", {}, label),
    cols.map(([k, , f]) => h("td", { class: text.has(k) ? null : "num", "data-col": k }, f(r))));
  put(box,
    d.reason ? h("p", { id: "placement-reason" }, d.reason) : null,
    d.gain_cny !== null && d.gain_cny !== undefined ? h("p", { id: "placement-gain" }, `Deferred ${num(d.deferred_h, 1)} h: saves ${money(d.gain_cny)} CNY against the best start now with room.`) : null,
    h("div", { class: "table-scroll" }, h("table", { id: "placement-table" },
      h("thead", {}, h("tr", {}, h("th", {}, ""), cols.map(([k, t]) => h("th", { class: text.has(k) ? null : "num" }, t)))),
      h("tbody", {}, rows.map(row)))),
    h("p", { class: "sub" }, "The objective is what the planner minimised, forecast at placement: energy at the center's price over the run, carbon at the carbon price, moving the data, a price on waiting, and an offer's price against the posted price."));
}


export async function renderSubmit() {
  const view = state.page;
  const input = (id, attrs) => h("input", Object.assign({ id, name: id }, attrs));
  const name = input("name", { "data-field": "name", required: true, value: "my-job", maxlength: 200 });
  const command = h("textarea", { id: "command", "data-field": "command", required: true }, "echo hello from the network; sleep 1; echo done");
  const kind = h("select", { id: "kind", "data-field": "kind" }, KINDS.map((k) => h("option", { value: k }, k)));
  kind.value = "inference";
  const origin = await originSelect("origin", "origin");
  const cards = input("cards", { type: "number", min: 0, value: 1, "data-field": "resources.cards" });
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
      resources: { cards: Number(cards.value), cpus: Number(cpus.value), mem_gb: Number(mem.value), accelerator: acc.value || "any" },
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
    h("div", { class: "row" }, field("Cards", cards, "(0: CPU only)"), field("Accelerator", acc, "(model or any)"), field("CPU cores", cpus), field("Memory (GB)", mem)),
    h("div", { class: "row" }, field("Duration (s)", duration, "(on an A100)"), field("Deadline (s)", deadline, "(optional)"), field("Data to move (GB)", dataGb)),
    h("label", {}, "Software stacks"), stacksGroup,
    h("label", { style: "font-weight: 400" }, ckpt, " checkpointable (may be moved: SIGUSR1 → exit 85)"),
    err,
    h("div", { class: "actions" }, button));
  put(view, h("h1", {}, "Submit a job"),
    h("p", { class: "muted" }, "The network chooses where and when it runs. Inference and interactive jobs start at once; others may wait for a cheaper, greener hour (give a deadline to bound that)."),
    form);
}
