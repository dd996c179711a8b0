// The JSON API, called with the signed-in person's token; its refusals become ApiError with the API's own words.
import { currentToken } from "./auth.js";

/** The API refused (or could not be reached): status 0 means no answer arrived. */
export class ApiError extends Error {
  constructor(status, code, message, details = [], retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfter = retryAfter;
  }
}

/** No usable token: the page must send the person to sign in (their place is kept). */
export class SignInRequired extends Error {}

function url(path, query) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") params.set(name, value);
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

/**
 * Call the API: ``api("GET", "/api/v1/jobs", {query: {status: "failed"}})`` -> the parsed JSON body. Statuses in
 * ``allow`` answer their body too (the deep health check's 503 is a report, not a refusal). With ``withStatus``
 * the answer is ``{status, body}``: a registration's 201 (made) and 200 (there already) carry the same body.
 */
export async function api(method, path, { query, body, signal, allow = [], withStatus = false } = {}) {
  const token = currentToken();
  if (!token) throw new SignInRequired();
  const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url(path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "unreachable", "The API could not be reached: check the network, then try again.");
  }
  const text = await response.text();
  let answer = null;
  try {
    answer = text ? JSON.parse(text) : null;
  } catch {
    answer = null;
  }
  if (response.status === 401) throw new SignInRequired();
  if (!response.ok && !allow.includes(response.status)) {
    // Sluice's own refusals: {"error": {"code", "message", "details"}}; API Gateway's: {"message"}.
    const error = answer?.error || {};
    throw new ApiError(
      response.status,
      error.code || `http_${response.status}`,
      error.message || answer?.message || response.statusText || "The request was refused.",
      error.details || [],
      response.headers.get("Retry-After"),
    );
  }
  return withStatus ? { status: response.status, body: answer } : answer;
}

/** The API's answer to a refused request, in plain words: a heading, and a line per detail. */
export function describe(error) {
  if (!(error instanceof ApiError)) return { title: "Something went wrong in the console.", lines: [String(error.message || error)] };
  const titles = {
    0: "The API could not be reached.",
    400: "The request was refused as invalid.",
    403: "Your sign-in does not allow this.",
    404: "Not found (or not yours to see).",
    409: "Conflict: someone or something changed it first.",
    413: "Too large for the API.",
    415: "The API does not take that kind of content.",
    422: "The API could not apply this.",
    429: "Too many requests just now.",
    500: "The API failed on its side.",
    503: "The service is unavailable for a moment.",
  };
  const lines = [error.message];
  for (const detail of error.details || []) {
    const where = [detail.field ? `field ${detail.field}` : null, detail.index !== null && detail.index !== undefined ? `item ${detail.index}` : null]
      .filter(Boolean)
      .join(", ");
    lines.push(where ? `${where}: ${detail.reason}` : detail.reason);
  }
  if (error.status === 429 && error.retryAfter) lines.push(`Try again in ${error.retryAfter} s.`);
  if (error.status === 403) lines.push("Ask your administrator for the permission (scope) this needs.");
  return { title: titles[error.status] || `The API answered ${error.status}.`, lines, code: error.code };
}
