// Webhooks: the tenant's subscriptions (where which events are sent); create one (its signing secret is shown once),
// delete one; a subscription's deliveries with every attempt and its answer.
import { api } from "../api.js";
import { announce, badge, count, duration, field, h, show, table, time } from "../dom.js";
import { explainedError, filterForm, markInvalid, message, pager, paramsOf } from "../ui.js";

const EVENTS = [
  ["alarm.raised", "an alarm is raised"],
  ["alarm.cleared", "an alarm clears"],
  ["alarm.acknowledged", "someone acknowledges an alarm"],
  ["job.completed", "a job completes"],
  ["job.failed", "a job fails"],
];
const DELIVERY_STATUSES = ["pending", "delivered", "failed"];
const PAGE_SIZE = 50;
const DELIVERY_PAGE_SIZE = 25;
// The refusals these pages expect, in their words; the API's own (and each detail) follow.
const REFUSALS = {
  limit_reached: ["The tenant has as many subscriptions as it may.", "Delete one it no longer needs, then create this one."],
  http_403: ["Your sign-in does not allow changing webhooks.", "Creating and deleting subscriptions needs the scope alerts:write; reading them needs alerts:read only."],
};
// A message for the next drawing of the list (a subscription deleted from its own page, which is then gone).
let flash = null;

export async function render(main, route, context) {
  if (route.id) return renderWebhook(main, route, context);
  const params = paramsOf(route);
  const outcome = h("div", { id: "webhook-outcome" });
  const list = h("div", { id: "webhooks-list" }, h("p", { class: "loading" }, "Loading subscriptions…"));
  if (flash) {
    show(outcome, flash);
    flash = null;
  }
  show(main, h("h1", {}, "Webhooks"), createForm(outcome, () => loadList(list, outcome, params, context)), outcome, list);
  await loadList(list, outcome, params, context);
}

async function loadList(list, outcome, params, context) {
  let page;
  try {
    page = await api("GET", "/api/v1/webhooks", { query: { limit: PAGE_SIZE, cursor: params.cursor } });
  } catch (error) {
    if (context.isCurrent()) show(list, explainedError(error, REFUSALS));
    return;
  }
  if (!context.isCurrent()) return;
  const reload = () => loadList(list, outcome, params, context);
  show(list,
    table("Subscriptions, oldest first", [
      ["URL", (hook) => h("a", { href: `#/webhooks/${hook.id}`, class: "url" }, hook.url)],
      ["Events", (hook) => eventList(hook.events)],
      ["Created by", (hook) => hook.created_by],
      ["Created", (hook) => time(hook.created_at)],
      ["", (hook) => h("button", {
        type: "button", class: "secondary", "aria-label": `Delete the subscription to ${hook.url}`,
        onclick: () => confirmDelete(hook, outcome, async (box) => {
          await reload();
          show(outcome, box);
        }),
      }, "Delete…")],
    ], page.items, params.cursor ? "No more subscriptions." : "No subscriptions yet: create the first one above."),
    pager("webhooks", params, page.next_cursor, page.items.length, "subscriptions"));
}

function eventList(events) {
  return h("ul", { class: "events" }, events.map((event) => h("li", {}, h("code", {}, event))));
}

function createForm(outcome, reload) {
  const boxes = EVENTS.map(([event, when]) => h("label", { class: "check" },
    h("input", { type: "checkbox", name: "event", value: event, checked: event.startsWith("alarm.") }),
    " ", h("code", {}, event), h("span", { class: "hint" }, ` when ${when}`)));
  const form = h("form", { class: "filters panel", id: "webhook-form", "aria-labelledby": "webhook-heading", novalidate: true },
    h("h2", { id: "webhook-heading", class: "form-title" }, "Create a subscription"),
    field("webhook-url", "URL", "url", "", {
      name: "url", required: true, wide: true, placeholder: "https://oncall.example.com/hooks/sluice",
      hint: "Where each event is POSTed, signed (Standard Webhooks). In AWS: https, on a public address.",
    }),
    // The fieldset carries the name "events" so that a refusal naming that field marks it (markInvalid).
    h("fieldset", { class: "events-choice", id: "webhook-events", name: "events" },
      h("legend", {}, "Events"), boxes),
    h("div", { class: "actions" }, h("button", { type: "submit", id: "webhook-submit" }, "Create")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const url = form.elements.url.value.trim();
    const events = [...form.querySelectorAll('input[name="event"]:checked')].map((box) => box.value);
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const created = await api("POST", "/api/v1/webhooks", { body: { url, events } });
      markInvalid(form, null);
      form.reset();
      show(outcome, secretShown(created));
      announce("The subscription is created. Copy its secret now: it is not shown again.");
      await reload();
      outcome.querySelector("#webhook-secret").focus();
    } catch (error) {
      markInvalid(form, error);
      show(outcome, explainedError(error, REFUSALS));
      announce(`Not created: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

/**
 * The one answer that holds the signing secret: shown here with a copy button, kept nowhere (not in storage, not in
 * the address), so a reload or another page no longer has it.
 */
function secretShown(created) {
  const secret = h("input", {
    id: "webhook-secret", type: "text", value: created.secret, readonly: true, spellcheck: "false", class: "secret",
    "aria-describedby": "webhook-secret-hint",
  });
  secret.addEventListener("focus", () => secret.select());
  const copied = h("span", { id: "webhook-copied", class: "hint", role: "status" });
  const copy = h("button", {
    type: "button", id: "webhook-copy",
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(created.secret);
        copied.textContent = "Copied.";
      } catch {
        // No clipboard (a permission refused): the text is selected for the person's own copy.
        secret.focus();
        copied.textContent = "Copy the selected secret with Ctrl+C (⌘C).";
      }
    },
  }, "Copy the secret");
  const box = h("section", { class: "message success", id: "webhook-created", role: "status", "aria-labelledby": "webhook-created-heading" },
    h("h2", { id: "webhook-created-heading" }, "Subscription created."),
    h("p", {}, "Events go to ", h("code", {}, created.url), ": ", created.events.join(", "), "."),
    h("div", { class: "field wide" },
      h("label", { for: "webhook-secret" }, "Signing secret"),
      secret,
      h("span", { id: "webhook-secret-hint", class: "warning-text" },
        "This is the only time the secret is shown: you will not see it again. Keep it where your receiver checks signatures; "
        + "to change it, delete the subscription and create another.")),
    h("div", { class: "actions" }, copy, copied));
  box.dataset.status = "201";
  return box;
}

/**
 * Ask before deleting: the subscription's pending deliveries go with it, and its secret cannot be had again. Once
 * deleted, ``deleted`` shows the outcome; a refusal is shown in ``outcome``.
 */
function confirmDelete(hook, outcome, deleted) {
  const confirm = h("button", { type: "submit", id: "webhook-delete-confirm", class: "danger", value: "confirm" }, "Delete the subscription");
  const dialog = h("dialog", { id: "webhook-delete-dialog", "aria-labelledby": "webhook-delete-heading" },
    h("form", { method: "dialog" },
      h("h2", { id: "webhook-delete-heading" }, "Delete this subscription?"),
      h("p", {}, "Events will no longer be sent to ", h("code", {}, hook.url), "."),
      h("p", { class: "hint" }, "Its deliveries not yet sent are dropped with it. A new subscription to the same URL gets a new secret."),
      h("div", { class: "actions" }, confirm,
        h("button", { type: "button", class: "secondary", id: "webhook-delete-cancel", onclick: () => dialog.close("cancel") }, "Cancel"))));
  dialog.addEventListener("close", async () => {
    dialog.remove();
    if (dialog.returnValue !== "confirm") return;
    try {
      await api("DELETE", `/api/v1/webhooks/${encodeURIComponent(hook.id)}`);
      const box = message("success", "Subscription deleted.", [`Nothing more is sent to ${hook.url}.`]);
      box.id = "webhook-deleted";
      await deleted(box);
      announce("The subscription is deleted.");
    } catch (error) {
      show(outcome, explainedError(error, REFUSALS));
      announce(`Not deleted: ${error.message}`);
    }
  });
  document.body.append(dialog);
  dialog.showModal();
}

async function renderWebhook(main, route, context) {
  const webhookId = route.id;
  const params = paramsOf(route);
  show(main, h("p", {}, h("a", { href: "#/webhooks" }, "← All subscriptions")), h("h1", {}, "Subscription"),
    h("p", { class: "loading" }, "Loading the subscription…"));
  const path = `/api/v1/webhooks/${encodeURIComponent(webhookId)}`;
  let hook;
  let page;
  try {
    [hook, page] = await Promise.all([
      api("GET", path),
      api("GET", `${path}/deliveries`, { query: { status: params.status, limit: DELIVERY_PAGE_SIZE, cursor: params.cursor } }),
    ]);
  } catch (error) {
    if (context.isCurrent()) main.lastChild.replaceWith(explainedError(error, REFUSALS));
    return;
  }
  if (!context.isCurrent()) return;
  main.querySelector("h1").textContent = hook.url;
  const outcome = h("div", { id: "webhook-outcome" });
  const remove = h("button", {
    type: "button", class: "danger", id: "webhook-delete",
    onclick: () => confirmDelete(hook, outcome, (box) => {
      flash = box;
      location.hash = "#/webhooks";
    }),
  }, "Delete the subscription…");
  const here = `webhooks/${encodeURIComponent(webhookId)}`;
  const filters = filterForm(here, [
    field("deliveries-status", "Status", "select", params.status, {
      name: "status", choices: [["", "Any status"], ...DELIVERY_STATUSES.map((s) => [s, s])],
    }),
  ]);
  main.lastChild.replaceWith(h("div", { id: "webhook" },
    h("div", { class: "panel" }, webhookFacts(hook), h("div", { class: "actions" }, remove)),
    outcome,
    h("h2", {}, "Deliveries"),
    filters,
    h("div", { id: "deliveries-list" },
      deliveries(page.items),
      pager(here, params, page.next_cursor, page.items.length, "deliveries"))));
}

function webhookFacts(hook) {
  const facts = [
    ["URL", h("code", {}, hook.url)],
    ["Events", eventList(hook.events)],
    ["Created by", hook.created_by],
    ["Created", time(hook.created_at)],
    ["Id", h("code", {}, hook.id)],
    ["Signing secret", h("span", { class: "hint" }, "Shown once, when the subscription was created.")],
  ];
  return h("dl", { class: "facts", id: "webhook-facts" }, facts.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

/** A link to what an event announces: the alarm, or the job (its key is "<type>:<id>"). */
function subjectOf(delivery) {
  const [, id] = delivery.event_key.split(/:(.*)/s);
  if (!id) return h("code", {}, delivery.event_key);
  const page = delivery.event_type.startsWith("alarm.") ? "alarms" : delivery.event_type.startsWith("job.") ? "jobs" : null;
  return page ? h("a", { href: `#/${page}/${encodeURIComponent(id)}`, title: delivery.event_key }, h("code", {}, id.slice(0, 8))) : h("code", {}, id);
}

function deliveries(items) {
  return table("Deliveries, newest first", [
    ["Created", (delivery) => time(delivery.created_at)],
    ["Event", (delivery) => [h("code", {}, delivery.event_type), " ", subjectOf(delivery)]],
    ["Status", (delivery) => badge(delivery.status)],
    ["Attempts", (delivery) => count(delivery.attempts), { numeric: true }],
    ["Last answer", (delivery) => lastAnswer(delivery)],
    ["Delivered / next attempt", (delivery) => (delivery.status === "delivered" ? time(delivery.delivered_at)
      : delivery.status === "pending" ? ["next ", time(delivery.next_attempt_at)] : "gave up")],
  ], items, "No deliveries match: the subscription has sent nothing of this kind yet.");
}

/** What the receiver answered last (or why there was no answer); every attempt in a disclosure below it. */
function lastAnswer(delivery) {
  const log = delivery.attempt_log || [];
  if (!log.length) return h("span", { class: "hint" }, "not tried yet");
  const last = log[log.length - 1];
  return h("div", { class: "answer" },
    answerOf(last),
    log.length > 1 || last.response
      ? h("details", {},
        h("summary", {}, `Every attempt (${count(log.length)})`),
        h("ol", { class: "attempts" }, log.map((attempt) => h("li", {},
          time(attempt.at), " ", answerOf(attempt), ` in ${duration(attempt.duration_ms)}`,
          attempt.response ? h("pre", { class: "raw" }, attempt.response) : null))))
      : null);
}

function answerOf(attempt) {
  if (attempt.status_code !== null && attempt.status_code !== undefined) {
    const ok = attempt.status_code >= 200 && attempt.status_code < 300;
    return h("span", { class: `badge ${ok ? "ok" : "bad"}` }, `HTTP ${attempt.status_code}`);
  }
  return h("span", { class: "error-text" }, attempt.error || "no answer");
}
