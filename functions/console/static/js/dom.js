// Building the page: elements from data (text only, never HTML from the API), and the formats a person reads.

/** An element: h("a", {href: "#/jobs", class: "x"}, "text", child, ...). Text children are text nodes. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace what ``element`` shows. */
export function show(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

const numbers = new Intl.NumberFormat();
const percent = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 });
const local = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

/** A count with the person's thousands separators; "–" when unknown. */
export function count(value) {
  return value === null || value === undefined ? "–" : numbers.format(value);
}

/** A rate 0..1 as a percentage. */
export function rate(value) {
  return value === null || value === undefined ? "–" : percent.format(value);
}

/** Bytes as a person reads them. */
export function bytes(value) {
  if (value === null || value === undefined) return "–";
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let size = value;
  let unit = 0;
  while (size >= 1000 && unit < units.length - 1) {
    size /= 1000;
    unit += 1;
  }
  return unit === 0 ? `${numbers.format(value)} bytes` : `${size.toFixed(1)} ${units[unit]}`;
}

/** Milliseconds as a duration. */
export function duration(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return `${numbers.format(ms)} ms`;
  if (ms < 120000) return `${(ms / 1000).toFixed(1)} s`;
  return `${numbers.format(Math.round(ms / 60000))} min`;
}

/** The UTC form shown on hover: 2026-12-05 12:00:00.123 UTC. */
export function utc(iso) {
  return new Date(iso).toISOString().replace("T", " ").replace("Z", " UTC");
}

/** A time in the person's time zone, with UTC on hover (and to assistive technology through datetime). */
export function time(iso) {
  if (!iso) return "–";
  const moment = new Date(iso);
  if (Number.isNaN(moment.getTime())) return String(iso);
  return h("time", { datetime: moment.toISOString(), title: utc(iso) }, local.format(moment));
}

/** A status word as a badge; the class only colours what the text says. */
export function badge(status) {
  return h("span", { class: `badge ${status}` }, String(status).replace(/_/g, " "));
}

/** A table: columns are [heading, (row) => cell, {numeric}]; rows of data; an empty message. */
export function table(caption, columns, rows, emptyText) {
  if (!rows.length) return h("p", { class: "empty panel" }, emptyText);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, columns.map(([heading, , options]) =>
        h("th", { scope: "col", class: options?.numeric ? "num" : null }, heading)))),
      h("tbody", {}, rows.map((row) => h("tr", {}, columns.map(([, cell, options]) =>
        h("td", { class: options?.numeric ? "num" : null }, cell(row)))))),
    ),
  );
}

/** A labelled form control: kind "select" takes options [[value, text]], otherwise an input of that type. */
export function field(id, label, kind, value, options = {}) {
  const control = kind === "select"
    ? h("select", { id, name: options.name || id }, options.choices.map(([choice, text]) =>
      h("option", { value: choice, selected: choice === (value ?? "") }, text)))
    : kind === "textarea"
      ? h("textarea", { id, name: options.name || id, placeholder: options.placeholder }, value ?? "")
      : h("input", {
        id,
        name: options.name || id,
        type: kind,
        value: value ?? "",
        placeholder: options.placeholder,
        required: options.required,
        step: options.step,
        list: options.list,
        autocomplete: options.autocomplete || "off",
        spellcheck: kind === "text" ? "false" : null,
        "aria-describedby": options.hint ? `${id}-hint` : null,
      });
  return h(
    "div",
    { class: `field${options.wide ? " wide" : ""}` },
    h("label", { for: id }, label),
    control,
    options.hint ? h("span", { id: `${id}-hint`, class: "hint" }, options.hint) : null,
  );
}

/** Tell assistive technology what just happened (a polite live region). */
export function announce(text) {
  const region = document.getElementById("announce");
  region.textContent = "";
  // A fresh text node after a tick is announced even when the words repeat.
  setTimeout(() => { region.textContent = text; }, 50);
}

/** A datetime-local input's value (the person's time zone) as RFC 3339 with their offset; "" stays "". */
export function localToRfc3339(value) {
  if (!value) return "";
  const moment = new Date(value);
  if (Number.isNaN(moment.getTime())) return "";
  const offset = -moment.getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "-";
  const pad = (n) => String(Math.trunc(Math.abs(n))).padStart(2, "0");
  const wall = new Date(moment.getTime() + offset * 60000).toISOString().slice(0, 19);
  return `${wall}${sign}${pad(offset / 60)}:${pad(offset % 60)}`;
}

/** RFC 3339 back to a datetime-local input's value in the person's time zone. */
export function rfc3339ToLocal(value) {
  if (!value) return "";
  const moment = new Date(value);
  if (Number.isNaN(moment.getTime())) return "";
  return new Date(moment.getTime() - moment.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}
