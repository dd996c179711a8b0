// Who is signed in. The token lives in this tab's session storage only: never in local storage, a cookie or the
// address bar. Two ways in:
//   - "oidc": the authorization code flow with PKCE against the provider /console/config.json names;
//   - "fragment": a token handed over in the URL's fragment (#token=...), which a browser never sends to a server
//     (`sluice console` prints such a URL for the local stack).

const TOKEN = "sluice.token";
const RETURN_TO = "sluice.returnTo";
const PENDING = "sluice.pkce";
// A token this close to its expiry is treated as expired: a request sent now would arrive too late.
const EXPIRY_MARGIN_MS = 10000;

let config = { mode: "fragment" };

/** Load the sign-in settings the console function serves. */
export async function loadConfig() {
  const response = await fetch("config.json", { cache: "no-store" });
  if (response.ok) config = await response.json();
  return config;
}

export function signInMode() {
  return config.mode;
}

/** The token claim that names the tenant (the deployment's TenantClaim), or null when the stack did not say. */
export function tenantClaim() {
  return config.tenant_claim || null;
}

function base64url(bytes) {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomText(size = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(size)));
}

/** A JWT's claims (unverified: the API verifies; the console only reads who and until when). */
export function claimsOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const text = atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "="));
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(text, (char) => char.charCodeAt(0))));
  } catch {
    return null;
  }
}

/** The signed-in token, or null when there is none or it has expired. */
export function currentToken() {
  const token = sessionStorage.getItem(TOKEN);
  if (!token) return null;
  const claims = claimsOf(token);
  if (!claims || (claims.exp && claims.exp * 1000 <= Date.now() + EXPIRY_MARGIN_MS)) return null;
  return token;
}

/** Who is signed in: the token's subject (a person's e-mail when the provider puts it in). */
export function whoIsSignedIn() {
  const token = sessionStorage.getItem(TOKEN);
  const claims = token && claimsOf(token);
  if (!claims) return null;
  return { subject: claims.email || claims.username || claims.sub, claims };
}

function redirectUri() {
  return `${location.origin}${location.pathname}`;
}

/** Remember where the person was (the page and its filters, all in the hash) to come back after signing in. */
export function rememberPlace(hash) {
  if (hash && !hash.startsWith("#/signin") && !hash.startsWith("#token=")) sessionStorage.setItem(RETURN_TO, hash);
}

function takePlace() {
  const hash = sessionStorage.getItem(RETURN_TO);
  sessionStorage.removeItem(RETURN_TO);
  return hash || "#/jobs";
}

/**
 * Finish a sign-in that arrived with this page load: a token in the fragment, or an authorization code in the
 * query. Returns the hash to show next, or null when nothing arrived.
 */
export async function completeSignIn() {
  if (location.hash.startsWith("#token=")) {
    const token = decodeURIComponent(location.hash.slice("#token=".length));
    // Off the address bar (and out of the history) before anything else runs.
    history.replaceState(null, "", redirectUri());
    if (!claimsOf(token)) throw new Error("The link's token is not a JWT: ask for a new link.");
    sessionStorage.setItem(TOKEN, token);
    return takePlace();
  }
  const query = new URLSearchParams(location.search);
  if (config.mode !== "oidc" || !(query.has("code") || query.has("error"))) return null;
  history.replaceState(null, "", redirectUri());
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || "null");
  sessionStorage.removeItem(PENDING);
  if (query.has("error")) {
    throw new Error(`The sign-in provider refused: ${query.get("error_description") || query.get("error")}`);
  }
  if (!pending || pending.state !== query.get("state")) {
    throw new Error("This sign-in answer was not asked for by this tab (its state does not match): sign in again.");
  }
  const response = await fetch(config.token_endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code: query.get("code"),
      redirect_uri: redirectUri(),
      client_id: config.client_id,
      code_verifier: pending.verifier,
    }),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok || !answer.access_token) {
    throw new Error(`The token endpoint refused the code: ${answer.error_description || answer.error || response.status}`);
  }
  sessionStorage.setItem(TOKEN, answer.access_token);
  return pending.returnTo || takePlace();
}

/** Start the provider's sign-in (oidc); returns false when this console has no provider (fragment mode). */
export async function startSignIn(returnTo) {
  rememberPlace(returnTo);
  if (config.mode !== "oidc") return false;
  const verifier = randomText(48);
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  const state = randomText(24);
  sessionStorage.setItem(PENDING, JSON.stringify({ state, verifier, returnTo: sessionStorage.getItem(RETURN_TO) }));
  const url = new URL(config.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: config.client_id,
    redirect_uri: redirectUri(),
    scope: config.scope,
    state,
    code_challenge: base64url(new Uint8Array(digest)),
    code_challenge_method: "S256",
    ...(config.audience ? { audience: config.audience } : {}),
  }).toString();
  location.assign(url.toString());
  return true;
}

/** Forget the token; with a provider that has a sign-out endpoint, end its session too. */
export function signOut() {
  sessionStorage.removeItem(TOKEN);
  sessionStorage.removeItem(RETURN_TO);
  if (config.mode === "oidc" && config.logout_endpoint) {
    const url = new URL(config.logout_endpoint);
    url.search = new URLSearchParams({ client_id: config.client_id, logout_uri: redirectUri() }).toString();
    location.assign(url.toString());
    return true;
  }
  return false;
}

/** The token expired or was refused: drop it, keep the place. */
export function expire(hash) {
  sessionStorage.removeItem(TOKEN);
  rememberPlace(hash);
}
