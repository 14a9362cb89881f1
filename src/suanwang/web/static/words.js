// suanwang console: what the API's codes mean, in plain words. Pure functions (no page, no
// fetch), so tests/console/test_console_words.py runs them with Node.js as they are.

// Why a pending job waits (decision.waiting, docs/governance.md "Live"): [short, long].
const WAITING = {
  "capacity": ["waiting for capacity",
    "Waiting for capacity: no pool this job may use has room for it now. It starts when a run ends there."],
  "quota used up": ["quota used up",
    "Waiting: its tenant's quota is used up. Its running jobs take its quota and what it may borrow from its cohort (or a cap on an accelerator family or hub is reached), and no idle capacity is left for it. It starts when some of them end or capacity frees up."],
  "waiting for its share": ["waiting for its share",
    "Waiting for its share: other jobs went first this round (a higher class, or tenants that used less of their entitlement lately). Its turn comes as they start or end."],
  "deferred for price": ["deferred for price",
    "Deferred for price: it waits for a cheaper or greener hour, within its deadline."],
};

/** A pending job's reason to wait in a few words (the jobs list), or null. */
export function waitingShort(reason) {
  if (!reason) return null;
  return (WAITING[reason] || [`waiting: ${reason}`])[0];
}

/** A pending job's reason to wait in a sentence (the job's page), or null. */
export function waitingText(reason) {
  if (!reason) return null;
  return (WAITING[reason] || [null, `Waiting: ${reason}.`])[1];
}

// Why a run was asked to checkpoint (a checkpoint_requested event's "why").
const CHECKPOINT_WHY = {
  preempted: "preempted",
  drain: "its center is drained",
  engine: "a better placement was found",
};

/**
 * An event's detail in words, or null when it has nothing to say beyond its fields. The
 * result: {text, by} with `by` the id of the job that preempted this one (to link), if any.
 */
export function eventText(detail) {
  const d = detail || {};
  if (d.event === "preempted") {
    return { text: "Preempted by job", by: d.by || null, after: ": stopped, placed again from the start" };
  }
  if (d.event === "checkpoint_requested") {
    if (d.why === "preempted") {
      return { text: "Checkpoint requested: preempted by job", by: d.by || null, after: " (it resumes where it is placed next)" };
    }
    const why = CHECKPOINT_WHY[d.why] || d.why;
    return { text: `Checkpoint requested${why ? ": " + why : ""}`, by: null, after: "" };
  }
  return null;
}

/** A short form of a job id ("3f2a9c1e…"). */
export function shortId(id) {
  return id && id.length > 12 ? `${id.slice(0, 8)}…` : id || "";
}

// The settings of a quota in the order the form shows them, with their labels.
export const SETTINGS = [
  ["cohort", "cohort"], ["quota_scu_per_h", "quota"], ["borrow_limit_scu_per_h", "borrow limit"],
  ["lend_limit_scu_per_h", "lend limit"], ["weight", "weight"], ["classes", "classes"],
  ["caps.families", "family caps"], ["caps.hubs", "hub caps"],
  ["budget_cny_per_month", "monthly budget"], ["max_spend_cny_per_h", "max spend per hour"],
];

// What a setting is when not given (PUT /v1/quotas/{tenant}): a created quota lists the others.
const DEFAULTS = {
  borrow_limit_scu_per_h: 0, lend_limit_scu_per_h: null, weight: 1,
  classes: ["urgent", "normal", "batch", "preemptible"], "caps.families": {}, "caps.hubs": {},
  budget_cny_per_month: null, max_spend_cny_per_h: null,
};

function get(settings, path) {
  return path.split(".").reduce((o, k) => (o && typeof o === "object" ? o[k] : undefined), settings);
}

/** A setting's value in words: null "all" for the lend limit, "none" for money and caps. */
export function settingText(path, value) {
  if (value === null || value === undefined) return path === "lend_limit_scu_per_h" ? "all its unused quota" : "none";
  if (Array.isArray(value)) return value.join(", ");
  if (typeof value === "object") {
    const kv = Object.entries(value);
    return kv.length ? kv.map(([k, v]) => `${k} ${v}`).join(", ") : "none";
  }
  return String(value);
}

/**
 * A recorded change (GET /v1/quotas/changes: before/after, null when created/removed) in
 * words: one "label: before → after" per setting that changed (created: each setting not at
 * its default; removed: what each such setting was).
 */
export function changeLines(before, after) {
  const out = [];
  for (const [path, label] of SETTINGS) {
    const a = before ? get(before, path) : undefined, b = after ? get(after, path) : undefined;
    if (before && after && JSON.stringify(a) === JSON.stringify(b)) continue;
    if (!before || !after) {  // created, or removed: what is not at its default
      const v = before ? a : b;
      if (path in DEFAULTS && JSON.stringify(v ?? null) === JSON.stringify(DEFAULTS[path])) continue;
      out.push(before ? `${label} was ${settingText(path, v)}` : `${label}: ${settingText(path, v)}`);
    } else out.push(`${label}: ${settingText(path, a)} → ${settingText(path, b)}`);
  }
  return out;
}
