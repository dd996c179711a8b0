// Jobs: the tenant's batches, drops and uploads, newest first; one job with its counts, timings and quarantine.
import { api } from "../api.js";
import { badge, bytes, count, duration, field, h, localToRfc3339, rate, rfc3339ToLocal, show, table, time } from "../dom.js";
import { errorMessage, filterForm, hashFor, pager, paramsOf, systemLabel, systemNames, systemOptions } from "../ui.js";

const STATUSES = ["queued", "processing", "completed", "failed", "awaiting_upload"];
const SOURCES = ["api", "drop", "upload"];
// Statuses that still change: a job shown in one of them is read again until it ends.
export const UNFINISHED = new Set(["queued", "processing", "awaiting_upload"]);
const FOLLOW_EVERY_MS = 2000;

export async function render(main, route, context) {
  if (route.id) return renderJob(main, route.id, context);
  const params = paramsOf(route);
  // The systems' names and the page of jobs are read at the same time.
  const listing = api("GET", "/api/v1/jobs", { query: { ...params, limit: 50 } }).then(
    (page) => ({ page }),
    (error) => ({ error }),
  );
  const names = await systemNames(api);
  const form = filterForm("jobs", [
    field("jobs-status", "Status", "select", params.status, {
      name: "status", choices: [["", "Any status"], ...STATUSES.map((s) => [s, s.replace(/_/g, " ")])],
    }),
    field("jobs-source", "Source", "select", params.source, {
      name: "source", choices: [["", "Any source"], ...SOURCES.map((s) => [s, s])],
    }),
    field("jobs-system", "System", "text", params.system_id, {
      name: "system_id", list: "jobs-systems", placeholder: "system id", wide: true,
    }),
    systemOptions("jobs-systems", names),
    field("jobs-from", "Created from", "datetime-local", rfc3339ToLocal(params.created_from), { name: "created_from" }),
    field("jobs-to", "Created before", "datetime-local", rfc3339ToLocal(params.created_to), { name: "created_to" }),
  ]);
  // The inputs show the person's local time; the API takes RFC 3339 with their offset.
  form.convert = (values) => ({
    ...values,
    created_from: localToRfc3339(values.created_from),
    created_to: localToRfc3339(values.created_to),
  });
  show(main, h("h1", {}, "Jobs"), form, h("p", { class: "loading" }, "Loading jobs…"));
  const { page, error } = await listing;
  if (!context.isCurrent()) return;
  if (error) {
    main.lastChild.replaceWith(errorMessage(error));
    return;
  }
  main.lastChild.replaceWith(h("div", { id: "jobs-list" },
    table("Jobs, newest first", [
      ["Created", (job) => h("a", { href: `#/jobs/${job.job_id}` }, time(job.created_at))],
      ["Status", (job) => badge(job.status)],
      ["Source", (job) => job.source],
      ["System", (job) => systemLabel(names, job.system_id)],
      ["Readings", (job) => count(job.total_readings), { numeric: true }],
      ["Inserted", (job) => count(job.inserted_readings), { numeric: true }],
      ["Quarantined", (job) => count(job.quarantined_readings), { numeric: true }],
      ["Duplicates", (job) => count(job.duplicate_readings), { numeric: true }],
      ["Success", (job) => rate(job.success_rate), { numeric: true }],
    ], page.items, "No jobs match these filters."),
    pager("jobs", params, page.next_cursor, page.items.length, "jobs")));
}

/** One job's facts (also used by the upload page while it follows its job). */
export function jobFacts(job, names) {
  const facts = [
    ["Job", h("code", {}, job.job_id)],
    ["Status", badge(job.status)],
    ["Source", job.source],
    ["System", systemLabel(names, job.system_id)],
    ["Sent by", job.created_by || (job.source === "drop" ? "a file dropped into the bucket" : "–")],
    job.filename ? ["File", `${job.filename}${job.size ? ` (${bytes(job.size)})` : ""}`] : null,
    ["Readings", count(job.total_readings)],
    ["Inserted", count(job.inserted_readings)],
    ["Quarantined", count(job.quarantined_readings)],
    ["Duplicates", count(job.duplicate_readings)],
    ["Success rate", rate(job.success_rate)],
    ["Reviewed / replayed", `${count(job.reviewed_readings)} / ${count(job.replayed_readings)}`],
    ["Created", time(job.created_at)],
    job.upload_expires_at ? ["Upload form expires", time(job.upload_expires_at)] : null,
    ["Started", time(job.started_at)],
    ["Completed", time(job.completed_at)],
    ["Processing time", duration(job.processing_time_ms)],
    job.error_message ? ["Error", h("span", { class: "error-text" }, job.error_message)] : null,
  ].filter(Boolean);
  return h("dl", { class: "facts", id: "job-facts" }, facts.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

/** Links from a job to its quarantined readings. */
export function quarantineLinks(job) {
  if (!job.quarantined_readings) return h("p", { class: "hint" }, "Nothing of this job is in quarantine.");
  return h("p", {},
    h("a", { class: "button", href: hashFor("quarantine", { job_id: job.job_id, review_status: "pending" }), id: "job-quarantine" },
      `Review its pending quarantined readings`),
    " ",
    h("a", { href: hashFor("quarantine", { job_id: job.job_id }) }, `All ${count(job.quarantined_readings)} quarantined readings of this job`));
}

/** Read the job until it ends (or the page is left), calling ``draw`` with each answer. */
export async function followJob(jobId, context, draw) {
  for (;;) {
    const job = await api("GET", `/api/v1/jobs/${encodeURIComponent(jobId)}`);
    if (!context.isCurrent()) return job;
    draw(job);
    if (!UNFINISHED.has(job.status)) return job;
    await new Promise((resolve) => setTimeout(resolve, FOLLOW_EVERY_MS));
    if (!context.isCurrent()) return job;
  }
}

async function renderJob(main, jobId, context) {
  show(main, h("p", {}, h("a", { href: "#/jobs" }, "← All jobs")), h("h1", {}, "Job"), h("p", { class: "loading" }, "Loading the job…"));
  const names = await systemNames(api);
  const body = h("div", { class: "panel", id: "job" });
  try {
    await followJob(jobId, context, (job) => {
      show(body, jobFacts(job, names), UNFINISHED.has(job.status) ? h("p", { class: "hint" }, "Still running: this page follows it.") : quarantineLinks(job));
      if (main.lastChild !== body) main.lastChild.replaceWith(body);
    });
  } catch (error) {
    if (context.isCurrent()) main.lastChild.replaceWith(errorMessage(error));
  }
}
