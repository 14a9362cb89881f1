// suanwang console: a small single-page app over the JSON API (no framework, no build step).
// This module signs in and routes; each page is a module of its own.
import { renderApp, renderApps } from "./apps.js";
import { renderBilling } from "./billing.js";
import { KEY, api, errorBox, h, put, setStatus, state, stopPolling } from "./core.js";
import { renderJob, renderJobs, renderSubmit } from "./jobs.js";
import { renderKeys } from "./keys.js";
import { renderMap } from "./map.js";
import { renderOperator } from "./operator.js";
import { renderQuotas } from "./quotas.js";
import { renderWhatIf } from "./whatif.js";

const view = document.getElementById("view");

function signOut(message) {
  sessionStorage.removeItem(KEY);
  state.me = null;
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
      state.me = await api("/v1/me", { signingIn: true });
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
  document.getElementById("who-name").textContent = `${state.me.name} (${state.me.role})`;
  document.getElementById("nav-operator").hidden = state.me.role !== "operator";
  document.getElementById("nav-whatif").hidden = state.me.role !== "operator";
}

document.getElementById("sign-out").addEventListener("click", () => signOut("Signed out."));

async function route() {
  stopPolling();
  setStatus("");
  if (!sessionStorage.getItem(KEY)) { renderSignIn(); return; }
  if (!state.me) {
    try { state.me = await api("/v1/me"); } catch (e) { if (e.status !== 401) setStatus(e.message, true); return; }
    signedIn();
  }
  const [path, query] = (location.hash.slice(1) || "/map").split("?");
  const parts = path.split("/").filter(Boolean);
  const params = new URLSearchParams(query || "");
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.nav === (parts[0] || "map")) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  state.page = h("div", { class: "page" }, h("p", { class: "muted" }, "Loading…"));
  put(view, state.page);
  const page = state.page;
  try {
    switch (parts[0] || "map") {
      case "map": await renderMap(); break;
      case "jobs": await (parts[1] ? renderJob(parts[1]) : renderJobs(params)); break;
      case "submit": await renderSubmit(); break;
      case "apps": await (parts[1] ? renderApp(parts[1]) : renderApps()); break;
      case "billing": await renderBilling(parts.slice(1)); break;
      case "quotas": await renderQuotas(); break;
      case "keys": await renderKeys(params); break;
      case "operator": await renderOperator(); break;
      case "whatif": await renderWhatIf(parts[1]); break;
      default: put(page, h("h1", {}, "Not found"), h("div", { class: "empty" }, "No such page."), h("p", {}, h("a", { href: "#/map" }, "The network")));
    }
  } catch (e) {
    if (e.status === 401 || page !== state.page) return;
    put(page, h("h1", {}, "Something went wrong"), errorBox(e));
  }
  view.focus({ preventScroll: true });
}

state.signOut = signOut;
state.route = route;
window.addEventListener("hashchange", route);
route();
