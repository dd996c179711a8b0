// Health: the deployment's dependencies as /health/deep sees them (an operator's token, scope ops:read).
import { api } from "../api.js";
import { badge, count, h, show, table } from "../dom.js";
import { errorMessage, message } from "../ui.js";

export async function render(main, route, context) {
  show(main, h("h1", {}, "Health"), h("p", { class: "loading" }, "Checking the database, bucket, queues and jobs table…"));
  let report;
  try {
    // A 503 carries the report too: it shows which check failed rather than only that one did.
    report = await api("GET", "/health/deep", { allow: [503] });
  } catch (error) {
    if (context.isCurrent()) main.lastChild.replaceWith(errorMessage(error));
    return;
  }
  if (!context.isCurrent()) return;
  const checks = Object.entries(report.checks).map(([name, check]) => ({ name, ...check }));
  main.lastChild.replaceWith(h("div", { id: "health" },
    report.status === "ok"
      ? message("success", "Every dependency answers.", [`Version ${report.version}.`])
      : message("error", "Some dependency does not answer.", [`Version ${report.version}.`]),
    table("Checks", [
      ["Dependency", (check) => check.name.replace(/_/g, " ")],
      ["State", (check) => badge(check.ok ? "ok" : "bad")],
      ["Latency", (check) => `${count(Math.round(check.latency_ms))} ms`, { numeric: true }],
      ["Detail", (check) => check.detail],
    ], checks, "No checks reported."),
    h("p", {}, h("button", { type: "button", class: "secondary", onclick: () => render(main, route, context) }, "Check again"))));
}
