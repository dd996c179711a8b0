// Quarantine: the readings refused on arrival, filtered and found; one reading's story and its review; many decided
// at once, by selection or by walking a filter with the API's cursor (resumable after an error or a closed tab).
import { api } from "../api.js";
import { tenantClaim, whoIsSignedIn } from "../auth.js";
import { announce, badge, count, field, h, localToRfc3339, show, table, time } from "../dom.js";
import {
  errorMessage, explainedError, filterForm, hashFor, markInvalid, message, pager, paramsOf, systemLabel, systemNames, systemOptions,
} from "../ui.js";

const REASONS = ["invalid_unit", "out_of_range", "low_quality", "invalid_timestamp", "system_not_found", "duplicate", "parse_error"];
const STATUSES = ["pending", "approved", "rejected", "fixed"];
const UNITS = ["bar", "celsius", "lpm", "rpm"];
const PAGE_SIZE = 50;
// Rows per bulk request: small enough that each answer comes back in seconds and progress moves; the API allows 500.
const WALK_STEP = 100;
const WALK_STEP_MAX = 500;
// The filters a bulk review's filter takes (review_status is not one: a walk chooses pending rows only).
const SELECTION = ["job_id", "reason", "system_id", "sensor_id"];
const PAST = { approve: "approved", reject: "rejected", fix: "fixed" };
// The refusals a review expects, in the page's words (the API's own follow, with its details).
const REVIEW_REFUSALS = {
  not_pending: ["Someone decided this reading first.", "A reading is decided once: their decision stands. Show it below."],
  reading_invalid: ["The reading still breaks a rule.", "It stays pending: correct what the rule names, or reject it."],
  duplicate_reading: ["This reading is in readings already.", "It stays pending: reject it, or fix its timestamp."],
};
// Failed rows kept for the summary of a walk (their count by code is kept whatever the number).
const FAILURES_KEPT = 50;

// The walk running in this tab (at most one), kept across page changes so coming back shows its progress.
let walk = null;
// The last list the person looked at, for the way back from one reading.
let lastList = "#/quarantine";

export async function render(main, route, context) {
  if (route.id) return renderReading(main, route.id, context);
  lastList = route.hash || "#/quarantine";
  const params = paramsOf(route);
  const names = await systemNames(api);
  if (!context.isCurrent()) return;
  const form = filterForm("quarantine", [
    field("q-reason", "Reason", "select", params.reason, {
      name: "reason", choices: [["", "Any reason"], ...REASONS.map((r) => [r, words(r)])],
    }),
    field("q-status", "Review status", "select", params.review_status, {
      name: "review_status", choices: [["", "Any status"], ...STATUSES.map((s) => [s, s])],
    }),
    field("q-system", "System", "text", params.system_id, { name: "system_id", list: "q-systems", placeholder: "system id", wide: true }),
    systemOptions("q-systems", names),
    field("q-job", "Job", "text", params.job_id, { name: "job_id", placeholder: "job id", wide: true }),
    field("q-sensor", "Sensor", "text", params.sensor_id, { name: "sensor_id", placeholder: "sensor id", wide: true }),
  ]);
  // A walk of this tab shows its progress here, for the person (and tenant) who started it only.
  if (walk && !walk.running && walk.key !== storageKey()) walk = null;
  const progress = walk && walk.key === storageKey() ? walk.panel : null;
  show(main, h("h1", {}, "Quarantine"), resumeOffer(main, route, context), progress, form,
    h("p", { class: "loading" }, "Loading quarantined readings…"));
  let page;
  try {
    page = await api("GET", "/api/v1/quarantine", { query: { ...params, limit: PAGE_SIZE, include_total: "true" } });
  } catch (error) {
    if (context.isCurrent()) main.lastChild.replaceWith(errorMessage(error));
    return;
  }
  if (!context.isCurrent()) return;
  main.lastChild.replaceWith(listing(main, route, context, params, page, names));
}

function words(text) {
  return String(text).replace(/_/g, " ");
}

/** The list with its selection and bulk actions. */
function listing(main, route, context, params, page, names) {
  const selected = new Set();
  const pending = page.items.filter((row) => row.review_status === "pending");
  const boxes = [];
  const all = h("input", {
    type: "checkbox", id: "q-select-all", "aria-label": "Select every pending reading on this page", disabled: !pending.length,
    onchange: () => {
      for (const box of boxes) {
        box.checked = all.checked;
        if (all.checked) selected.add(Number(box.value));
        else selected.delete(Number(box.value));
      }
      update();
    },
  });
  const checkbox = (row) => {
    if (row.review_status !== "pending") return h("span", { class: "hint", title: "Only pending readings can be decided" }, "–");
    const box = h("input", {
      type: "checkbox", class: "q-select", value: row.id, "aria-label": `Select reading ${row.id}`,
      onchange: () => {
        if (box.checked) selected.add(row.id);
        else selected.delete(row.id);
        all.checked = selected.size === boxes.length;
        update();
      },
    });
    boxes.push(box);
    return box;
  };
  const rows = table(
    page.total == null ? "Quarantined readings, newest first" : `${count(page.total)} quarantined readings match, newest first`,
    [
      [all, checkbox],
      // When it was quarantined is in its history (and the list's order): the reading's own time is what a review needs.
      ["Reading", (row) => h("a", { href: `#/quarantine/${row.id}`, title: `Quarantined ${new Date(row.quarantined_at).toLocaleString()}` }, `#${row.id}`)],
      ["Reason", (row) => [badge(row.reason), " ", h("span", { class: "q-why" }, row.reason_details?.message || "")]],
      ["Review", (row) => badge(row.review_status)],
      ["Sensor", (row) => (row.sensor_id
        ? h("a", { href: hashFor("quarantine", { sensor_id: row.sensor_id }), title: `${row.sensor_id}: all of this sensor's` }, h("code", {}, row.sensor_id.slice(0, 8)))
        : "–")],
      ["Value", (row) => (row.value === null ? "–" : `${row.value}${row.unit ? ` ${row.unit}` : ""}`), { numeric: true }],
      ["Timestamp", (row) => time(row.timestamp)],
      ["System", (row) => systemLabel(names, row.system_id)],
      ["Job", (row) => h("a", { href: hashFor("quarantine", { job_id: row.job_id }), title: row.job_id }, h("code", {}, row.job_id.slice(0, 8)))],
    ],
    page.items,
    "No quarantined readings match these filters.",
  );

  const outcome = h("div", { id: "bulk-outcome", "aria-live": "polite" });
  const notes = field("bulk-notes", "Note for the selected readings (kept on each)", "textarea", "", {
    name: "notes", wide: true, hint: "Say why, especially when rejecting.",
  });
  const chosen = h("span", { id: "bulk-selected", class: "hint" }, "No reading selected.");
  const approveSelected = h("button", { type: "button", id: "bulk-approve", disabled: true, onclick: () => decideSelected("approve") }, "Approve selected");
  const rejectSelected = h("button", { type: "button", id: "bulk-reject", class: "danger", disabled: true, onclick: () => decideSelected("reject") }, "Reject selected");
  const matchingOk = !params.review_status || params.review_status === "pending";
  const matching = ["approve", "reject"].map((action) => h("button", {
    type: "button", class: "secondary", id: `bulk-${action}-all`, disabled: !matchingOk || !page.items.length || Boolean(walk?.running),
    onclick: () => confirmWalk(main, route, context, params, action, notes.querySelector("textarea").value),
  }, `${action === "approve" ? "Approve" : "Reject"} all ${params.review_status === "pending" && page.total != null ? `${count(page.total)} ` : ""}matching…`));

  function update() {
    chosen.textContent = selected.size ? `${count(selected.size)} selected on this page.` : "No reading selected.";
    approveSelected.disabled = rejectSelected.disabled = !selected.size;
  }

  async function decideSelected(action) {
    const ids = [...selected];
    approveSelected.disabled = rejectSelected.disabled = true;
    show(outcome, h("p", { class: "loading" }, `${action === "approve" ? "Approving" : "Rejecting"} ${count(ids.length)} readings…`));
    const text = notes.querySelector("textarea").value.trim();
    try {
      const result = await api("POST", "/api/v1/quarantine/review", { body: { action, ids, ...(text ? { notes: text } : {}) } });
      const box = outcomeSummary(action, result);
      if (!context.isCurrent()) return;
      // Redraw the list (the decided rows change status) and show what happened above it.
      await render(main, route, context);
      if (!context.isCurrent()) return;
      const fresh = document.getElementById("bulk-outcome");
      if (fresh) {
        show(fresh, box);
        // The button pressed is gone with the old list: the outcome takes the focus.
        box.tabIndex = -1;
        box.focus();
      }
      announce(`${count(result.reviewed)} ${PAST[action]}, ${count(result.failed)} failed.`);
    } catch (error) {
      show(outcome, errorMessage(error));
      announce("The bulk review was refused.");
      update();
    }
  }

  const bulk = h("section", { class: "panel bulk", "aria-labelledby": "bulk-heading" },
    h("h2", { id: "bulk-heading" }, "Decide many"),
    h("div", { class: "actions" }, chosen),
    notes,
    h("div", { class: "actions" }, approveSelected, rejectSelected),
    h("div", { class: "actions" }, matching,
      h("span", { class: "hint" }, matchingOk
        ? "All matching: every pending reading this filter selects, on every page; you confirm the number first."
        : "Only pending readings can be decided: choose the status Pending or Any to decide all matching.")));
  // The actions follow the rows: select, then act (and Tab reaches them from the last checkbox).
  return h("div", { id: "quarantine-list" }, outcome, rows, page.items.length ? bulk : null,
    pager("quarantine", params, page.next_cursor, page.items.length, "readings"));
}

/** A bulk answer's outcome, row by row for those that failed. */
function outcomeSummary(action, result) {
  const lines = [`${count(result.reviewed)} ${PAST[action]}; ${count(result.failed)} failed.`];
  for (const row of result.results.filter((r) => r.error)) lines.push(failureLine(row.id, row.error));
  const box = message(result.failed ? "error" : "success", result.failed ? "Some readings were not decided." : "Done.", lines);
  box.id = "bulk-summary";
  return box;
}

function failureLine(id, error) {
  const details = (error.details || []).map((d) => d.reason).filter(Boolean);
  return `Reading ${id}: ${error.code}: ${error.message}${details.length ? ` (${details.join("; ")})` : ""}`;
}

// ---------------------------------------------------------------------------------------------------------------
// All matching: the confirmation, the walk, its record in local storage and its resume.

/**
 * Where this person's unfinished walk is kept, for this tenant: a walk started in one tenant must never be resumed
 * in another (its filter could select rows there). The key holds the claim config.json names as the tenant's
 * (TenantClaim); a stack that names none has every claim whose name says "tenant" in the key instead.
 */
function storageKey() {
  const claims = whoIsSignedIn()?.claims || {};
  const named = tenantClaim();
  const names = named ? [named] : Object.keys(claims).filter((name) => /tenant/i.test(name)).sort();
  const tenant = names.map((name) => `${name}=${JSON.stringify(claims[name] ?? null)}`).join("&");
  return `sluice.bulkReview.${claims.iss || ""}|${claims.sub || ""}|${tenant}`;
}

function storedWalk() {
  try {
    const text = localStorage.getItem(storageKey());
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

function saveWalk(key, record) {
  localStorage.setItem(key, JSON.stringify(record));
}

function forgetWalk(key) {
  localStorage.removeItem(key);
}

function selectionOf(params) {
  return Object.fromEntries(SELECTION.filter((name) => params[name]).map((name) => [name, params[name]]));
}

function describeSelection(filter) {
  const parts = Object.entries(filter).map(([name, value]) => `${words(name)} ${name === "reason" ? words(value) : value}`);
  return parts.length ? parts.join(", ") : "no filter (every pending reading of the tenant)";
}

/** The offer to finish a walk that an error, a pause or a closed tab left unfinished. */
function resumeOffer(main, route, context) {
  const record = storedWalk();
  // A walk of this tab (running, paused or stopped) shows its own panel, with its own resume.
  if (!record || walk?.key === storageKey()) return null;
  return h("section", { class: "message info", id: "bulk-resume", role: "status" },
    h("h2", {}, "A bulk review was left unfinished."),
    h("p", {}, `${record.action === "approve" ? "Approve" : "Reject"} every pending reading matching ${describeSelection(record.filter)}`,
      ", started ", time(record.startedAt), `: ${count(record.tallies.reviewed)} ${PAST[record.action]} so far, `,
      `${count(record.tallies.failed)} failed. It goes on after the last reading it reached; none is decided twice.`),
    h("div", { class: "actions" },
      h("button", { type: "button", id: "bulk-resume-button", onclick: () => runWalk(main, route, context, record) },
        `Resume the bulk review (${count(record.tallies.reviewed)} done so far)`),
      h("button", { type: "button", class: "secondary", id: "bulk-discard",
        onclick: () => { forgetWalk(storageKey()); announce("The unfinished bulk review was discarded."); render(main, route, context); } },
      "Discard it")));
}

/** Ask how many pending readings the filter selects, then confirm the number in a dialog. */
async function confirmWalk(main, route, context, params, action, notes) {
  const filter = selectionOf(params);
  let pendingTotal;
  try {
    const answer = await api("GET", "/api/v1/quarantine", { query: { ...filter, review_status: "pending", limit: 1, include_total: "true" } });
    pendingTotal = answer.total;
  } catch (error) {
    show(document.getElementById("bulk-outcome"), errorMessage(error));
    return;
  }
  if (!context.isCurrent()) return;
  const verb = action === "approve" ? "Approve" : "Reject";
  const note = field("walk-notes", "Note (kept on each reading)", "textarea", notes, { name: "notes", wide: true });
  const step = field("walk-step", "Readings per request", "number", String(WALK_STEP), {
    name: "limit", hint: `1 to ${WALK_STEP_MAX}; each request's answer moves the progress bar.`,
  });
  step.querySelector("input").min = "1";
  step.querySelector("input").max = String(WALK_STEP_MAX);
  const confirm = h("button", { type: "submit", id: "walk-confirm", class: action === "reject" ? "danger" : null, disabled: !pendingTotal },
    `${verb} ${count(pendingTotal)} readings`);
  const dialog = h("dialog", { id: "walk-dialog", "aria-labelledby": "walk-heading" },
    h("form", { method: "dialog" },
      h("h2", { id: "walk-heading" }, `${verb} all ${count(pendingTotal)} pending readings matching this filter?`),
      h("p", { id: "walk-number" }, pendingTotal
        ? `${count(pendingTotal)} pending readings match ${describeSelection(filter)}.`
        : `No pending reading matches ${describeSelection(filter)}: there is nothing to decide.`),
      h("p", { class: "hint" }, "Only pending readings can be decided: readings already approved, rejected or fixed are left as they are. ",
        "Readings quarantined after you confirm are not included."),
      note,
      h("details", {}, h("summary", {}, "Request size"), step),
      h("div", { class: "actions" }, confirm, h("button", { type: "button", class: "secondary", id: "walk-cancel", onclick: () => dialog.close("cancel") }, "Cancel"))));
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (dialog.returnValue !== "confirm") return;
    const limit = Math.min(WALK_STEP_MAX, Math.max(1, Number.parseInt(step.querySelector("input").value, 10) || WALK_STEP));
    const text = note.querySelector("textarea").value.trim();
    const record = {
      action, filter, notes: text || null, limit, cursor: null, total: pendingTotal,
      startedAt: new Date().toISOString(), inFlight: false, lost: 0,
      tallies: { reviewed: 0, failed: 0, codes: {}, failures: [] },
    };
    runWalk(main, route, context, record);
  });
  confirm.value = "confirm";
  document.body.append(dialog);
  dialog.showModal();
}

/**
 * Walk the filter: POST a page of decisions, follow next_cursor until it is null. The record (filter, action, notes,
 * cursor, tallies) is stored before each request, so a closed tab or an error resumes at the cursor it was about to
 * send: the API chooses only pending readings after it, so a reading decided by a request whose answer was lost is
 * never chosen again.
 */
async function runWalk(main, route, context, record) {
  if (walk?.running) return;
  if (record.inFlight) {
    // The tab closed while a request was out: the readings it decided are decided, but not in the tallies.
    record.lost += 1;
    record.inFlight = false;
  }
  const progress = h("progress", { id: "walk-progress", max: record.total || 1, value: 0 });
  const status = h("p", { id: "walk-status", role: "status" });
  const pause = h("button", { type: "button", class: "secondary", id: "walk-pause", onclick: () => { walk.pauseAsked = true; pause.disabled = true; pause.textContent = "Pausing after this request…"; } }, "Pause");
  const panel = h("section", { class: "panel walk", id: "walk", tabindex: "-1", "aria-labelledby": "walk-title" },
    h("h2", { id: "walk-title" }, `${record.action === "approve" ? "Approving" : "Rejecting"} every pending reading matching ${describeSelection(record.filter)}`),
    progress, status, h("div", { class: "actions" }, pause));
  // The walk belongs to who started it: a sign-in as someone else in this tab (a new link) stops it.
  const key = storageKey();
  walk = { running: true, pauseAsked: false, panel, key };
  const offer = document.getElementById("bulk-resume");
  if (offer) offer.replaceWith(panel);
  else if (main.querySelector("h1")) main.querySelector("h1").after(panel);
  for (const button of document.querySelectorAll("#bulk-approve-all, #bulk-reject-all")) button.disabled = true;
  // The person confirmed from the foot of the list: bring the progress to them.
  panel.scrollIntoView({ block: "start" });
  panel.focus({ preventScroll: true });

  const tell = () => {
    const done = record.tallies.reviewed + record.tallies.failed;
    progress.value = Math.min(done, progress.max);
    status.textContent = `${count(record.tallies.reviewed)} ${PAST[record.action]}, ${count(record.tallies.failed)} failed`
      + (record.total ? ` of ${count(record.total)} readings.` : ".");
  };
  tell();
  announce("The bulk review started.");
  let ending = null;
  for (;;) {
    if (storageKey() !== key) {
      ending = { switched: true };
      break;
    }
    record.inFlight = true;
    saveWalk(key, record);
    let result;
    try {
      result = await api("POST", "/api/v1/quarantine/review", {
        body: { action: record.action, filter: record.filter, limit: record.limit, ...(record.notes ? { notes: record.notes } : {}), ...(record.cursor ? { cursor: record.cursor } : {}) },
      });
    } catch (error) {
      if (error.status === 429 && error.retryAfter && Number(error.retryAfter) <= 60 && !walk.pauseAsked) {
        // Refused before any row was touched: wait as the API asks, then send the same request again.
        record.inFlight = false;
        saveWalk(key, record);
        status.textContent = `The API asks to wait ${error.retryAfter} s (its rate limit); the walk goes on after that.`;
        await new Promise((resolve) => setTimeout(resolve, Number(error.retryAfter) * 1000));
        continue;
      }
      // No answer (status 0) may mean the API did the work: the stored cursor resumes safely either way, and the
      // readings that request decided are not chosen again (nor counted).
      if (error.status === 0) record.lost += 1;
      record.inFlight = false;
      saveWalk(key, record);
      ending = { error };
      break;
    }
    record.inFlight = false;
    const paused = countOutcomes(record, result);
    record.cursor = result.next_cursor;
    tell();
    if (paused) {
      saveWalk(key, record);
      ending = { unavailable: paused };
      break;
    }
    if (!record.cursor) {
      // Done: rows a lost answer decided never reached the count, yet nothing is left to walk.
      progress.value = progress.max;
      forgetWalk(key);
      ending = { finished: true };
      break;
    }
    saveWalk(key, record);
    if (walk.pauseAsked) {
      ending = { paused: true };
      break;
    }
  }
  walk.running = false;
  pause.remove();
  panel.append(walkSummary(record, ending));
  announce(ending.finished ? "The bulk review is finished." : "The bulk review stopped; it can be resumed.");
  if (!ending.finished) {
    panel.append(h("div", { class: "actions" },
      h("button", { type: "button", id: "walk-resume", onclick: () => { walk = null; panel.remove(); if (storageKey() === key) runWalk(main, route, context, storedWalk() || record); } },
        `Resume the bulk review (${count(record.tallies.reviewed)} done so far)`)));
  } else {
    panel.append(h("p", {}, h("button", { type: "button", class: "secondary", id: "walk-done",
      onclick: () => { walk = null; if (context.isCurrent()) render(main, route, context); else panel.remove(); } }, "Show the list again")));
  }
}

/** Add one answer's outcomes to the tallies; the number of readings the database could not reach (to send again). */
function countOutcomes(record, result) {
  const tallies = record.tallies;
  let unavailable = 0;
  for (const row of result.results) {
    if (!row.error) {
      tallies.reviewed += 1;
    } else if (row.error.code === "storage_unavailable") {
      // Not reviewed and not passed: next_cursor resumes at the first of these.
      unavailable += 1;
    } else {
      tallies.failed += 1;
      tallies.codes[row.error.code] = (tallies.codes[row.error.code] || 0) + 1;
      if (tallies.failures.length < FAILURES_KEPT) tallies.failures.push({ id: row.id, line: failureLine(row.id, row.error) });
    }
  }
  return unavailable;
}

function walkSummary(record, ending) {
  const { tallies } = record;
  const lines = [`${count(tallies.reviewed)} ${PAST[record.action]}; ${count(tallies.failed)} failed.`];
  if (tallies.failed) lines.push("Readings that failed stay pending; the walk goes on past them.");
  for (const [code, number] of Object.entries(tallies.codes)) lines.push(`${count(number)} failed with ${code}.`);
  for (const failure of tallies.failures) lines.push(failure.line);
  if (tallies.failures.length < tallies.failed) lines.push(`… and ${count(tallies.failed - tallies.failures.length)} more.`);
  if (record.lost) {
    lines.push(`${count(record.lost)} request${record.lost > 1 ? "s" : ""} left without an answer: the readings decided by it are decided, `
      + "but not counted here. None was decided twice.");
  }
  const box = ending.finished
    ? message(tallies.failed ? "error" : "success", tallies.failed ? "The bulk review is finished; some readings were not decided." : "The bulk review is finished.", lines)
    : ending.paused || ending.switched
      ? message("info", ending.paused ? "The bulk review is paused." : "The bulk review stopped: someone else signed in here.", lines)
      : ending.unavailable
        ? message("error", "The database could not be reached part way.", [`${count(ending.unavailable)} readings were not reviewed; resume to send them again.`, ...lines])
        : h("div", {}, errorMessage(ending.error), message("info", "The bulk review stopped.", lines));
  box.id = "walk-summary";
  return box;
}

// ---------------------------------------------------------------------------------------------------------------
// One reading: as it arrived, why it was refused, its review history and its review.

async function renderReading(main, rowId, context) {
  show(main, h("p", {}, h("a", { href: lastList }, "← Quarantine list")), h("h1", {}, `Quarantined reading #${rowId}`),
    h("p", { class: "loading" }, "Loading the reading…"));
  const names = await systemNames(api);
  let row;
  try {
    row = await api("GET", `/api/v1/quarantine/${encodeURIComponent(rowId)}`);
  } catch (error) {
    if (context.isCurrent()) main.lastChild.replaceWith(errorMessage(error));
    return;
  }
  if (!context.isCurrent()) return;
  const body = h("div", { id: "reading" });
  main.lastChild.replaceWith(body);
  drawReading(body, row, names, context, null);
}

function drawReading(body, row, names, context, outcome) {
  const facts = [
    ["Review", badge(row.review_status)],
    ["Reason", [badge(row.reason), " ", row.reason_details?.message || ""]],
    ["Job", h("a", { href: hashFor("quarantine", { job_id: row.job_id }) }, h("code", {}, row.job_id))],
    ["Job record", h("a", { href: `#/jobs/${row.job_id}` }, "the job's counts")],
    ["Position", row.position === null ? "–" : count(row.position)],
    ["System", systemLabel(names, row.system_id)],
    ["Sensor", row.sensor_id ? h("code", {}, row.sensor_id) : "–"],
    ["Timestamp", time(row.timestamp)],
    ["Value", row.value === null ? "–" : String(row.value)],
    ["Unit", row.unit ?? "–"],
    ["Quality", row.quality === null ? "–" : String(row.quality)],
  ];
  // The rule's own order: which field, what was expected, what came (then anything else it said).
  const order = ["field", "expected", "got"];
  const details = Object.entries(row.reason_details || {}).filter(([name]) => name !== "message")
    .sort(([a], [b]) => (order.indexOf(a) + 1 || 99) - (order.indexOf(b) + 1 || 99));
  show(body,
    outcome,
    h("dl", { class: "facts panel", id: "reading-facts" }, facts.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)])),
    h("h2", {}, "As it arrived"),
    row.raw_bytes ? h("p", { class: "hint" }, `Cut: the whole was ${count(row.raw_bytes)} bytes, SHA-256 ${row.raw_sha256}. Its start:`) : null,
    h("pre", { class: "raw", id: "reading-raw" }, h("code", {}, typeof row.raw === "string" ? row.raw : JSON.stringify(row.raw, null, 2))),
    details.length ? h("h2", {}, "Why it was refused") : null,
    details.length ? h("dl", { class: "facts panel", id: "reading-why" }, details.map(([name, value]) =>
      [h("dt", {}, words(name)), h("dd", {}, typeof value === "string" ? value : JSON.stringify(value))])) : null,
    h("h2", {}, "Review history"),
    history(row),
    row.review_status === "pending" ? reviewForms(body, row, names, context) : null);
  if (outcome) {
    // The form just used is gone: the outcome takes the focus.
    outcome.tabIndex = -1;
    outcome.focus();
  }
}

function history(row) {
  const steps = [h("li", {}, time(row.quarantined_at), ` quarantined: ${words(row.reason)}`,
    row.reason_details?.message ? ` (${row.reason_details.message})` : "", ".")];
  if (row.review_status !== "pending") {
    steps.push(h("li", {}, time(row.reviewed_at), ` ${row.review_status} by `, h("strong", {}, row.reviewed_by || "–"), ".",
      row.review_notes ? h("blockquote", { class: "note", id: "reading-notes" }, row.review_notes) : null,
      row.review_correction ? h("p", { id: "reading-correction" }, "Corrected: ", corrected(row.review_correction), ".") : null));
  }
  return h("div", { class: "panel" }, h("ol", { class: "history", id: "reading-history" }, steps),
    row.review_status === "pending" ? h("p", { class: "hint" }, "Not reviewed yet: only a pending reading can be decided, once.") : null);
}

/** A fix's corrections as a person reads them: value, unit, then the timestamp in their time zone. */
function corrected(correction) {
  const parts = [];
  if (correction.value !== undefined) parts.push(`value ${correction.value}`);
  if (correction.unit !== undefined) parts.push(`unit ${correction.unit}`);
  if (correction.timestamp !== undefined) parts.push(["timestamp ", time(correction.timestamp)]);
  return parts.flatMap((part, index) => (index ? [", ", part] : [part]));
}

/** Approve, reject with a note, or fix value, unit or timestamp: each answer shown, the row drawn again. */
function reviewForms(body, row, names, context) {
  const notes = field("review-notes", "Note (kept with the review)", "textarea", "", { name: "notes", wide: true, hint: "Say why, especially when rejecting." });
  const value = field("fix-value", "Value", "number", row.value ?? "", { name: "value", step: "any" });
  const unit = field("fix-unit", "Unit", "select", UNITS.includes(row.unit) ? row.unit : "", {
    name: "unit", choices: [["", UNITS.includes(row.unit) ? "keep" : `keep (${row.unit ?? "none"})`], ...UNITS.map((u) => [u, u])],
  });
  const stamp = field("fix-timestamp", "Timestamp (your time zone)", "datetime-local", row.timestamp ? localSeconds(row.timestamp) : "", { name: "timestamp", step: "1" });
  const initial = { value: value.querySelector("input").value, unit: unit.querySelector("select").value, timestamp: stamp.querySelector("input").value };

  async function send(action, extra = {}) {
    const text = notes.querySelector("textarea").value.trim();
    for (const button of body.querySelectorAll(".review button")) button.disabled = true;
    try {
      const reviewed = await api("POST", `/api/v1/quarantine/${row.id}/review`, { body: { action, ...extra, ...(text ? { notes: text } : {}) } });
      if (!context.isCurrent()) return;
      drawReading(body, reviewed, names, context, message("success", `Reading #${row.id} ${PAST[action]}.`,
        [action === "reject" ? "It stays out of readings." : "It is stored in readings."]));
      announce(`Reading ${row.id} ${PAST[action]}.`);
    } catch (error) {
      if (!context.isCurrent()) return;
      const box = explainedError(error, REVIEW_REFUSALS);
      box.id = "review-error";
      if (error.code === "not_pending") {
        box.append(h("button", { type: "button", class: "secondary", id: "review-show-decision", onclick: () => reload(box) }, "Show the decision"));
      }
      if (action === "fix") markInvalid(body.querySelector("#fix-form"), error);
      show(body.querySelector("#review-outcome"), box);
      announce(`The review was refused: ${error.message}`);
      for (const button of body.querySelectorAll(".review button")) button.disabled = false;
    }
  }

  async function reload(box) {
    try {
      const now = await api("GET", `/api/v1/quarantine/${row.id}`);
      if (context.isCurrent()) drawReading(body, now, names, context, null);
    } catch (error) {
      if (context.isCurrent()) box.replaceWith(errorMessage(error));
    }
  }

  function fix(event) {
    event.preventDefault();
    const changes = {};
    const now = { value: value.querySelector("input").value, unit: unit.querySelector("select").value, timestamp: stamp.querySelector("input").value };
    if (now.value !== initial.value && now.value !== "") changes.value = Number(now.value);
    if (now.unit !== initial.unit && now.unit !== "") changes.unit = now.unit;
    if (now.timestamp !== initial.timestamp && now.timestamp !== "") changes.timestamp = localToRfc3339(now.timestamp);
    if (!Object.keys(changes).length) {
      show(body.querySelector("#review-outcome"), message("error", "Nothing to fix.", ["Change the value, the unit or the timestamp first."]));
      return;
    }
    send("fix", changes);
  }

  return h("section", { class: "panel review", "aria-labelledby": "review-heading" },
    h("h2", { id: "review-heading" }, "Review"),
    h("div", { id: "review-outcome", "aria-live": "polite" }),
    notes,
    h("div", { class: "actions" },
      h("button", { type: "button", id: "review-approve", onclick: () => send("approve") }, "Approve as it is"),
      h("button", { type: "button", id: "review-reject", class: "danger", onclick: () => send("reject") }, "Reject")),
    h("h3", { id: "fix-heading" }, "Fix and store it"),
    h("p", { class: "hint" }, "Change what was wrong; what you leave as it is is kept. The fixed reading is judged again."),
    h("form", { class: "filters fix", id: "fix-form", "aria-labelledby": "fix-heading", onsubmit: fix },
      value, unit, stamp,
      h("div", { class: "actions" }, h("button", { type: "submit", id: "review-fix" }, "Fix"))));
}

/** RFC 3339 as a datetime-local value with seconds, in the person's time zone. */
function localSeconds(iso) {
  const moment = new Date(iso);
  if (Number.isNaN(moment.getTime())) return "";
  return new Date(moment.getTime() - moment.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
}
