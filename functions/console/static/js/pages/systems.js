// Systems: the tenant's machines by name, with what lately reached Sluice for each; register one, rename one.
import { announce, count, field, h, show, table, time } from "../dom.js";
import { api } from "../api.js";
import { explainedError, forgetSystems, hashFor, markInvalid, message, pager, paramsOf } from "../ui.js";

const PAGE_SIZE = 50;
// The API's conflicts in a person's words (its own message, naming the system in the way, follows).
const CONFLICTS = {
  name_taken: ["That name is taken.", "Another of your systems has this name: choose another, or rename that one first."],
  system_id_taken: ["That system id is registered already.",
    "An id names one system only. Leave the id empty to have Sluice choose one, or rename the system that has it."],
};

export async function render(main, route, context) {
  if (route.id) return renderSystem(main, route.id, context);
  const params = paramsOf(route);
  const outcome = h("div", { id: "register-outcome" });
  const list = h("div", { id: "systems-list" }, h("p", { class: "loading" }, "Loading systems…"));
  show(main, h("h1", {}, "Systems"), registerForm(outcome, () => loadList(list, params, context)), outcome, list);
  await loadList(list, params, context);
}

async function loadList(list, params, context) {
  let page;
  try {
    page = await api("GET", "/api/v1/systems", { query: { limit: PAGE_SIZE, cursor: params.cursor } });
  } catch (error) {
    if (context.isCurrent()) show(list, explainedError(error, {}));
    return;
  }
  if (!context.isCurrent()) return;
  show(list,
    table("Systems by name", [
      ["Name", (system) => h("a", { href: `#/systems/${system.id}` }, system.name)],
      ["Id", (system) => h("code", {}, system.id)],
      ["Last reading", (system) => time(system.last_reading_at)],
      ["Readings in 24 h", (system) => count(system.readings_24h), { numeric: true }],
      ["Pending quarantine", (system) => pendingLink(system), { numeric: true }],
      ["Registered", (system) => time(system.created_at)],
    ], page.items, params.cursor ? "No more systems." : "No systems yet: register the first one above."),
    pager("systems", params, page.next_cursor, page.items.length, "systems"));
}

/** The system's readings waiting for review, as a link to them; a plain 0 when none wait. */
function pendingLink(system) {
  if (!system.pending_quarantine) return count(0);
  return h("a", { href: hashFor("quarantine", { system_id: system.id, review_status: "pending" }) },
    count(system.pending_quarantine));
}

function registerForm(outcome, reload) {
  const form = h("form", { class: "filters panel", id: "register-form", "aria-labelledby": "register-heading", novalidate: true },
    h("h2", { id: "register-heading", class: "form-title" }, "Register a system"),
    field("register-name", "Name", "text", "", { name: "name", required: true, wide: true, hint: "Unique among your systems, up to 200 characters." }),
    field("register-id", "Id (optional)", "text", "", {
      name: "id", wide: true,
      hint: "The UUID its devices already send as system_id; empty: Sluice chooses one.",
    }),
    h("div", { class: "actions" }, h("button", { type: "submit", id: "register-submit" }, "Register")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = form.elements.name.value.trim();
    const id = form.elements.id.value.trim();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const { status, body: system } = await api("POST", "/api/v1/systems", { body: id ? { name, id } : { name }, withStatus: true });
      markInvalid(form, null);
      forgetSystems();
      const made = status === 201;
      const box = made
        ? message("success", `Registered “${system.name}”.`, [`Its id is ${system.id}: its devices send readings with this system_id.`])
        : message("info", `“${system.name}” was registered already.`, [["Nothing changed: its id is ", h("code", {}, system.id), ", registered ", time(system.created_at), "."]]);
      box.dataset.status = String(status);
      show(outcome, box);
      announce(made ? `Registered ${system.name}.` : `${system.name} was registered already.`);
      form.reset();
      await reload();
    } catch (error) {
      markInvalid(form, error);
      show(outcome, explainedError(error, CONFLICTS));
      announce(`Not registered: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

async function renderSystem(main, systemId, context) {
  show(main, h("p", {}, h("a", { href: "#/systems" }, "← All systems")), h("h1", {}, "System"), h("p", { class: "loading" }, "Loading the system…"));
  let system;
  try {
    system = await api("GET", `/api/v1/systems/${encodeURIComponent(systemId)}`);
  } catch (error) {
    if (context.isCurrent()) main.lastChild.replaceWith(explainedError(error, {}));
    return;
  }
  if (!context.isCurrent()) return;
  const heading = main.querySelector("h1");
  const facts = h("div", { class: "panel" });
  const outcome = h("div", { id: "rename-outcome" });
  const draw = (shown) => {
    heading.textContent = shown.name;
    show(facts, systemFacts(shown));
  };
  draw(system);
  main.lastChild.replaceWith(h("div", { id: "system" }, facts, renameForm(system, outcome, draw), outcome));
}

/** How long its sensors may go without a reading before they count as silent, in a person's units. */
function silence(seconds) {
  const [size, unit] = seconds % 3600 === 0 ? [seconds / 3600, "hour"]
    : seconds % 60 === 0 ? [seconds / 60, "minute"] : [seconds, "second"];
  return `${size} ${unit}${size === 1 ? "" : "s"} without a reading`;
}

function systemFacts(system) {
  const facts = [
    ["Name", system.name],
    ["Id", h("code", {}, system.id)],
    ["Registered", time(system.created_at)],
    ["Last reading", time(system.last_reading_at)],
    ["Readings in 24 h", count(system.readings_24h)],
    ["Pending quarantine", pendingLink(system)],
    ["Silent after", silence(system.silent_after_seconds)],
  ];
  return [
    h("dl", { class: "facts", id: "system-facts" }, facts.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)])),
    h("p", {}, h("a", { href: hashFor("jobs", { system_id: system.id }) }, "Its batches sent to the API")),
  ];
}

function renameForm(system, outcome, draw) {
  const form = h("form", { class: "filters panel", id: "rename-form", "aria-labelledby": "rename-heading", novalidate: true },
    h("h2", { id: "rename-heading", class: "form-title" }, "Rename"),
    field("rename-name", "New name", "text", system.name, { name: "name", required: true, wide: true, hint: "Its id stays: devices go on sending it." }),
    h("div", { class: "actions" }, h("button", { type: "submit", id: "rename-submit" }, "Rename")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = form.elements.name.value.trim();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const renamed = await api("PATCH", `/api/v1/systems/${encodeURIComponent(system.id)}`, { body: { name } });
      markInvalid(form, null);
      forgetSystems();
      draw(renamed);
      form.elements.name.value = renamed.name;
      show(outcome, message("success", `Renamed to “${renamed.name}”.`, ["Every page of the console shows the new name."]));
      announce(`Renamed to ${renamed.name}.`);
    } catch (error) {
      markInvalid(form, error);
      show(outcome, explainedError(error, CONFLICTS));
      announce(`Not renamed: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}
