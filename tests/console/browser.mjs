// Browser scenarios of the console, run by tests/console/test_console_browser.py:
//   node tests/console/browser.mjs SCENARIO '{"url": ..., "key": ..., "out": DIR, ...}'
// Playwright (playwright-core from npm) drives Debian's /usr/bin/chromium headless. Prints one
// JSON object (what the scenario saw) on stdout; on failure, the error on stderr, a screenshot
// DIR/failed-SCENARIO.png and exit code 1.
import { chromium } from "playwright-core";
import path from "node:path";
import fs from "node:fs";

const [scenario, rawArgs] = process.argv.slice(2);
const args = JSON.parse(rawArgs || "{}");
const out = args.out;
fs.mkdirSync(out, { recursive: true });
const executablePath = args.chromium || "/usr/bin/chromium";
const FINISH_MS = 90_000;

async function signIn(page, key = args.key) {
  await page.goto(args.url + "/");
  await page.getByLabel("API key").fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
}

async function shot(page, name, fullPage = true) {
  const file = path.join(out, `${name}.png`);
  await page.screenshot({ path: file, fullPage });
  return file;
}

async function waitForState(page, states, timeout = FINISH_MS) {
  await page.waitForFunction(
    (wanted) => {
      const el = document.querySelector("#job-state .badge");
      return el && wanted.includes(el.textContent);
    },
    states,
    { timeout },
  );
  return page.locator("#job-state .badge").textContent();
}

// The map's layout: province outlines drawn, and label boxes against center marker boxes (in
// page pixels) with every label that covers a marker.
async function mapLayout(page) {
  return page.evaluate(() => {
    const box = (el) => { const r = el.getBoundingClientRect(); return { x: r.x, y: r.y, w: r.width, h: r.height }; };
    const overlap = (a, b) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
    const markers = [...document.querySelectorAll("svg.map circle.center")].map((c) => [c.dataset.center, box(c)]);
    const labels = [...document.querySelectorAll("svg.map text.province-label, svg.map text.hub-label")].map((t) => [t.textContent, box(t)]);
    const covering = [];
    for (const [text, b] of labels) for (const [id, m] of markers) if (overlap(b, m)) covering.push(`${text} covers ${id}`);
    const provinces = [...document.querySelectorAll("svg.map path.province")];
    return {
      provinces: provinces.map((p) => p.dataset.province),
      province_labels: [...document.querySelectorAll("svg.map text.province-label")].map((t) => t.textContent),
      hub_labels: [...document.querySelectorAll("svg.map text.hub-label")].map((t) => t.textContent),
      covering,
      markers_on_top: markers.length > 0 && provinces.length > 0
        && (provinces[provinces.length - 1].compareDocumentPosition(document.querySelector("svg.map circle.center")) & Node.DOCUMENT_POSITION_FOLLOWING) !== 0,
    };
  });
}

// Sign in (args.key) and open the Keys page, its list shown.
async function openKeys(page) {
  await signIn(page);
  await page.getByRole("link", { name: "Keys", exact: true }).click();
  await page.locator("#keys-table tbody tr").first().waitFor();
}

// The Keys page: `input` filled with `bad` and submitted with `button` (its field's error), then
// with `good` (the secret shown once): [the error, the secret].
async function refusedThenMade(page, input, button, bad, good) {
  const error = page.locator(`${input} + .field-error`);
  await page.locator(input).fill(bad);
  await page.locator(button).click();
  await error.waitFor();
  const refused = await error.textContent();
  await page.locator(input).fill(good);
  await page.locator(button).click();
  await page.locator("#secret-panel").waitFor();
  return [refused, await page.locator("#new-secret-value").inputValue()];
}

const scenarios = {
  async bad_key(page) {
    await signIn(page, "sw_not-a-real-key");
    const alert = page.locator("#sign-in-error [role=alert]");
    await alert.waitFor();
    return { error: await alert.textContent(), nav_hidden: await page.locator("#nav").isHidden() };
  },

  async map(page) {
    await signIn(page);
    const centers = page.locator("svg.map circle.center");
    await page.waitForFunction((n) => document.querySelectorAll("svg.map circle.center").length === n,
      args.expect_centers, { timeout: 20_000 });
    const count = await centers.count();
    const hubRows = await page.locator("#hub-table tbody tr").count();
    const tableRows = await page.locator("#centers-table tbody tr").count();
    await shot(page, "map");
    // keyboard: focus the first center and open its panel with Enter
    await centers.first().focus();
    await page.keyboard.press("Enter");
    await page.locator("#center-title").waitFor();
    const title = await page.locator("#center-title").textContent();
    const panel = await page.locator("#center-panel").textContent();
    // colour by green share
    await page.getByLabel("Colour centers by").selectOption("green");
    const label = await centers.first().getAttribute("aria-label");
    await shot(page, "map-green", false);
    return { centers: count, hub_rows: hubRows, table_rows: tableRows, title, panel, green_label: label, ...(await mapLayout(page)) };
  },

  // The map and the pages at phone width: nothing wider than the screen.
  async phone(page) {
    await signIn(page);
    await page.locator("svg.map circle.center").first().waitFor();
    await page.locator("svg.map text.province-label").first().waitFor();
    const widths = {};
    const fits = async (name) => {
      widths[name] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
      await shot(page, `phone-${name}`, false);
    };
    await fits("map");
    const map = await page.locator("svg.map").boundingBox();
    const layout = await mapLayout(page);
    await page.getByRole("link", { name: "Jobs", exact: true }).click();
    await page.locator(`#jobs-table tr[data-job="${args.job}"]`).waitFor();
    const jobRow = await page.locator(`#jobs-table tr[data-job="${args.job}"]`).isVisible();
    await fits("jobs");
    await page.goto(`${args.url}/#/jobs/${args.job}`);
    await page.locator("#placement-table").waitFor();
    await fits("job");
    await page.getByRole("link", { name: "Billing", exact: true }).click();
    await page.locator("#balance").waitFor();
    await fits("billing");
    await page.getByRole("link", { name: "Quotas", exact: true }).click();
    await page.locator("#quota-form").waitFor();
    await fits("quotas");
    await page.getByRole("link", { name: "Keys", exact: true }).click();
    await page.locator("#keys-table tbody tr").first().waitFor();
    await fits("keys");
    return { widths, map, job_row_visible: jobRow, ...layout };
  },

  // One job's page: its placement (objective by term, why each runner-up lost) or, for a job
  // nothing can run, which constraints excluded the pools.
  async job_page(page) {
    await signIn(page);
    await page.goto(`${args.url}/#/jobs/${args.job}`);
    await page.locator("#placement-table, #placement-excluded").first().waitFor();
    const cells = (col) => page.locator(`#placement-table td[data-col="${col}"]`).allTextContents();
    const excluded = await page.locator("#placement-excluded tbody tr").evaluateAll(
      (rows) => rows.map((r) => [r.dataset.constraint, r.lastChild.textContent]));
    await shot(page, `job-${args.shot}`);
    return {
      reason: await page.locator("#placement-reason").textContent(),
      objective: await cells("objective_cny"), lost: await cells("lost"), excluded,
    };
  },

  async submit_job(page) {
    await signIn(page);
    await page.getByRole("link", { name: "Submit", exact: true }).click();
    await page.locator("#submit-form").waitFor();
    // first a refused submission: the field is marked and the reason shown
    await page.getByLabel("Duration (s)").fill("-5");
    await page.locator("#submit-job").click();
    await page.locator("#submit-error [role=alert]").waitFor();
    const refused = await page.locator("#submit-error").textContent();
    const invalid = await page.locator("#duration_s").getAttribute("aria-invalid");
    await page.getByLabel("Duration (s)").fill("600");
    await page.getByLabel("Name").fill(args.job_name);
    await page.getByLabel("Command").fill(`echo ${args.marker}; sleep 1; echo finished`);
    await page.getByLabel("Kind").selectOption("inference");
    await page.getByLabel("Origin").selectOption("guangdong");
    await shot(page, "submit-form");
    await page.locator("#submit-job").click();
    await page.waitForURL(/#\/jobs\/[0-9a-f-]{36}$/);
    const id = page.url().split("/").pop();
    const state = await waitForState(page, ["succeeded", "failed", "cancelled", "lost"]);
    await page.waitForFunction((m) => document.querySelector("#logs").textContent.includes(m), args.marker);
    const events = await page.locator("#events tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.event));
    const chosen = await page.locator("#placement-table tr.chosen td").nth(1).textContent();
    const runnersUp = await page.locator("#placement-table tbody tr").count();
    const logs = await page.locator("#logs").textContent();
    await shot(page, "job");
    // the job is in the list, and the filters find it
    await page.getByRole("link", { name: "Jobs", exact: true }).click();
    await page.getByLabel("Name").fill(args.job_name);
    await page.locator(`#jobs-table tr[data-job="${id}"]`).waitFor();
    const listed = await page.locator("#jobs-table tbody tr").count();
    await page.getByLabel("State").selectOption("failed");
    await page.locator("#jobs-table .empty").waitFor();
    const filteredOut = await page.locator("#jobs-table .empty").textContent();
    return { id, state, events, chosen, placement_rows: runnersUp, logs, refused, invalid, listed, filtered_out: filteredOut };
  },

  async run_app(page) {
    await signIn(page);
    await page.getByRole("link", { name: "Apps", exact: true }).click();
    await page.locator("#app-cards").waitFor();
    const apps = await page.locator("#app-cards [data-app]").evaluateAll((cards) => cards.map((c) => c.dataset.app));
    await shot(page, "apps");
    await page.locator('[data-app="llm-batch-inference"] a').click();
    await page.locator("#app-form").waitFor();
    // out of range: refused with the parameter named next to its field
    await page.getByLabel("Cards").fill("999");
    await page.locator("#run-app").click();
    await page.locator("#run-error [role=alert]").waitFor();
    const refused = await page.locator("#run-error").textContent();
    const fieldError = await page.locator("#param-gpus + .field-error").textContent();
    await page.getByLabel("Cards").fill("2");
    await page.getByLabel("Prompts").fill("500");
    await page.getByLabel("Job name").fill(args.job_name);
    await page.getByLabel("Origin").selectOption("shanghai");
    await shot(page, "app-form");
    await page.locator("#run-app").click();
    await page.waitForURL(/#\/jobs\/[0-9a-f-]{36}$/);
    const id = page.url().split("/").pop();
    const state = await waitForState(page, ["succeeded", "failed", "cancelled", "lost"]);
    await page.waitForFunction(() => document.querySelector("#logs").textContent.includes("completions written"));
    const logs = await page.locator("#logs").textContent();
    await shot(page, "app-job");
    return { apps, refused, field_error: fieldError, id, state, logs };
  },

  // Quotas, as an operator: a refused setting (the field named), a quota set through the form,
  // shown in the table and the record of changes, edited, and a removal refused (409) then done.
  async quotas_operator(page) {
    await signIn(page);
    await page.getByRole("link", { name: "Quotas", exact: true }).click();
    await page.locator("#quota-form").waitFor();
    const form = page.locator("#quota-form");
    const errorOf = (id) => page.locator(`#${id} + .field-error`).textContent();
    await form.getByLabel("Tenant", { exact: true }).fill(args.tenant);
    await form.getByLabel("Cohort (a university, a company)").fill(args.cohort);
    await page.locator("#quota-quota").fill("100");
    // a weight of 0: refused by the API, the reason next to the field
    await page.locator("#quota-weight").fill("0");
    await page.locator("#save-quota").click();
    await page.locator("#quota-form-error [role=alert]").waitFor();
    const weightError = await errorOf("quota-weight");
    const weightInvalid = await page.locator("#quota-weight").getAttribute("aria-invalid");
    await shot(page, "quota-refused");
    // borrowing from a cohort where nobody lends: the whole governance is checked
    await page.locator("#quota-weight").fill("2");
    await page.locator("#quota-borrow").fill("60");
    await page.locator("#save-quota").click();
    await page.locator("#quota-borrow + .field-error").waitFor();
    const borrowError = await errorOf("quota-borrow");
    const weightCleared = await page.locator("#quota-weight + .field-error").count();
    await page.locator("#quota-borrow").fill("0");
    await page.locator("#quota-form input[name=classes][value=urgent]").uncheck();
    await page.getByText("Caps by accelerator family and by hub").click();
    await page.locator("#cap-families-nvidia").fill("40");
    await page.locator("#quota-budget").fill("1000");
    await page.locator("#save-quota").click();
    const row = page.locator(`#quota-table tr[data-tenant="${args.tenant}"]`);
    await row.waitFor();
    const cells = await row.locator("td[data-col]").evaluateAll(
      (tds) => Object.fromEntries(tds.map((td) => [td.dataset.col, td.textContent])));
    const saved = await page.locator("#quota-msg").textContent();
    const change = page.locator(`#quota-changes tr[data-tenant="${args.tenant}"]`).first();
    await change.waitFor();
    const created = await change.textContent();
    await shot(page, "quotas");
    // edit: the form takes the row's settings; a new quota is one more change, before -> after
    await row.locator("button[data-action=edit]").click();
    const filled = { cohort: await page.locator("#quota-cohort").inputValue(), weight: await page.locator("#quota-weight").inputValue(),
      nvidia: await page.locator("#cap-families-nvidia").inputValue(), urgent: await page.locator("#quota-form input[name=classes][value=urgent]").isChecked() };
    await page.locator("#quota-quota").fill("150");
    await page.locator("#save-quota").click();
    await page.waitForFunction((t) => document.querySelectorAll(`#quota-changes tr[data-tenant="${t}"]`).length === 2, args.tenant);
    const updated = await change.textContent();
    const quotaCell = await row.locator("td[data-col=quota]").textContent();
    // removing a lender its cohort mate borrows from: refused, the server's reason shown
    page.on("dialog", (d) => d.accept());
    await page.locator(`#quota-table tr[data-tenant="${args.lender}"] button[data-action=remove]`).click();
    await page.locator("#quota-msg [role=alert]").waitFor();
    const conflict = await page.locator("#quota-msg").textContent();
    await page.locator(`#quota-table tr[data-tenant="${args.tenant}"] button[data-action=remove]`).click();
    await page.locator(`#quota-table tr[data-tenant="${args.tenant}"]`).waitFor({ state: "detached" });
    const removed = await page.locator("#quota-msg").textContent();
    await page.waitForFunction((t) => document.querySelectorAll(`#quota-changes tr[data-tenant="${t}"]`).length === 3, args.tenant);
    const removal = await change.textContent();
    return {
      weight_error: weightError, weight_invalid: weightInvalid, borrow_error: borrowError,
      weight_cleared: weightCleared, cells, saved, created, filled, updated, quota_cell: quotaCell,
      conflict, removed, removal,
    };
  },

  // Quotas, as a consumer: its own quota (args.key), then a tenant without one (args.other).
  async quotas_consumer(page) {
    await signIn(page);
    await page.getByRole("link", { name: "Quotas", exact: true }).click();
    await page.locator("#my-quota-numbers").waitFor();
    const text = (id) => page.locator(`#${id}`).textContent();
    const mine = {
      entitlement: await text("my-entitlement"), usage: await text("my-usage"), borrowed: await text("my-borrowed"),
      standing: await text("my-standing"), budget: await text("my-budget"), classes: await text("my-classes"),
      page: await page.locator("main").textContent(), forms: await page.locator("#quota-form").count(),
    };
    await shot(page, "quota-mine");
    await page.locator("#sign-out").click();
    await signIn(page, args.other);
    await page.getByRole("link", { name: "Quotas", exact: true }).click();
    await page.locator("#quota-none").waitFor();
    return { mine, none: await text("quota-none") };
  },

  // A pending job under quotas: the list and its page say why it waits.
  async waiting_job(page) {
    await signIn(page);
    await page.getByRole("link", { name: "Jobs", exact: true }).click();
    const cell = page.locator(`#jobs-table tr[data-job="${args.job}"] [data-col=waiting]`);
    await cell.waitFor();
    const listed = await cell.textContent();
    await page.locator(`#jobs-table tr[data-job="${args.job}"] a`).click();
    // generous, as the test's own wait: on SQLite the job page's reads wait for the shared
    // server's rounds (every transaction takes the write lock); once, in CI, over 20 s
    await page.locator("#job-waiting").waitFor({ timeout: 60_000 });
    const result = {
      listed, waiting: await page.locator("#job-waiting").textContent(),
      code: await page.locator("#job-waiting").getAttribute("data-waiting"),
      state: await page.locator("#job-state .badge").textContent(),
    };
    await shot(page, "job-waiting");
    return result;
  },

  async drain(page) {
    await signIn(page);
    await page.getByRole("link", { name: "Operator" }).click();
    const row = page.locator(`#drain-table tr[data-center-row="${args.center}"]`);
    await row.locator("button[data-action=drain]").click();
    await row.locator("button[data-action=undrain]").waitFor();
    const drainedText = await row.textContent();
    await shot(page, "operator");
    await row.locator("button[data-action=undrain]").click();
    await row.locator("button[data-action=drain]").waitFor();
    return { drained_text: drainedText, reopened_text: await row.textContent() };
  },

  async consumer_views(page) {
    await signIn(page);
    await page.locator("svg.map circle.center").first().waitFor();
    const operatorLink = await page.locator("#nav-operator").isHidden();
    await page.goto(args.url + "/#/jobs");
    await page.locator("#jobs-table .empty").waitFor();
    const empty = await page.locator("#jobs-table .empty").textContent();
    await page.goto(args.url + "/#/apps");
    await page.locator("#app-cards").waitFor();
    const publish = await page.locator("#publish-form").count();
    const appsText = await page.locator("main").textContent();
    return { operator_link_hidden: operatorLink, empty_jobs: empty, publish_forms: publish, apps_text: appsText };
  },

  async publish_app(page) {
    await signIn(page);
    await page.getByRole("link", { name: "Apps", exact: true }).click();
    await page.locator("#app-cards").waitFor();
    await page.getByText("Publish an app").click();
    await page.getByLabel("App (JSON)").fill(JSON.stringify(args.spec));
    await page.getByRole("button", { name: "Publish app" }).click();
    await page.waitForURL(new RegExp(`#/apps/${args.spec.id}$`));
    await page.locator("#app-form").waitFor();
    const title = await page.locator("h1").textContent();
    const fields = await page.locator("#app-form [data-field^='parameters.']").count();
    await page.getByRole("link", { name: "← All apps" }).click();
    await page.locator(`[data-app="${args.spec.id}"]`).waitFor();
    const card = await page.locator(`[data-app="${args.spec.id}"]`).textContent();
    return { title, fields, card };
  },

  async whatif(page) {
    await signIn(page);
    await page.getByRole("link", { name: "What-if" }).click();
    await page.locator("#whatif-form").waitFor();
    for (const p of ["first-fit", "cheapest", "greenest"]) await page.locator(`input[name=policy][value="${p}"]`).uncheck();
    await page.getByLabel("Jobs").fill("0");
    await page.locator("#run-whatif").click();
    await page.locator("#whatif-error [role=alert]").waitFor();
    const refused = await page.locator("#whatif-error").textContent();
    await page.getByLabel("Jobs").fill(String(args.jobs));
    await page.getByLabel("Arrival days").fill("0.5");
    await page.locator("#run-whatif").click();
    await page.locator("#whatif-progress").waitFor();
    await page.locator("#whatif-table").waitFor({ timeout: 180_000 });
    const policies = await page.locator("#whatif-table tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.policy));
    const step = await page.locator("#whatif-step").textContent();
    const progress = await page.locator("#whatif-progress").evaluate((el) => el.value);
    const heading = await page.locator("#whatif-result h2").textContent();
    await shot(page, "whatif");
    return { refused, policies, step, progress, heading };
  },

  async whatif_trace(page) {
    await signIn(page);
    await page.getByRole("link", { name: "What-if" }).click();
    await page.locator("#whatif-form").waitFor();
    for (const p of ["first-fit", "greenest", "suanwang"]) await page.locator(`input[name=policy][value="${p}"]`).uncheck();
    await page.getByLabel("upload a trace").check();
    await page.getByLabel("Format").selectOption("suanwang");
    // a trace with bad rows: refused, naming the file's lines and fields
    await page.getByLabel("Trace file").setInputFiles(args.bad);
    await page.locator("#run-whatif").click();
    await page.locator("#whatif-error [role=alert]").waitFor();
    const refused = await page.locator("#whatif-error").textContent();
    await shot(page, "whatif-trace-refused");
    await page.getByLabel("Trace file").setInputFiles(args.good);
    await page.locator("#run-whatif").click();
    await page.locator("#whatif-progress").waitFor();
    await page.locator("#whatif-table").waitFor({ timeout: 180_000 });
    const policies = await page.locator("#whatif-table tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.policy));
    const result = {
      refused, policies,
      heading: await page.locator("#whatif-result h2").textContent(),
      about: await page.locator("#whatif-about").textContent(),
      workload: await page.locator("#whatif-workload").textContent(),
      completed: await page.locator('#whatif-table tr[data-policy="nearest"] td[data-metric="completed"]').textContent(),
      url: page.url(),
    };
    await shot(page, "whatif-trace");
    return result;
  },

  async whatif_edit(page) {
    await signIn(page);
    const run = async (edit) => {
      await page.getByRole("link", { name: "What-if", exact: true }).click();
      await page.locator("#whatif-form").waitFor();
      for (const p of ["first-fit", "cheapest", "greenest", "suanwang"]) await page.locator(`input[name=policy][value="${p}"]`).uncheck();
      await page.getByLabel("Scenario to simulate").selectOption("china");
      await page.getByLabel("Jobs").fill(String(args.jobs));
      await page.getByLabel("Arrival days").fill("0.5");
      await page.getByLabel("Drain days").fill("1");
      if (edit) {
        await page.getByText("Edit the scenario").click();
        await page.getByLabel("Tariff scale").fill(String(args.tariff_scale));
        await page.getByLabel(`PUE of ${args.center}`, { exact: true }).fill(String(args.pue));
        await shot(page, "whatif-edit-form", false);
      }
      await page.locator("#run-whatif").click();
      await page.locator("#whatif-table").waitFor({ timeout: 180_000 });
      const cell = (k) => page.locator(`#whatif-table tr[data-policy="nearest"] td[data-metric="${k}"]`).textContent();
      return {
        cost: await cell("cost_cny"), energy: await cell("energy_kwh"),
        heading: await page.locator("#whatif-result h2").textContent(),
        changes: await page.locator("#whatif-changes li").allTextContents(),
        id: page.url().split("/").pop(),
      };
    };
    const before = await run(false);
    const after = await run(true);
    await shot(page, "whatif-edited");
    return { before, after };
  },

  async whatif_yaml(page) {
    await signIn(page);
    await page.getByRole("link", { name: "What-if", exact: true }).click();
    await page.locator("#whatif-form").waitFor();
    for (const p of ["first-fit", "cheapest", "greenest", "suanwang"]) await page.locator(`input[name=policy][value="${p}"]`).uncheck();
    await page.getByLabel("Jobs").fill(String(args.jobs));
    await page.getByLabel("Arrival days").fill("0.5");
    await page.getByText("Edit the scenario").click();
    await page.getByText("Or edit the whole scenario as YAML").click();
    await page.getByRole("button", { name: "Load the YAML of this scenario" }).click();
    const box = page.getByLabel("Scenario YAML");
    await page.waitForFunction(() => document.querySelector("#scenario-yaml").value.includes("centers:"));
    const original = await box.inputValue();
    // an impossible PUE on the first center: refused, the line selected in the box
    await box.fill(original.replace(/pue: [0-9.]+/, "pue: 0.5"));
    await page.locator("#run-whatif").click();
    await page.locator("#whatif-error [role=alert]").waitFor();
    const refused = await page.locator("#whatif-error").textContent();
    const selected = await box.evaluate((el) => el.value.substring(el.selectionStart, el.selectionEnd));
    await box.screenshot({ path: path.join(out, "whatif-yaml-refused.png") });
    await box.fill(original.replace(/pue: [0-9.]+/g, "pue: 2.5"));
    await page.locator("#run-whatif").click();
    await page.locator("#whatif-table").waitFor({ timeout: 180_000 });
    return {
      refused, selected,
      heading: await page.locator("#whatif-result h2").textContent(),
      changes: await page.locator("#whatif-changes li").allTextContents(),
      energy: await page.locator('#whatif-table tr[data-policy="nearest"] td[data-metric="energy_kwh"]').textContent(),
      id: page.url().split("/").pop(),
    };
  },

  async edit_app(page) {
    await signIn(page);
    // a built-in app: nothing to manage
    await page.goto(`${args.url}/#/apps/render-3d`);
    await page.locator("#app-form").waitFor();
    const builtinManage = await page.locator("#manage-app").count();
    await page.goto(`${args.url}/#/apps/${args.id}`);
    await page.locator("#manage-app").waitFor();
    await page.getByText("Edit", { exact: true }).click();
    // a broken edit is refused with the server's reason
    await page.getByLabel("App (JSON)").fill(JSON.stringify({ ...args.changed, id: "renamed-app" }));
    await page.getByRole("button", { name: "Save changes" }).click();
    await page.locator("#manage-error [role=alert]").waitFor();
    const refused = await page.locator("#manage-error").textContent();
    await page.getByLabel("App (JSON)").fill(JSON.stringify(args.changed));
    await page.getByRole("button", { name: "Save changes" }).click();
    await page.waitForFunction((name) => document.querySelector("h1")?.textContent === name, args.changed.name);
    const title = await page.locator("h1").textContent();
    const fields = await page.locator("#app-form [data-field^='parameters.']").count();
    await shot(page, "app-edited");
    page.once("dialog", (d) => d.accept());
    await page.getByRole("button", { name: "Delete app" }).click();
    await page.waitForURL(/#\/apps$/);
    await page.locator("#app-cards").waitFor();
    const cards = await page.locator("#app-cards [data-app]").evaluateAll((els) => els.map((e) => e.dataset.app));
    return { builtinManage, refused, title, fields, cards };
  },

  async settlement(page) {
    await signIn(page);
    await page.getByRole("link", { name: "Billing" }).click();
    await page.locator("#settlement-providers").waitFor();
    const result = {
      text: await page.locator("#settlement").textContent(),
      totals: await page.locator("#settlement-totals").textContent(),
      providers: await page.locator("#settlement-providers tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.provider)),
      widths: await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]),
      panel: await page.locator("#settlement").boundingBox(),
    };
    await shot(page, "settlement");
    return result;
  },

  // Keys, one's own (args.key, a fresh tenant's): a refused expiry next to its field; a
  // read-only key created, its secret shown once (copied), gone once the page is left; rotated
  // (an overlap too long refused, then one hour); the successor revoked; then the console's
  // own key rotated (the console switches to its successor), then revoked: the console signs
  // out saying so.
  async keys_own(page) {
    await page.context().grantPermissions(["clipboard-read", "clipboard-write"], { origin: args.url });
    const dialogs = [];
    page.on("dialog", (d) => { dialogs.push(d.message()); d.accept(); });
    await openKeys(page);
    const consoleKey = await page.locator("#console-key").textContent();
    const pickers = await page.locator("#keys-tenant").count();
    await page.locator("#key-name").fill("dashboard");
    await page.locator("#key-read-only").check();
    const [expiryError, secret] = await refusedThenMade(page, "#key-expires", "#create-key", "2020-01-01T00:00", "2099-01-01T12:00");
    const warning = await page.locator("#secret-warning").textContent();
    const fieldErrors = await page.locator("#key-create .field-error").count();
    await page.locator("#copy-secret").click();
    await page.locator("#copy-status:not(:empty)").waitFor();
    const clipboard = await page.evaluate(() => navigator.clipboard.readText());
    await shot(page, "keys-created");
    const prefix = secret.slice(0, 11);
    const row = page.locator(`#keys-table tr[data-prefix="${prefix}"]`);
    await row.waitFor();
    const created = { name: await row.locator("td[data-col=name]").textContent(), access: await row.locator("td[data-col=access]").textContent(),
      expires: await row.locator("td[data-col=expires]").textContent() };
    // away and back: the secret is not shown again
    await page.getByRole("link", { name: "Jobs", exact: true }).click();
    await page.locator("#jobs-table, .empty").first().waitFor();
    await page.getByRole("link", { name: "Keys", exact: true }).click();
    await row.waitFor();
    const secretAgain = (await page.locator("main").innerHTML()).includes(secret);
    const secretPanels = await page.locator("#secret-panel").count();
    // rotate: an overlap over a day refused next to its field, then one hour
    await row.locator("button[data-action=rotate]").click();
    const [overlapError, successor] = await refusedThenMade(page, "#rotate-overlap", "#rotate-key", "90000", "3600");
    const rotated = await page.locator("#keys-msg").textContent();
    await page.locator(`#keys-table tr[data-prefix="${successor.slice(0, 11)}"]`).waitFor();
    const oldState = await row.getAttribute("data-state");
    await shot(page, "keys-rotated");
    // revoke the successor
    const next = page.locator(`#keys-table tr[data-prefix="${successor.slice(0, 11)}"]`);
    await next.locator("button[data-action=revoke]").click();
    await page.waitForFunction((p) => document.querySelector(`#keys-table tr[data-prefix="${p}"]`)?.dataset.state === "revoked", successor.slice(0, 11));
    const revoked = await page.locator("#keys-msg").textContent();
    const revokeButtons = await next.locator("button").count();
    // rotate the console's own key (no overlap): the console carries on with its successor
    let own = page.locator("#keys-table tr:has([data-col=this-console])");
    const firstOwn = await own.getAttribute("data-prefix");
    await own.locator("button[data-action=rotate]").click();
    await page.locator("#rotate-key").click();
    await page.waitForFunction((p) => document.querySelector(`#keys-table tr[data-prefix="${p}"]`)?.dataset.state === "revoked", firstOwn);
    const switched = await page.locator("#secret-panel").textContent();
    own = page.locator("#keys-table tr:has([data-col=this-console])");
    const ownPrefix = await own.getAttribute("data-prefix");
    const consoleKeyAfter = await page.locator("#console-key").textContent();
    // revoke the console's own key: signed out, saying why
    await own.locator("button[data-action=revoke]").click();
    await page.locator("#sign-in").waitFor();
    const signedOut = await page.locator("main [role=alert]").textContent();
    return { console_key: consoleKey, pickers, expiry_error: expiryError, secret, warning, field_errors: fieldErrors,
      clipboard, created, secret_again: secretAgain, secret_panels: secretPanels, overlap_error: overlapError,
      successor, rotated, old_state: oldState, revoked, revoke_buttons: revokeButtons, first_own: firstOwn, switched,
      own_prefix: ownPrefix, console_key_after: consoleKeyAfter,
      signed_out: signedOut, nav_hidden: await page.locator("#nav").isHidden(), dialogs };
  },

  // Keys with a read-only key (args.key): the page says so, and creating is refused, saying why.
  async keys_read_only(page) {
    await openKeys(page);
    const consoleKey = await page.locator("#console-key").textContent();
    const access = await page.locator("#console-key-access").textContent();
    await page.locator("#key-name").fill("another");
    await page.locator("#create-key").click();
    await page.locator("#key-create-error [role=alert]").waitFor();
    const refused = await page.locator("#key-create-error").textContent();
    await shot(page, "keys-read-only");
    return { console_key: consoleKey, access, refused, rows: await page.locator("#keys-table tbody tr").count(),
      secret_panels: await page.locator("#secret-panel").count() };
  },

  // Keys as an operator: another tenant's (args.tenant) listed, a key created for it and one of
  // its keys (args.revoke) revoked; an unknown tenant named.
  async keys_operator(page) {
    page.on("dialog", (d) => d.accept());
    await signIn(page);
    await page.getByRole("link", { name: "Keys", exact: true }).click();
    await page.locator("#keys-tenant").fill("atlantis-" + args.tenant);
    await page.locator("#show-tenant-keys").click();
    await page.locator("#keys-table [role=alert]").waitFor();
    const unknown = await page.locator("#keys-table").textContent();
    const createHidden = await page.locator("#create-panel").isHidden();
    await page.locator("#keys-tenant").fill(args.tenant);
    await page.locator("#show-tenant-keys").click();
    await page.locator(`#keys-table tr[data-prefix="${args.revoke}"]`).waitFor();
    const title = await page.locator("#keys-table").locator("xpath=..").locator("h2").textContent();
    const before = await page.locator("#keys-table tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.prefix));
    await page.locator("#key-name").fill("made-by-operator");
    await page.locator("#create-key").click();
    await page.locator("#secret-panel").waitFor();
    const secret = await page.locator("#new-secret-value").inputValue();
    await page.locator(`#keys-table tr[data-prefix="${secret.slice(0, 11)}"]`).waitFor();
    await page.locator(`#keys-table tr[data-prefix="${args.revoke}"] button[data-action=revoke]`).click();
    await page.waitForFunction((p) => document.querySelector(`#keys-table tr[data-prefix="${p}"]`)?.dataset.state === "revoked", args.revoke);
    await shot(page, "keys-operator");
    return { unknown, create_hidden: createHidden, title, before, secret, hash: await page.evaluate(() => location.hash),
      revoked: await page.locator("#keys-msg").textContent(), nav_hidden: await page.locator("#nav").isHidden() };
  },

  // Keys as a consumer (args.key) asking for another tenant's (args.tenant): refused, nothing
  // of it shown, no tenant picker.
  async keys_consumer(page) {
    await openKeys(page);
    const own = await page.locator("#keys-table tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.prefix));
    await page.goto(`${args.url}/#/keys?tenant=${encodeURIComponent(args.tenant)}`);
    await page.locator("#keys-table [role=alert]").waitFor();
    return { own, pickers: await page.locator("#keys-tenant").count(), refused: await page.locator("#keys-table").textContent(),
      main: await page.locator("main").innerHTML() };
  },

  async billing(page) {
    await signIn(page);
    await page.getByRole("link", { name: "Billing" }).click();
    await page.locator("#balance, #billing-unavailable").first().waitFor();
    if (await page.locator("#billing-unavailable").count()) {
      await shot(page, "billing");
      return { unavailable: true, text: await page.locator("main").textContent() };
    }
    const prepaid = await page.locator("#balance-prepaid").textContent();
    const trial = await page.locator("#balance-trial").textContent();
    const months = await page.locator("#invoice-list tbody tr").count();
    await shot(page, "billing");
    await page.locator(`#invoice-list tr[data-period="${args.period}"] a`).click();
    await page.locator("#invoice-title").waitFor();
    const lines = await page.locator("#invoice-lines tbody tr").count();
    const result = {
      unavailable: false, prepaid, trial, months, lines,
      job_tokens: await page.locator('#invoice-lines td[data-col="tokens"]').evaluateAll(
        (tds) => tds.map((td) => td.textContent).find((t) => t !== "–") ?? null),
      title: await page.locator("#invoice-title").textContent(),
      total: await page.locator("#invoice-total").textContent(),
      text: await page.locator("main").textContent(),
    };
    await shot(page, "invoice");
    return result;
  },
};

const run = scenarios[scenario];
if (!run) {
  console.error(`unknown scenario ${scenario}; known: ${Object.keys(scenarios).join(", ")}`);
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage"],
});
const context = await browser.newContext({ viewport: args.viewport || { width: 1366, height: 860 } });
const page = await context.newPage();
const consoleErrors = [];
page.on("pageerror", (e) => consoleErrors.push(String(e)));
page.on("request", (r) => {  // offline-first: nothing but the server itself is asked
  if (!r.url().startsWith(args.url) && !r.url().startsWith("data:")) consoleErrors.push(`request outside the server: ${r.url()}`);
});
page.setDefaultTimeout(20_000);
let code = 0;
try {
  const result = await run(page);
  result.page_errors = consoleErrors;
  process.stdout.write(JSON.stringify(result) + "\n");
} catch (e) {
  code = 1;
  console.error(`${scenario}: ${e.stack || e}`);
  if (consoleErrors.length) console.error(`page errors: ${consoleErrors.join("\n")}`);
  try { await shot(page, `failed-${scenario}`); } catch (e2) { /* browser gone */ }
} finally {
  await browser.close();
}
process.exit(code);
