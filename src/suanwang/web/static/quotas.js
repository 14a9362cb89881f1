// Quotas (docs/governance.md, "Administration"): operators see every tenant's quota with what
// it uses now, set one with a form (PUT /v1/quotas/{tenant}), remove one and read the record of
// changes; every other tenant sees its own entitlement, usage, borrowing and budget.
import { api, errorBox, field, h, loadGeo, markFields, num, pct, poll, put, state, when } from "./core.js";
import { changeLines, settingText } from "./words.js";

const CLASSES = ["urgent", "normal", "batch", "preemptible"];
const cny = (x) => (x === null || x === undefined ? "–" : `¥${x}`);
const rate = (x) => num(x, 2);
const quotaPath = (tenant) => `/v1/quotas/${encodeURIComponent(tenant)}`;

export async function renderQuotas() {
  if (state.me.role === "operator") await renderAll();
  else await renderMine();
}

// ------------------------------------------------------------------------- a tenant's own

/** "running now / entitlement": the rate half of fair share's standing (1.0: its due). */
function standingNow(v) {
  return v.entitlement_scu_per_h > 0 ? v.usage.rate_scu_per_h / v.entitlement_scu_per_h : null;
}

function budgetText(v) {
  const s = v.settings, u = v.usage;
  if (s.budget_cny_per_month === null) return `no monthly budget (${cny(u.budget_used_cny)} charged in ${u.month})`;
  return `${cny(u.budget_left_cny)} left of ${cny(s.budget_cny_per_month)} in ${u.month} (${cny(u.budget_used_cny)} charged)`;
}

function byName(rates) {
  const kv = Object.entries(rates || {});
  return kv.length ? kv.map(([k, x]) => `${k} ${rate(x)}`).join(", ") : "–";
}

async function renderMine() {
  const view = state.page;
  const box = h("div", { id: "my-quota" }, h("p", { class: "muted" }, "Loading…"));
  put(view, h("h1", {}, "Your quota"), box);
  const refresh = async () => {
    const { quotas } = await api("/v1/quotas");
    if (quotas.length === 0) {
      put(box, h("div", { class: "empty", id: "quota-none" },
        h("strong", {}, "No quota is set for you: you share the network's idle capacity. "),
        "While other tenants have quotas, your jobs share what those quotas leave equally with the other tenants without one; "
        + "with no quotas at all, jobs are placed oldest first. An operator sets quotas."));
      return;
    }
    const v = quotas[0], s = v.settings, u = v.usage;
    const standing = standingNow(v);
    put(box,
      h("div", { class: "panel" }, h("h2", {}, `${v.tenant} · cohort ${s.cohort}`),
        h("dl", { class: "kv", id: "my-quota-numbers" },
          h("dt", {}, "Entitlement"), h("dd", { id: "my-entitlement" }, `${rate(v.entitlement_scu_per_h)} SCU/h (quota ${rate(s.quota_scu_per_h)} SCU/h × weight ${s.weight})`),
          h("dt", {}, "Usage now"), h("dd", { id: "my-usage" }, `${rate(u.rate_scu_per_h)} SCU/h by ${u.jobs} running job${u.jobs === 1 ? "" : "s"} (${pct(u.usage_over_quota)} of the quota)`),
          h("dt", {}, "Borrowed now"), h("dd", { id: "my-borrowed" }, `${rate(u.borrowed_scu_per_h)} SCU/h beyond the quota (may borrow ${rate(s.borrow_limit_scu_per_h)} SCU/h from the cohort)`),
          h("dt", {}, "Fair-share standing"), h("dd", { id: "my-standing" }, standing === null ? "–" : `${num(standing, 2)} running now / entitlement`,
            h("div", { class: "sub" }, "1.00 is using exactly your due; the lower, the sooner your jobs go first. The dispatcher also counts recent usage (decayed with a half-life), which it keeps in its own memory: not shown here.")),
          h("dt", {}, "Budget"), h("dd", { id: "my-budget" }, budgetText(v)),
          h("dt", {}, "Max spend per hour"), h("dd", {}, s.max_spend_cny_per_h === null ? "none" : cny(s.max_spend_cny_per_h)),
          h("dt", {}, "Classes you may submit"), h("dd", { id: "my-classes" }, s.classes.join(", ")),
          h("dt", {}, "Lends its cohort"), h("dd", {}, settingText("lend_limit_scu_per_h", s.lend_limit_scu_per_h)),
          h("dt", {}, "Caps (SCU/h)"), h("dd", {}, `families: ${settingText("caps.families", s.caps.families)}; hubs: ${settingText("caps.hubs", s.caps.hubs)}`),
          h("dt", {}, "Usage by family"), h("dd", {}, byName(u.families)),
          h("dt", {}, "Usage by hub"), h("dd", {}, byName(u.hubs)),
          h("dt", {}, "Set"), h("dd", {}, `${when(v.updated_at)} by ${v.updated_by}`))),
      h("p", { class: "sub" }, "Rates are SCU per hour: cards times the speed of the chip they run on, so a quota holds on any chip. Refreshed every 5 s."));
  };
  await poll(refresh, 5000, view);
}

// ------------------------------------------------------------------------- operators

async function renderAll() {
  const view = state.page;
  const geo = await loadGeo();
  const msg = h("div", { role: "status", id: "quota-msg" });
  const table = h("div", { id: "quota-table" }, h("p", { class: "muted" }, "Loading…"));
  const changes = h("div", { id: "quota-changes" }, h("p", { class: "muted" }, "Loading…"));
  const form = quotaForm(geo, msg, async () => { await refresh(); });
  put(view,
    h("h1", {}, "Quotas"),
    h("p", { class: "muted" }, "Each tenant's compute quota, classes and budget, and what it uses now. A change takes effect at the dispatcher's next round. ",
      h("a", { href: "/docs#/quotas" }, "API")),
    msg,
    h("div", { class: "panel" }, h("h2", {}, "Tenants with a quota"), table),
    form.panel,
    h("div", { class: "panel" }, h("h2", {}, "Record of changes"), changes));
  const remove = async (ev, v) => {
    if (!confirm(`Remove ${v.tenant}'s quota?`)) return;
    ev.target.disabled = true;
    try {
      await api(quotaPath(v.tenant), { method: "DELETE" });
      put(msg, `Removed ${v.tenant}'s quota (takes effect at the dispatcher's next round).`);
      await refresh();
    } catch (e) { put(msg, errorBox(e)); ev.target.disabled = false; }
  };
  const refresh = async () => {
    const [{ quotas }, log] = await Promise.all([api("/v1/quotas"), api("/v1/quotas/changes?limit=50")]);
    put(table, quotas.length === 0
      ? h("div", { class: "empty" }, "No tenant has a quota: the dispatcher places jobs oldest first. Set one below.")
      : h("table", {},
        h("thead", {}, h("tr", {}, ["Tenant", "Cohort", "Quota (SCU/h)", "Entitlement", "Usage now", "Usage / quota", "Borrowed", "Budget used / left", "Classes", ""]
          .map((t, i) => h("th", { class: i >= 2 && i <= 7 ? "num" : null }, t)))),
        h("tbody", {}, quotas.map((v) => {
          const s = v.settings, u = v.usage;
          return h("tr", { "data-tenant": v.tenant },
            h("td", {}, v.tenant), h("td", { "data-col": "cohort" }, s.cohort),
            h("td", { class: "num", "data-col": "quota" }, rate(s.quota_scu_per_h)),
            h("td", { class: "num", "data-col": "entitlement" }, rate(v.entitlement_scu_per_h)),
            h("td", { class: "num", "data-col": "usage" }, `${rate(u.rate_scu_per_h)} (${u.jobs} job${u.jobs === 1 ? "" : "s"})`),
            h("td", { class: "num", "data-col": "usage_over_quota" }, pct(u.usage_over_quota)),
            h("td", { class: "num", "data-col": "borrowed" }, rate(u.borrowed_scu_per_h)),
            h("td", { class: "num", "data-col": "budget" }, `${cny(u.budget_used_cny)} / ${s.budget_cny_per_month === null ? "no budget" : cny(u.budget_left_cny)}`),
            h("td", { "data-col": "classes" }, s.classes.join(", ")),
            h("td", {}, h("div", { class: "inline-actions" },
              h("button", { type: "button", class: "secondary", "data-action": "edit", onclick: () => form.fill(v) }, "Edit"),
              h("button", { type: "button", class: "danger secondary", "data-action": "remove", onclick: (ev) => remove(ev, v) }, "Remove"))));
        }))));
    put(changes, log.changes.length === 0 ? h("div", { class: "empty" }, "No change yet.") : h("table", {},
      h("thead", {}, h("tr", {}, ["When", "By", "Tenant", "What", "Before → after"].map((t) => h("th", {}, t)))),
      h("tbody", {}, log.changes.map((c) => h("tr", { "data-change": c.id, "data-tenant": c.tenant },
        h("td", {}, when(c.at)), h("td", {}, c.by), h("td", {}, c.tenant), h("td", {}, c.action),
        h("td", { class: "sub" }, h("ul", { class: "plain" }, changeLines(c.before, c.after).map((line) => h("li", {}, line)))))))));
  };
  await poll(refresh, 5000, view);
}

// The form of PUT /v1/quotas/{tenant}: one field per setting (data-field: the API's loc), one
// cap field per accelerator family and per hub (empty: no cap).
function quotaForm(geo, msg, saved) {
  const input = (id, fieldName, attrs) => h("input", Object.assign({ id, name: id, "data-field": fieldName }, attrs));
  const numberIn = (id, fieldName, attrs) => input(id, fieldName, Object.assign({ type: "number", min: 0, step: "any" }, attrs));
  const tenant = input("quota-tenant", "tenant", { required: true, placeholder: "tenant name", autocomplete: "off" });
  const cohort = input("quota-cohort", "cohort", { required: true, placeholder: "e.g. tsinghua" });
  const quota = numberIn("quota-quota", "quota_scu_per_h", { required: true });
  const borrow = numberIn("quota-borrow", "borrow_limit_scu_per_h", { value: 0 });
  const lend = numberIn("quota-lend", "lend_limit_scu_per_h", { placeholder: "all" });
  const weight = numberIn("quota-weight", "weight", { value: 1 });
  const budget = input("quota-budget", "budget_cny_per_month", { inputmode: "decimal", placeholder: "none" });
  const maxSpend = input("quota-max-spend", "max_spend_cny_per_h", { inputmode: "decimal", placeholder: "none" });
  const classBoxes = CLASSES.map((c) => h("label", { class: "check" },
    h("input", { type: "checkbox", name: "classes", value: c, checked: true }), c));
  const classes = h("fieldset", { "data-field": "classes", class: "plain" }, h("legend", { class: "sr" }, "Classes it may submit"), classBoxes);
  const caps = { families: new Map(), hubs: new Map() };
  const capRow = { families: h("div", { class: "row" }), hubs: h("div", { class: "row" }) };
  const addCap = (kind, name, label) => {
    if (caps[kind].has(name)) return caps[kind].get(name);
    const el = numberIn(`cap-${kind}-${name}`, `caps.${kind}.${name}`, { placeholder: "no cap" });
    caps[kind].set(name, el);
    capRow[kind].append(field(label, el));
    return el;
  };
  for (const f of geo.families || []) addCap("families", f, f);
  for (const hub of geo.hubs) addCap("hubs", hub.id, hub.name);
  const err = h("div", { id: "quota-form-error" });
  const button = h("button", { class: "primary", type: "submit", id: "save-quota" }, "Save quota");
  const rateOf = (el) => (el.value.trim() === "" ? null : Number(el.value));
  const moneyOf = (el) => (el.value.trim() === "" ? null : el.value.trim());
  const form = h("form", { class: "stack", id: "quota-form", novalidate: true, onsubmit: async (ev) => {
    ev.preventDefault();
    put(err);
    markFields(form, null);
    const body = {
      cohort: cohort.value, quota_scu_per_h: rateOf(quota),
      borrow_limit_scu_per_h: rateOf(borrow) ?? 0, lend_limit_scu_per_h: rateOf(lend),
      weight: rateOf(weight) ?? 1,
      classes: [...form.querySelectorAll("input[name=classes]:checked")].map((b) => b.value),
      caps: { families: {}, hubs: {} },
      budget_cny_per_month: moneyOf(budget), max_spend_cny_per_h: moneyOf(maxSpend),
    };
    for (const kind of ["families", "hubs"]) {
      for (const [name, el] of caps[kind]) if (el.value.trim() !== "") body.caps[kind][name] = Number(el.value);
    }
    const who = tenant.value.trim();
    if (!who) {
      tenant.setAttribute("aria-invalid", "true");
      tenant.insertAdjacentElement("afterend", h("div", { class: "field-error" }, "name the tenant whose quota this is"));
      return;
    }
    button.disabled = true;
    try {
      const v = await api(quotaPath(who), { method: "PUT", body });
      put(msg, v.changed
        ? `Saved ${v.tenant}'s quota (takes effect at the dispatcher's next round).`
        : `${v.tenant}'s quota was set so already: nothing changed.`);
      await saved();
    } catch (e) {
      markFields(form, e);
      if (details.querySelector("[aria-invalid]")) details.open = true;  // a cap's problem: show it
      err.append(errorBox(e));
    } finally { button.disabled = false; }
  } },
    h("div", { class: "row" }, field("Tenant", tenant), field("Cohort", cohort, "(a university, a company)")),
    h("div", { class: "row" },
      field("Quota (SCU/h)", quota), field("Borrow limit (SCU/h)", borrow, "(from its cohort)"),
      field("Lend limit (SCU/h)", lend, "(empty: all its unused quota)"), field("Weight", weight, "(entitlement = quota × weight)")),
    h("label", {}, "Classes it may submit"), classes,
    h("details", {}, h("summary", {}, "Caps by accelerator family and by hub (SCU/h; empty: no cap)"),
      h("h3", { class: "sub" }, "Accelerator families"), capRow.families,
      h("h3", { class: "sub" }, "Hubs"), capRow.hubs),
    h("div", { class: "row" },
      field("Monthly budget (CNY)", budget, "(empty: none)"), field("Max spend per hour (CNY)", maxSpend, "(empty: none)")),
    err,
    h("div", { class: "actions" }, button,
      h("button", { type: "button", class: "secondary", onclick: () => fill(null) }, "New (clear the form)")));
  const details = form.querySelector("details");

  // The form with a tenant's settings (null: empty, for a new quota).
  function fill(v) {
    const s = v ? v.settings : null;
    put(err);
    markFields(form, null);
    tenant.value = v ? v.tenant : "";
    cohort.value = s ? s.cohort : "";
    quota.value = s ? s.quota_scu_per_h : "";
    borrow.value = s ? s.borrow_limit_scu_per_h : 0;
    lend.value = s && s.lend_limit_scu_per_h !== null ? s.lend_limit_scu_per_h : "";
    weight.value = s ? s.weight : 1;
    for (const b of classBoxes.map((l) => l.querySelector("input"))) b.checked = !s || s.classes.includes(b.value);
    for (const kind of ["families", "hubs"]) {
      const set = s ? s.caps[kind] : {};
      for (const name of Object.keys(set)) addCap(kind, name, name);  // a name the scenario lacks: shown, to fix
      for (const [name, el] of caps[kind]) el.value = name in set ? set[name] : "";
    }
    details.open = !!s && (Object.keys(s.caps.families).length > 0 || Object.keys(s.caps.hubs).length > 0);
    budget.value = s && s.budget_cny_per_month !== null ? s.budget_cny_per_month : "";
    maxSpend.value = s && s.max_spend_cny_per_h !== null ? s.max_spend_cny_per_h : "";
    if (v) { panel.scrollIntoView({ block: "start" }); cohort.focus({ preventScroll: true }); }
  }
  const panel = h("div", { class: "panel" }, h("h2", {}, "Set a tenant's quota"), form);
  return { panel, fill };
}
