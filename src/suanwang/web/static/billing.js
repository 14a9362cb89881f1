// Billing: balance and free trial, the invoices and an invoice's lines, this month's
// settlement (providers and operators) and top-ups (operators).
import { KEY, api, errorBox, field, h, markFields, put, state, when } from "./core.js";

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

// A month's settlement (/v1/billing/settlements/{period}): for operators the charges and the
// commission, then what each provider earned, was paid and is owed.
function settlementView(doc) {
  const totals = doc.charges_cny === undefined ? null : h("dl", { class: "kv", id: "settlement-totals" },
    h("dt", {}, "Charges"), h("dd", {}, `${cny(doc.charges_cny)}: jobs ${cny(doc.jobs_cny)} (${doc.jobs}), reservations ${cny(doc.reservations_cny)} (${doc.reservations}), refunds ${cny(doc.refunds_cny)} (${doc.refunds})`),
    h("dt", {}, "Commission"), h("dd", {}, `${cny(doc.commission_cny)} (rate ${doc.commission_rate})`),
    h("dt", {}, "Free trials paid"), h("dd", {}, cny(doc.trials_cny)));
  const columns = [["payout_cny", "Earned"], ["reservations_cny", "of it reservations"], ["refunds_cny", "refunds"],
    ["paid_out_cny", "Paid out"], ["owed_cny", "Owed now"], ["due_cny", "Due now"]];
  const providers = doc.providers.length === 0
    ? h("div", { class: "empty" }, "No provider has earned anything this month yet.")
    : h("table", { id: "settlement-providers" },
      h("thead", {}, h("tr", {}, h("th", {}, "Provider"), columns.map(([, t]) => h("th", { class: "num" }, t)))),
      h("tbody", {}, doc.providers.map((p) => h("tr", { "data-provider": p.provider },
        h("td", {}, p.provider), columns.map(([k]) => h("td", { class: "num" }, cny(p[k])))))));
  return [totals, h("div", {}, providers)];
}

export async function renderBilling(parts) {
  const view = state.page;
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
  if (state.me.role !== "consumer") {
    const period = months(1)[0];
    let settlement;
    try { settlement = settlementView(await api(`/v1/billing/settlements/${period}`)); } catch (e) { settlement = errorBox(e); }
    sections.push(h("div", { class: "panel", id: "settlement" }, h("h2", {}, `Settlement ${period}`), settlement));
  }
  if (state.me.role === "operator") sections.push(renderTopUp());
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
  const view = state.page;
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
