// Operators: every center with its state, Drain / Undrain.
import { api, errorBox, h, pct, poll, put, state, util } from "./core.js";

export async function renderOperator() {
  const view = state.page;
  if (state.me.role !== "operator") {
    put(view, h("h1", {}, "Operator"), h("div", { class: "empty" }, "These views are for operators; your key is a " + state.me.role + "'s."));
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
