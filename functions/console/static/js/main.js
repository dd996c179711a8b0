// The console's shell: sign-in, the page bar, and the router (#/page/id?filters: the place lives in the address).
import { SignInRequired } from "./api.js";
import { completeSignIn, currentToken, expire, loadConfig, signInMode, signOut, startSignIn, whoIsSignedIn } from "./auth.js";
import { h, show } from "./dom.js";
import { message } from "./ui.js";

const PAGES = {
  jobs: () => import("./pages/jobs.js"),
  quarantine: () => import("./pages/quarantine.js"),
  systems: () => import("./pages/systems.js"),
  upload: () => import("./pages/upload.js"),
  alarms: () => import("./pages/alarms.js"),
  webhooks: () => import("./pages/webhooks.js"),
  health: () => import("./pages/health.js"),
};
const TITLES = {
  jobs: "Jobs", quarantine: "Quarantine", systems: "Systems", upload: "Upload", alarms: "Alarms", webhooks: "Webhooks", health: "Health",
  signin: "Sign in",
};

const main = document.getElementById("main");
// Each navigation gets a generation: a slow page that finishes after the person moved on must not draw.
let generation = 0;

function parseRoute(hash) {
  const [path, query = ""] = hash.replace(/^#\/?/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { page: parts[0] || "jobs", id: parts[1] || null, params: new URLSearchParams(query), hash };
}

function markNav(page) {
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function showWho() {
  const who = whoIsSignedIn();
  document.getElementById("who").hidden = !who;
  document.getElementById("who-name").textContent = who ? `Signed in as ${who.subject}` : "";
}

/** The sign-in page: the provider's button, or (no provider) how to get a signed-in link. */
function renderSignIn(reason) {
  document.title = "Sign in · Sluice console";
  markNav(null);
  showWho();
  const oidc = signInMode() === "oidc";
  show(main,
    h("h1", { id: "signin-heading" }, "Sign in"),
    reason ? message("info", reason) : null,
    oidc
      ? h("div", { class: "panel" },
        h("p", {}, "Sign in with your organisation's account. You come back to the page you were on."),
        h("button", { type: "button", id: "sign-in", onclick: () => startSignIn(sessionStorage.getItem("sluice.returnTo")) }, "Sign in"))
      : h("div", { class: "panel" },
        h("p", {}, "This console signs in with a link that carries a token. On the machine running the stack, run:"),
        h("pre", { class: "raw" }, h("code", {}, ".venv/bin/sluice console")),
        h("p", {}, "and open the URL it prints in this tab. You come back to the page you were on, with its filters.")));
  document.body.dataset.rendered = "signin";
  main.focus();
}

async function route() {
  const current = ++generation;
  delete document.body.dataset.rendered;
  const where = parseRoute(location.hash || "#/jobs");
  if (where.page === "signin") return renderSignIn();
  if (!currentToken()) {
    const hadToken = sessionStorage.getItem("sluice.token") !== null;
    expire(location.hash);
    return renderSignIn(hadToken ? "Your sign-in has expired. Sign in again to go on where you were." : null);
  }
  const load = PAGES[where.page];
  if (!load) {
    show(main, h("h1", {}, "Not found"), h("p", {}, "There is no such page. "), h("a", { href: "#/jobs" }, "Go to Jobs"));
    return;
  }
  markNav(where.page);
  showWho();
  document.title = `${TITLES[where.page]} · Sluice console`;
  try {
    const module = await load();
    if (current !== generation) return;
    await module.render(main, where, { isCurrent: () => current === generation });
    if (current === generation) {
      // The first page drawn with its data: time to interactive, as the benchmark reads it.
      if (!performance.getEntriesByName("sluice:interactive").length) performance.mark("sluice:interactive");
      document.body.dataset.rendered = where.page;
      document.dispatchEvent(new CustomEvent("sluice:rendered", { detail: where.page }));
    }
  } catch (error) {
    if (error instanceof SignInRequired) {
      expire(location.hash);
      renderSignIn("Your sign-in has expired or was refused. Sign in again to go on where you were.");
      return;
    }
    if (current === generation) show(main, message("error", "The page failed to load.", [String(error.message || error)]));
  }
}

// An action that met an expired or refused sign-in (ui.js errorMessage): after the page has shown its message,
// the sign-in page replaces it, and nothing the old page still awaits may draw over it.
document.addEventListener("sluice:signin-required", () => {
  generation += 1;
  setTimeout(() => {
    expire(location.hash);
    renderSignIn("Your sign-in has expired or was refused. Sign in again to go on where you were.");
  }, 0);
});

/** A sign-in that arrived (a token in the fragment, a code in the query) is taken in; then the page is drawn. */
async function arrive() {
  let next = null;
  try {
    next = await completeSignIn();
  } catch (error) {
    renderSignIn(String(error.message || error));
    return;
  }
  if (next && location.hash !== next) location.hash = next;
  else await route();
}

async function start() {
  document.getElementById("sign-out").addEventListener("click", () => {
    if (!signOut()) renderSignIn("You have signed out.");
  });
  // The first page's module loads while the sign-in settings are read.
  const first = PAGES[parseRoute(location.hash || "#/jobs").page];
  if (first) first().catch(() => {});
  await loadConfig();
  window.addEventListener("hashchange", () => {
    // A new link pasted into this tab (#token=...) signs in again; any other change is a page change, which
    // moves focus to the content, as a page load would.
    if (location.hash.startsWith("#token=")) arrive();
    else route().then(() => main.focus({ preventScroll: true }));
  });
  await arrive();
}

start();
