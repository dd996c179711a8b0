// Alarms: what the tenant's alert rules raised, newest first, filtered by status, severity and system; one alarm with
// its history, and acknowledging it with a note (who and when are recorded by the API, from the token).
import { api } from "../api.js";
import { announce, badge, field, h, show, table, time } from "../dom.js";
import { explainedError, filterForm, message, pager, paramsOf, systemLabel, systemNames, systemOptions } from "../ui.js";

const STATUSES = ["active", "acknowledged", "cleared"];
const SEVERITIES = ["critical", "warning", "info"];
const PAGE_SIZE = 50;
// The refusals an acknowledgement expects, in the page's words; the API's own message (who, when) follows.
const REFUSALS = {
  not_active: ["This alarm is not active any more.", "Someone acknowledged it first, or it cleared: the alarm below is as it is now."],
  http_403: ["Your sign-in does not allow acknowledging alarms.", "Acknowledging needs the scope alerts:write; reading alarms needs alerts:read only."],
};
const EVENTS = { raised: "Raised", acknowledged: "Acknowledged", cleared: "Cleared" };

// The last list the person looked at, for the way back from one alarm (its filters and page kept).
let lastList = "#/alarms";

export async function render(main, route, context) {
  if (route.id) return renderAlarm(main, route.id, context);
  lastList = route.hash || "#/alarms";
  const params = paramsOf(route);
  // The systems' names and the page of alarms are read at the same time.
  const listing = api("GET", "/api/v1/alarms", { query: { ...params, limit: PAGE_SIZE } }).then(
    (page) => ({ page }),
    (error) => ({ error }),
  );
  const names = await systemNames(api);
  if (!context.isCurrent()) return;
  const form = filterForm("alarms", [
    field("alarms-status", "Status", "select", params.status, {
      name: "status", choices: [["", "Any status"], ...STATUSES.map((s) => [s, s])],
    }),
    field("alarms-severity", "Severity", "select", params.severity, {
      name: "severity", choices: [["", "Any severity"], ...SEVERITIES.map((s) => [s, s])],
    }),
    field("alarms-system", "System", "text", params.system_id, { name: "system_id", list: "alarms-systems", placeholder: "system id", wide: true }),
    systemOptions("alarms-systems", names),
  ]);
  show(main, h("h1", {}, "Alarms"), form, h("p", { class: "loading" }, "Loading alarms…"));
  const { page, error } = await listing;
  if (!context.isCurrent()) return;
  if (error) {
    main.lastChild.replaceWith(explainedError(error, {}));
    return;
  }
  main.lastChild.replaceWith(h("div", { id: "alarms-list" },
    table("Alarms, newest raised first", [
      ["Raised", (alarm) => h("a", { href: `#/alarms/${alarm.id}` }, time(alarm.raised_at))],
      ["Status", (alarm) => badge(alarm.status)],
      ["Severity", (alarm) => badge(alarm.severity)],
      ["Rule", (alarm) => alarm.rule_name],
      ["System", (alarm) => systemLabel(names, alarm.system_id)],
      ["Sensor", (alarm) => h("code", { title: alarm.sensor_id }, alarm.sensor_id.slice(0, 8))],
      ["Value", (alarm) => valueOf(alarm), { numeric: true }],
      ["Acknowledged by", (alarm) => alarm.acknowledged_by || "–"],
    ], page.items, "No alarms match these filters."),
    pager("alarms", params, page.next_cursor, page.items.length, "alarms")));
}

/** The minute average that raised a threshold alarm with its unit; a silence alarm has none. */
function valueOf(alarm) {
  if (alarm.value === null || alarm.value === undefined) return alarm.kind === "silent" ? "silent" : "–";
  return `${alarm.value}${alarm.unit ? ` ${alarm.unit}` : ""}`;
}

function words(text) {
  return String(text).replace(/_/g, " ");
}

async function renderAlarm(main, alarmId, context) {
  show(main, h("p", {}, h("a", { href: lastList }, "← Alarms")), h("h1", {}, "Alarm"), h("p", { class: "loading" }, "Loading the alarm…"));
  const reading = api("GET", `/api/v1/alarms/${encodeURIComponent(alarmId)}`).then((alarm) => ({ alarm }), (error) => ({ error }));
  const names = await systemNames(api);
  const { alarm, error } = await reading;
  if (!context.isCurrent()) return;
  if (error) {
    main.lastChild.replaceWith(explainedError(error, {}));
    return;
  }
  const heading = main.querySelector("h1");
  const body = h("div", { id: "alarm" });
  const outcome = h("div", { id: "acknowledge-outcome" });
  const draw = (shown) => {
    heading.textContent = `${shown.rule_name}: ${shown.status}`;
    show(body,
      h("div", { class: "panel" }, alarmFacts(shown, names)),
      shown.status === "active" ? acknowledgeForm(shown, outcome, draw) : null,
      outcome,
      h("section", { class: "panel", "aria-labelledby": "history-heading" },
        h("h2", { id: "history-heading", class: "form-title" }, "History"),
        history(shown.history)));
  };
  draw(alarm);
  main.lastChild.replaceWith(body);
}

function alarmFacts(alarm, names) {
  const facts = [
    ["Status", badge(alarm.status)],
    ["Severity", badge(alarm.severity)],
    ["Rule", alarm.rule_id ? [alarm.rule_name, " (", alarm.kind, ")"] : [alarm.rule_name, " (", alarm.kind, ", rule deleted)"]],
    ["System", systemLabel(names, alarm.system_id)],
    ["Sensor", h("code", {}, alarm.sensor_id)],
    ["Value", valueOf(alarm)],
    ["Trigger time", time(alarm.trigger_time)],
    ["Raised", time(alarm.raised_at)],
    alarm.acknowledged_at ? ["Acknowledged", [alarm.acknowledged_by, ", ", time(alarm.acknowledged_at)]] : null,
    alarm.acknowledge_note ? ["Note", h("blockquote", { class: "note" }, alarm.acknowledge_note)] : null,
    alarm.cleared_at ? ["Cleared", [time(alarm.cleared_at), alarm.cleared_reason ? ` (${words(alarm.cleared_reason)})` : ""]] : null,
    alarm.cleared_time ? ["Cleared by data of", time(alarm.cleared_time)] : null,
  ].filter(Boolean);
  return h("dl", { class: "facts", id: "alarm-facts" }, facts.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

/** The alarm's life, oldest first: who (the evaluator when no one) did what, when, and what it saw. */
function history(entries) {
  if (!entries?.length) return h("p", { class: "hint" }, "No history recorded.");
  return h("ol", { class: "history", id: "alarm-history" }, entries.map((entry) => h("li", {},
    h("strong", {}, EVENTS[entry.event] || entry.event), " ", time(entry.at), " by ", entry.actor || "the evaluator",
    detailOf(entry.detail),
    entry.note ? h("blockquote", { class: "note" }, entry.note) : null)));
}

/** What the evaluator saw (``{"trigger_time", "value"}``, ``{"cleared_time", "value", "reason"}``), in words. */
function detailOf(detail) {
  const pairs = Object.entries(detail || {}).filter(([, value]) => value !== null && value !== undefined);
  if (!pairs.length) return null;
  const shown = pairs.map(([name, value]) => [
    words(name), " ",
    name.endsWith("_time") ? time(value) : typeof value === "object" ? JSON.stringify(value) : words(value),
  ]);
  return h("span", { class: "hint" }, " (", shown.flatMap((pair, index) => (index ? [", ", pair] : [pair])), ")");
}

function acknowledgeForm(alarm, outcome, draw) {
  const form = h("form", { class: "filters panel", id: "acknowledge-form", "aria-labelledby": "acknowledge-heading", novalidate: true },
    h("h2", { id: "acknowledge-heading", class: "form-title" }, "Acknowledge"),
    h("p", { class: "hint form-title" }, "Say you have seen it: your name and the time are recorded. It stays open until its condition clears."),
    field("acknowledge-note", "Note (optional)", "textarea", "", { name: "note", wide: true, hint: "What you did or will do; up to 2000 characters." }),
    h("div", { class: "actions" }, h("button", { type: "submit", id: "acknowledge-submit" }, "Acknowledge")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const note = form.elements.note.value.trim();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const acknowledged = await api("POST", `/api/v1/alarms/${encodeURIComponent(alarm.id)}/acknowledge`, { body: note ? { note } : {} });
      // The answer has no history: the alarm is read again to show the new entry with the rest.
      const fresh = await api("GET", `/api/v1/alarms/${encodeURIComponent(alarm.id)}`).catch(() => ({ ...alarm, ...acknowledged }));
      draw(fresh);
      const box = message("success", "Acknowledged.", [`Recorded as acknowledged by ${fresh.acknowledged_by} at ${new Date(fresh.acknowledged_at).toLocaleString()}.`]);
      show(outcome, box);
      box.tabIndex = -1;
      box.focus();
      announce("The alarm is acknowledged.");
    } catch (error) {
      const box = explainedError(error, explanationsFor(error));
      show(outcome, box);
      announce(`Not acknowledged: ${error.message}`);
      if (error.code === "not_active") {
        // Show the alarm as it is now (who acknowledged it, or why it cleared); the refusal stays above its history.
        try {
          draw(await api("GET", `/api/v1/alarms/${encodeURIComponent(alarm.id)}`));
        } catch {
          // The refusal already says what happened; the older view stays.
        }
      } else {
        button.disabled = false;
      }
    }
  });
  return form;
}

/** The page's words for a refusal: API Gateway's 403 carries no code of Sluice's, so it is keyed by status. */
function explanationsFor(error) {
  return error.status === 403 ? { [error.code]: REFUSALS.http_403 } : REFUSALS;
}
