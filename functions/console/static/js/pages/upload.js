// Upload: a file of readings (CSV, NDJSON or JSON, optionally gzip) sent straight to S3 with a form the API signs,
// then its job followed until it ends.
import { api } from "../api.js";
import { announce, bytes, count, h, show } from "../dom.js";
import { errorMessage, markInvalid, message, systemNames } from "../ui.js";
import { followJob, jobFacts, quarantineLinks, UNFINISHED } from "./jobs.js";

// The extensions the API takes (docs/drops.md#formats), each optionally followed by .gz.
const ACCEPT = ".csv,.ndjson,.jsonl,.json,.gz";
const FORMAT = /\.(csv|ndjson|jsonl|json)(\.gz)?$/i;
// S3's refusals of a form POST, in a person's words (its own Code and Message follow).
const S3_REFUSALS = {
  AccessDenied: "S3 refused the form: it has expired or does not match the file. Upload the file again for a new form.",
  ExpiredToken: "The form's credentials have expired. Upload the file again for a new form.",
  EntityTooLarge: "The file is larger than the size the form was signed for. Upload it again.",
  EntityTooSmall: "S3 refused an empty file.",
  InvalidPolicyDocument: "S3 refused the form's policy. Upload the file again for a new form.",
};

export async function render(main, route, context) {
  const input = h("input", { type: "file", id: "upload-file", name: "file", accept: ACCEPT, "aria-describedby": "upload-file-hint", required: true });
  // The input says which file it holds; this says its size, and whether the API will take its name.
  const chosen = h("p", { id: "upload-chosen", class: "hint", "aria-live": "polite" });
  const zone = h("div", { class: "dropzone", id: "upload-zone" },
    h("label", { for: "upload-file", class: "dropzone-label" }, "Choose a file of readings"),
    input,
    h("p", { id: "upload-file-hint", class: "hint" },
      "Or drop it here. CSV (a header row: system_id, sensor_id, timestamp, value, unit, quality), NDJSON (.ndjson, .jsonl: a reading a line) or JSON (an array of readings), each optionally gzip-compressed (.gz). Every reading names its system."),
    chosen);
  const button = h("button", { type: "submit", id: "upload-submit" }, "Upload");
  const form = h("form", { class: "panel", id: "upload-form", "aria-label": "Upload a file", novalidate: true }, zone, h("div", { class: "actions" }, button));
  const outcome = h("div", { id: "upload-outcome" });
  show(main, h("h1", {}, "Upload"), form, outcome);

  input.addEventListener("change", () => describeChoice(input, chosen));
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (!event.dataTransfer.files.length) return;
    // The input holds the choice either way, so the form reads one place and the person sees what was dropped.
    input.files = event.dataTransfer.files;
    describeChoice(input, chosen);
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = input.files[0];
    if (!file) {
      show(outcome, message("error", "Choose a file first.", ["Use “Choose a file of readings”, or drop a file on it."]));
      input.focus();
      return;
    }
    button.disabled = true;
    try {
      await upload(file, form, outcome, context);
    } catch (error) {
      if (context.isCurrent()) show(outcome, errorMessage(error));
    } finally {
      button.disabled = false;
    }
  });
}

function describeChoice(input, chosen) {
  const file = input.files[0];
  if (!file) return show(chosen);
  show(chosen, "Chosen: ", h("strong", {}, file.name), ` (${bytes(file.size)})`,
    FORMAT.test(file.name) ? "" : ". Its name does not end in .csv, .ndjson, .jsonl or .json (then .gz or not): the API will refuse it.");
}

/** Whether the file starts as gzip does (1f 8b): a gzip file not named .gz is announced as such to the API. */
async function isGzip(file) {
  const head = new Uint8Array(await file.slice(0, 2).arrayBuffer());
  return head.length === 2 && head[0] === 0x1f && head[1] === 0x8b;
}

async function upload(file, form, outcome, context) {
  const request = { filename: file.name, size: file.size };
  if (!/\.gz$/i.test(file.name) && (await isGzip(file))) request.content_encoding = "gzip";
  show(outcome, h("p", { class: "loading" }, "Asking the API for an upload form…"));
  let created;
  try {
    created = await api("POST", "/api/v1/uploads", { body: request });
  } catch (error) {
    // The API names the body's member: the file's name or size stand for the file input.
    markInvalid(form, error && { details: (error.details || []).map((detail) => ({ ...detail, field: "file" })) });
    throw error;
  }
  markInvalid(form, null);
  if (!context.isCurrent()) return;

  const progress = h("progress", { id: "upload-progress", max: 100, value: 0, "aria-labelledby": "upload-progress-label" });
  const progressText = h("span", { id: "upload-progress-text" }, `0 of ${bytes(file.size)}`);
  const progressLabel = h("p", { id: "upload-progress-label" }, "Sending ", h("strong", {}, file.name), " to storage");
  const sending = h("div", { class: "panel", id: "upload-sending" }, progressLabel,
    progress, " ", progressText);
  const status = h("div", { id: "upload-status" });
  show(outcome, sending, status);
  announce(`Sending ${file.name}.`);

  const stored = await postForm(created.upload, file, (loaded, total) => {
    const share = total ? loaded / total : 0;
    progress.value = Math.round(share * 100);
    show(progressText, `${bytes(Math.min(file.size, Math.round(share * file.size)))} of ${bytes(file.size)} (${progress.value} %)`);
  });
  if (!stored.ok) {
    show(status, message("error", stored.title, stored.lines));
    status.firstChild.dataset.s3Status = String(stored.status);
    return;
  }
  // No need to set the bar: the upload's last progress event counts every byte, and it comes before S3's answer.
  show(progressLabel, "Sent ", h("strong", {}, file.name), " to storage");
  announce("The file is stored. Following its job.");
  if (!context.isCurrent()) return;

  const names = await systemNames(api);
  const jobLink = h("a", { href: `#/jobs/${created.job_id}` }, "its job page");
  show(status, message("success", "The file is stored.", [["It is loaded under job ", h("code", {}, created.job_id), "; this page follows it (so does ", jobLink, ")."]]),
    h("div", { class: "panel", id: "upload-job" }, h("p", { class: "loading" }, "Waiting for the job…")));
  const panel = status.lastChild;
  const job = await followJob(created.job_id, context, (current) => {
    show(panel, jobFacts(current, names),
      UNFINISHED.has(current.status) ? h("p", { class: "hint" }, "Still running: this page follows it.") : quarantineLinks(current));
  });
  if (!context.isCurrent() || UNFINISHED.has(job.status)) return;
  announce(job.status === "completed"
    ? `The job completed: ${count(job.inserted_readings)} readings stored, ${count(job.quarantined_readings)} quarantined.`
    : `The job failed: ${job.error_message || "see its page"}.`);
}

/**
 * POST the signed form to S3: every field first, the file last (S3 ignores what follows the file), with progress.
 * Resolves {ok} or {ok: false, status, title, lines} with S3's refusal in plain words; never rejects.
 */
function postForm(form, file, onProgress) {
  const body = new FormData();
  for (const [name, value] of Object.entries(form.fields)) body.append(name, value);
  body.append("file", file, file.name);
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status === 201 || xhr.status === 204 || xhr.status === 200) return resolve({ ok: true, status: xhr.status });
      resolve({ ok: false, status: xhr.status, ...s3Refusal(xhr.status, xhr.responseText) });
    });
    xhr.addEventListener("error", () => resolve({
      ok: false,
      status: 0,
      title: "The file could not be sent to storage.",
      lines: ["No answer came from S3: check the network and try again. If it persists, the bucket may not accept uploads from this console's address (its CORS rule)."],
    }));
    xhr.open("POST", form.url);
    xhr.send(body);
  });
}

/** S3's XML error (<Error><Code>..</Code><Message>..</Message></Error>) as a heading and lines. */
function s3Refusal(status, text) {
  const xml = new DOMParser().parseFromString(text || "<Error/>", "application/xml");
  const code = xml.querySelector("Error > Code")?.textContent || "";
  const said = xml.querySelector("Error > Message")?.textContent || "";
  const lines = [S3_REFUSALS[code] || "The file was not stored. Upload it again; if it fails again, quote the answer below to support."];
  lines.push(code ? `S3 answered ${status} ${code}${said ? `: ${said}` : ""}` : `S3 answered ${status}.`);
  return { title: "Storage refused the file.", lines };
}
