// Pieces every page uses: the API's answer as a message, the pager, filters kept in the address.
import { describe, SignInRequired } from "./api.js";
import { count, h } from "./dom.js";

/** A message box; kind is "error", "success" or "info". Errors are announced at once (role=alert). */
export function message(kind, title, lines = []) {
  return h(
    "div",
    { class: `message ${kind}`, role: kind === "error" ? "alert" : "status" },
    h("h2", {}, title),
    lines.length === 1 ? h("p", {}, lines[0]) : lines.length ? h("ul", {}, lines.map((line) => h("li", {}, line))) : null,
  );
}

/**
 * The API's refusal in plain words. An expired or refused sign-in sends the person to sign in (the shell listens),
 * keeping their place.
 */
export function errorMessage(error) {
  if (error instanceof SignInRequired) {
    document.dispatchEvent(new CustomEvent("sluice:signin-required"));
    return message("info", "Your sign-in has expired.", ["Sign in again to go on where you were."]);
  }
  const { title, lines, code } = describe(error);
  const box = message("error", title, lines);
  if (code) box.dataset.code = code;
  if (error.status !== undefined) box.dataset.status = String(error.status);
  return box;
}

/** The route's query as a plain object (the filters a page shows). */
export function paramsOf(route) {
  return Object.fromEntries(route.params.entries());
}

/** The hash for ``page`` with these params (empty ones left out). */
export function hashFor(page, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(name, value);
  }
  const text = query.toString();
  return `#/${page}${text ? `?${text}` : ""}`;
}

/**
 * A filter form whose submit puts its values into the address (so a reload, a shared link or a new sign-in keeps
 * them) and starts again from the first page.
 */
export function filterForm(page, fields, extra = {}) {
  const form = h("form", { class: "filters panel", role: "search", "aria-label": "Filters" }, fields,
    h("div", { class: "actions" },
      h("button", { type: "submit" }, "Apply filters"),
      h("a", { class: "button secondary", href: hashFor(page) }, "Clear")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const values = { ...extra };
    for (const [name, value] of new FormData(form).entries()) {
      values[name] = typeof value === "string" ? value.trim() : value;
    }
    const convert = form.convert || ((v) => v);
    location.hash = hashFor(page, convert(values));
  });
  return form;
}

/** Keyset paging: "First page" and "Next page" links (back goes back through the browser's history). */
export function pager(page, params, nextCursor, shown, noun) {
  const first = params.cursor ? h("a", { href: hashFor(page, { ...params, cursor: "" }) }, "First page") : null;
  const next = nextCursor ? h("a", { class: "button secondary", href: hashFor(page, { ...params, cursor: nextCursor }), rel: "next" }, "Next page") : null;
  return h("div", { class: "pager" },
    h("span", { class: "hint" }, `${count(shown)} ${shown === 1 ? noun.replace(/s$/, "") : noun} on this page${nextCursor ? "; more follow" : ""}.`), first, next);
}

let knownSystems = null;

/**
 * The tenant's systems (id -> name), read once a minute at most, for showing names instead of ids and for the
 * filters' suggestions. Empty when the token may not read systems: the pages then show ids.
 */
export async function systemNames(api) {
  if (knownSystems && knownSystems.at > Date.now() - 60000) return knownSystems.names;
  const names = new Map();
  try {
    let cursor = null;
    do {
      // The API's largest page of systems.
      const page = await api("GET", "/api/v1/systems", { query: { limit: 100, cursor } });
      for (const system of page.items) names.set(system.id, system.name);
      cursor = page.next_cursor;
    } while (cursor && names.size < 2000);
  } catch (error) {
    if (error instanceof SignInRequired) throw error;
  }
  knownSystems = { at: Date.now(), names };
  return names;
}

/** Forget the systems read (after registering or renaming one). */
export function forgetSystems() {
  knownSystems = null;
}

/** A system's name with its id on hover, or the id. */
export function systemLabel(names, id) {
  if (!id) return "–";
  const name = names.get(id);
  return name ? h("span", { title: id }, name) : h("code", {}, id);
}

/** A datalist of the tenant's systems for a system-id input (the value is the id; the label its name). */
export function systemOptions(id, names) {
  return h("datalist", { id }, [...names].map(([systemId, name]) => h("option", { value: systemId }, name)));
}

/**
 * errorMessage with the page's own plain words for the refusals it expects: ``explanations`` maps an error code
 * to [title, line]; the API's own words (and every detail) follow them.
 */
export function explainedError(error, explanations) {
  const box = errorMessage(error);
  const words = explanations[error.code];
  if (words) {
    const title = box.querySelector("h2");
    title.textContent = words[0];
    title.after(h("p", {}, words[1]));
  }
  return box;
}

/**
 * Mark the controls of ``form`` that a 400's details name (by their name attribute): aria-invalid, and the reason
 * next to the control, tied to it by aria-describedby. Marks of an earlier attempt are cleared first; a refusal
 * that names no control of the form only clears them.
 */
export function markInvalid(form, error) {
  for (const old of form.querySelectorAll(".field-error")) {
    const control = form.querySelector(`[aria-describedby~="${old.id}"]`);
    if (control) {
      control.removeAttribute("aria-invalid");
      const rest = control.getAttribute("aria-describedby").split(" ").filter((id) => id !== old.id).join(" ");
      if (rest) control.setAttribute("aria-describedby", rest);
      else control.removeAttribute("aria-describedby");
    }
    old.remove();
  }
  for (const detail of error?.details || []) {
    const control = detail.field ? form.elements.namedItem(detail.field) : null;
    if (!(control instanceof HTMLElement) || control.getAttribute("aria-invalid") === "true") continue;
    const id = `${control.id}-error`;
    control.setAttribute("aria-invalid", "true");
    control.setAttribute("aria-describedby", [control.getAttribute("aria-describedby"), id].filter(Boolean).join(" "));
    control.after(h("span", { id, class: "field-error" }, detail.reason));
  }
}
