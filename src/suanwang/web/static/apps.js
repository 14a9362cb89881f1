// The app marketplace: the cards, an app's form and template, publishing and managing apps.
import { api, errorBox, field, h, markFields, originSelect, put, state } from "./core.js";

export async function renderApps() {
  const view = state.page;
  const list = await api("/v1/apps");
  const cards = list.items.map((a) => h("article", { class: "card", "data-app": a.id },
    h("h2", {}, a.name),
    h("div", { class: "meta" }, `${a.category} · ${a.template.kind} · ${a.template.stacks.join(", ")} · by ${a.publisher}`),
    h("p", {}, a.summary),
    h("a", { class: "button primary", href: `#/apps/${a.id}`, "aria-label": `Open ${a.name}` }, "Open")));
  put(view, h("h1", {}, "App marketplace"),
    h("p", { class: "muted" }, "Packaged applications: choose one, fill in its parameters and the network runs it where it is cheapest and greenest."),
    cards.length ? h("div", { class: "cards", id: "app-cards" }, cards) : h("div", { class: "empty" }, "No apps are published."),
    state.me.role !== "consumer" ? renderPublish() : null);
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
    template: { kind: "inference", stacks: ["cuda"], resources: { cards: "{gpus}", cpus: "{gpus} * 8" }, duration_s: 600, command: "echo serving on {gpus} cards" },
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

export async function renderApp(id) {
  const view = state.page;
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
      state.route();  // show the saved app
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
