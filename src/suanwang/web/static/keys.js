// API keys (docs/control-plane.md, "API keys"): every tenant lists, creates, rotates and revokes
// its own keys (/v1/keys); an operator picks any tenant (#/keys?tenant=NAME) and manages its keys
// (/v1/tenants/{tenant}/keys). A new key's secret is shown once, in this page only (never stored
// by the console): moving away drops it. Revoking the key the console is signed in with signs
// the console out; rotating it switches the console to the successor.
import { KEY, api, errorBox, field, h, markFields, put, state, when } from "./core.js";

const STATE_BADGE = { active: "succeeded", expired: "cancelled", revoked: "failed" };
const MAX_OVERLAP_S = 86_400;

export async function renderKeys(params) {
  const view = state.page;
  const tenant = (params.get("tenant") || "").trim() || null;  // null: one's own keys
  const base = tenant ? `/v1/tenants/${encodeURIComponent(tenant)}/keys` : "/v1/keys";
  const mineNow = (prefix) => prefix === state.me.key_prefix;  // prefixes are unique

  const consoleKey = h("div", { class: "panel", id: "console-key" });
  const msg = h("div", { role: "status", id: "keys-msg" });
  const secret = h("div", { id: "new-secret" });
  const title = h("h2", {}, tenant ? `Keys of ${tenant}` : "Your keys");
  const table = h("div", { id: "keys-table" }, h("p", { class: "muted" }, "Loading…"));
  const rotate = rotateForm();
  const create = createForm();
  put(view,
    h("h1", {}, "API keys"),
    h("p", { class: "muted" }, "A key signs in to this console and to the API. The platform keeps only a digest of each "
      + "key and lists it by its prefix; the key itself is shown once, when it is created or rotated. ",
    h("a", { href: "/docs#/keys" }, "API")),
    consoleKey,
    state.me.role === "operator" ? tenantPicker(tenant) : null,
    msg, secret,
    h("div", { class: "panel" }, title, table),
    rotate.panel,
    create.panel);

  function showConsoleKey() {
    const me = state.me;
    put(consoleKey,
      h("p", { id: "console-key-text" }, "This console is signed in as ", h("strong", {}, me.name),
        " with key ", h("code", {}, me.key_prefix || "?"), ": ",
        me.read_only ? h("strong", { id: "console-key-access" }, "read-only") : h("span", { id: "console-key-access" }, "full access"), "."),
      me.read_only
        ? h("p", { class: "sub" }, "A read-only key may list keys (and read everything its tenant may read) but not create, rotate or "
          + "revoke them: the server refuses it every change. Sign in with a full-access key to manage keys.")
        : null);
  }

  // The secret of a key just made: shown once, with a copy button and a warning.
  function showSecret(doc, heading, extra) {
    const value = h("input", { id: "new-secret-value", type: "text", readonly: true, value: doc.api_key,
      size: 60, autocomplete: "off", spellcheck: "false", "aria-label": "The new key" });
    const copied = h("span", { role: "status", id: "copy-status", class: "sub" });
    const copy = async () => {
      try {
        await navigator.clipboard.writeText(doc.api_key);
        copied.textContent = "Copied to the clipboard.";
      } catch (e) {
        value.select();
        copied.textContent = "Could not copy here: the key is selected, copy it with Ctrl+C (⌘C).";
      }
    };
    put(secret, h("div", { class: "panel secret", id: "secret-panel" },
      h("h2", {}, heading),
      h("p", { class: "warning", id: "secret-warning" }, h("strong", {}, "Copy this key now: it will not be shown again. "),
        "The platform keeps only its digest; if it is lost, rotate or revoke it and make another."),
      extra ? h("p", {}, extra) : null,
      h("div", { class: "inline-actions" }, value,
        h("button", { type: "button", class: "primary", id: "copy-secret", onclick: copy }, "Copy"),
        h("button", { type: "button", class: "secondary", id: "hide-secret", onclick: () => put(secret) }, "Done: hide it")),
      copied));
    value.focus();
    value.select();
  }

  const revoke = async (ev, k) => {
    const mine = mineNow(k.prefix);
    const question = mine
      ? `Revoke ${k.prefix} (${k.name})? It is the key this console is signed in with: the console signs out.`
      : `Revoke ${k.prefix} (${k.name})? Anything using it stops working at once.`;
    if (!confirm(question)) return;
    ev.target.disabled = true;
    try {
      const r = await api(`${base}/${encodeURIComponent(k.prefix)}`, { method: "DELETE" });
      if (mine) {
        state.signOut(`You revoked the key this console was signed in with (${k.prefix}): it no longer works. Sign in with another key.`);
        return;
      }
      put(msg, r.changed ? `Revoked ${k.prefix} (${k.name}): it no longer works.` : `${k.prefix} was revoked already.`);
      await refresh();
    } catch (e) { put(msg, errorBox(e)); ev.target.disabled = false; }
  };

  async function refresh() {
    showConsoleKey();
    let doc;
    try { doc = await api(base); } catch (e) {
      if (e.status === 401) throw e;
      put(table, errorBox(e));
      create.panel.hidden = true;
      return;
    }
    if (view !== state.page) return;
    create.panel.hidden = false;
    put(title, tenant ? `Keys of ${doc.tenant}` : "Your keys");
    create.setOwner(doc.tenant);
    put(table, doc.keys.length === 0 ? h("div", { class: "empty" }, `${doc.tenant} has no key: create one below.`) : h("table", {},
      h("thead", {}, h("tr", {}, ["Prefix", "Name", "Access", "Created", "Expires", "State", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, doc.keys.map((k) => h("tr", { "data-prefix": k.prefix, "data-state": k.state },
        h("td", {}, h("code", {}, k.prefix), mineNow(k.prefix) ? h("div", { class: "sub", "data-col": "this-console" }, "this console's key") : null),
        h("td", { "data-col": "name" }, k.name),
        h("td", { "data-col": "access" }, k.read_only ? "read-only" : "full"),
        h("td", { "data-col": "created" }, when(k.created_at)),
        h("td", { "data-col": "expires" }, k.expires_at ? when(k.expires_at) : "never"),
        h("td", { "data-col": "state" }, h("span", { class: `badge ${STATE_BADGE[k.state] || ""}` }, k.state),
          k.revoked_at ? h("div", { class: "sub" }, `revoked ${when(k.revoked_at)}`) : null),
        h("td", {}, h("div", { class: "inline-actions" },
          k.state === "active" ? h("button", { type: "button", class: "secondary", "data-action": "rotate", onclick: () => rotate.open(k) }, "Rotate…") : null,
          k.revoked_at ? null : h("button", { type: "button", class: "danger secondary", "data-action": "revoke", onclick: (ev) => revoke(ev, k) }, "Revoke"))))))));
  }

  // Rotate one key: the old one revoked now, or working overlap_s seconds longer.
  function rotateForm() {
    let key = null;
    const heading = h("h2", {});
    const overlap = h("input", { id: "rotate-overlap", name: "overlap_s", type: "number", min: 0, max: MAX_OVERLAP_S, step: 1, value: 0, "data-field": "overlap_s" });
    const err = h("div", { id: "key-rotate-error" });
    const button = h("button", { class: "primary", type: "submit", id: "rotate-key" }, "Rotate");
    const form = h("form", { class: "stack", id: "key-rotate", novalidate: true },
      field("Keep the old key working for (seconds)", overlap, `(0: revoked now; at most ${MAX_OVERLAP_S}, a day, so that what uses it can switch)`),
      err,
      h("div", { class: "actions" }, button,
        h("button", { type: "button", class: "secondary", onclick: () => { panel.hidden = true; } }, "Cancel")));
    whenSubmitted(form, err, button, async () => {
      const raw = overlap.value.trim();
      const body = { overlap_s: raw === "" ? 0 : Number(raw) };
      const r = await api(`${base}/${encodeURIComponent(key.prefix)}/rotate`, { method: "POST", body });
      let extra = null;
      if (mineNow(r.old.prefix)) {  // the console's own key: carry on with its successor
        sessionStorage.setItem(KEY, r.api_key);
        state.me = await api("/v1/me");
        extra = `This console was signed in with ${r.old.prefix}: it now uses ${r.key.prefix}.`;
      }
      panel.hidden = true;
      put(msg, r.old.state === "revoked"
        ? `Rotated ${r.old.prefix}: it is revoked; its successor is ${r.key.prefix}.`
        : `Rotated ${r.old.prefix}: it keeps working until ${when(r.old.expires_at)}; its successor is ${r.key.prefix}.`);
      showSecret(r, `New key ${r.key.prefix} (${r.key.name}) for ${r.tenant}`, extra);
      await refresh();
    });
    const panel = h("div", { class: "panel", id: "rotate-panel", hidden: true }, heading,
      h("p", { class: "sub" }, "A new key with the same name, access and lifetime; its secret is shown once."), form);
    return {
      panel,
      open(k) {
        key = k;
        put(err);
        markFields(form, null);
        overlap.value = 0;
        put(heading, `Rotate ${k.prefix} (${k.name})`);
        panel.hidden = false;
        panel.scrollIntoView({ block: "nearest" });
        overlap.focus({ preventScroll: true });
      },
    };
  }

  // Create a key: name, expiry (the browser's local time; empty: never) and read-only.
  function createForm() {
    const heading = h("h2", {}, "Create a key");
    const name = h("input", { id: "key-name", name: "name", "data-field": "name", placeholder: "e.g. grafana", autocomplete: "off", maxlength: 100 });
    const expires = h("input", { id: "key-expires", name: "expires_at", type: "datetime-local", "data-field": "expires_at" });
    const readOnly = h("input", { id: "key-read-only", name: "read_only", type: "checkbox", "data-field": "read_only" });
    const err = h("div", { id: "key-create-error" });
    const button = h("button", { class: "primary", type: "submit", id: "create-key" }, "Create key");
    const form = h("form", { class: "stack", id: "key-create", novalidate: true },
      h("div", { class: "row" },
        field("Name", name, "(what it is for; empty: default)"),
        field("Expires", expires, "(your local time; empty: never)")),
      h("label", { class: "check", for: "key-read-only" }, readOnly, "Read-only: it may read (GET) but change nothing, e.g. for a dashboard"),
      err,
      h("div", { class: "actions" }, button));
    whenSubmitted(form, err, button, async () => {
      const body = { read_only: readOnly.checked };
      if (name.value.trim() !== "") body.name = name.value.trim();
      if (expires.value !== "") {
        const at = new Date(expires.value);  // local time, sent with its offset (UTC)
        body.expires_at = Number.isNaN(at.getTime()) ? expires.value : at.toISOString();
      }
      const r = await api(base, { method: "POST", body });
      form.reset();
      put(msg, `Created ${r.key.prefix} (${r.key.name}) for ${r.tenant}.`);
      showSecret(r, `New key ${r.key.prefix} (${r.key.name}) for ${r.tenant}`, null);
      await refresh();
    });
    const panel = h("div", { class: "panel", id: "create-panel" }, heading, form);
    return { panel, setOwner: (who) => put(heading, tenant ? `Create a key for ${who}` : "Create a key") };
  }

  await refresh();
}

// On submit: the form's earlier problems cleared, `send` run with the button disabled, and what
// the server refuses shown (422: next to the fields it names; anything else: in `err`).
function whenSubmitted(form, err, button, send) {
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    put(err);
    markFields(form, null);
    button.disabled = true;
    try { await send(); } catch (e) {
      if (e.status === 401) return;  // signed out already
      markFields(form, e);
      err.append(errorBox(e));
    } finally { button.disabled = false; }
  });
}

// Operators: whose keys to show (a tenant's name or id; empty: one's own).
function tenantPicker(tenant) {
  const input = h("input", { id: "keys-tenant", name: "tenant", value: tenant || "", placeholder: "name or id", autocomplete: "off" });
  const form = h("form", { class: "filters", id: "keys-tenant-form", onsubmit: (ev) => {
    ev.preventDefault();
    const who = input.value.trim();
    location.hash = who ? `#/keys?tenant=${encodeURIComponent(who)}` : "#/keys";
  } },
    h("label", { for: "keys-tenant" }, "Tenant (operators: any tenant's keys)", input),
    h("button", { type: "submit", class: "secondary", id: "show-tenant-keys" }, "Show its keys"),
    tenant ? h("a", { href: "#/keys", id: "own-keys" }, "Your own keys") : null);
  return h("div", { class: "panel" }, form);
}
