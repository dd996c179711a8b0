"""Signing in to the console as in AWS: the authorization code flow with PKCE against an OpenID provider, here a
small one on this machine that checks what a real one checks (the client, the redirect, the state round trip, the
S256 challenge against the verifier) and issues a token the stack's authorizer accepts."""

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from ..stack_harness import TokenMinter, running_stack
from .harness import Browser, BrowserStack

pytestmark = pytest.mark.db

CLIENT_ID = "sluice-console"
TENANT = "oidc-tenant"


@dataclass
class Provider:
    """What the provider was asked, and the tokens it gave."""

    minter: TokenMinter | None = None
    console_url: str = ""
    authorizations: list[dict[str, str]] = field(default_factory=list)
    exchanges: list[dict[str, str]] = field(default_factory=list)
    logouts: list[dict[str, str]] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    # code -> the authorization request it answers
    codes: dict[str, dict[str, str]] = field(default_factory=dict)


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def provider_handler(provider: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            return

        def _redirect(self, location: str) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.end_headers()

        def _json(self, status: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            # The console's origin may read the answer, as a provider allows a single-page application's origin.
            self.send_header("Access-Control-Allow-Origin", provider.console_url.split("/console/")[0])
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {name: values[0] for name, values in parse_qs(url.query).items()}
            if url.path == "/authorize":
                provider.authorizations.append(query)
                valid = (
                    query.get("response_type") == "code"
                    and query.get("client_id") == CLIENT_ID
                    and query.get("redirect_uri") == provider.console_url
                    and query.get("code_challenge_method") == "S256"
                    and len(query.get("code_challenge", "")) == 43
                    and query.get("state")
                )
                if not valid:
                    self._redirect(f"{query.get('redirect_uri', '')}?error=invalid_request&state={query.get('state')}")
                    return
                code = secrets.token_urlsafe(16)
                provider.codes[code] = query
                self._redirect(f"{provider.console_url}?{urlencode({'code': code, 'state': query['state']})}")
            elif url.path == "/logout":
                provider.logouts.append(query)
                self._redirect(query.get("logout_uri", "/"))
            else:
                self._json(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = {name: values[0] for name, values in parse_qs(self.rfile.read(length).decode()).items()}
            provider.exchanges.append(form)
            asked = provider.codes.pop(form.get("code", ""), None)
            if (
                asked is None
                or form.get("grant_type") != "authorization_code"
                or form.get("client_id") != CLIENT_ID
                or form.get("redirect_uri") != asked["redirect_uri"]
                or s256(form.get("code_verifier", "")) != asked["code_challenge"]
            ):
                self._json(400, {"error": "invalid_grant", "error_description": "the code or its verifier is wrong"})
                return
            assert provider.minter is not None
            token = provider.minter.mint(TENANT, "anna@acme.example", asked["scope"].removeprefix("openid "))
            provider.issued.append(token)
            self._json(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    return Handler


@pytest.fixture(scope="module")
def provider() -> Iterator[tuple[Provider, str]]:
    found = Provider()
    server = ThreadingHTTPServer(("127.0.0.1", 0), provider_handler(found))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def oidc_stack(server_dsn: str, provider: tuple[Provider, str]) -> Iterator[BrowserStack]:
    """A stack whose console signs in at the provider (as the Console* parameters or the Cognito pool set it)."""
    found, issuer = provider
    console = {
        "SLUICE_CONSOLE_AUTHORIZATION_URL": f"{issuer}/authorize",
        "SLUICE_CONSOLE_TOKEN_URL": f"{issuer}/token",
        "SLUICE_CONSOLE_LOGOUT_URL": f"{issuer}/logout",
        "SLUICE_CONSOLE_CLIENT_ID": CLIENT_ID,
        "SLUICE_CONSOLE_SCOPES": "openid jobs:read quarantine:read systems:read",
    }
    with running_stack(
        server_dsn, "sluice-oidc", prefix="sluice_oidc", function_env={"ConsoleFunction": console}
    ) as running:
        stack = BrowserStack(running, TokenMinter.for_stack(running))
        found.minter = stack.minter
        found.console_url = stack.url("/console/")
        yield stack


def open_console(browser: Browser, stack: BrowserStack, place: str) -> None:
    browser.driver.get(stack.url(f"/console/{place}"))


def test_a_person_signs_in_with_code_and_pkce_and_comes_back_to_the_page_they_asked_for(
    oidc_stack: BrowserStack, provider: tuple[Provider, str], browser: Browser
) -> None:
    found, _ = provider
    open_console(browser, oidc_stack, "#/jobs?status=failed")
    browser.drawn("signin")

    browser.wait_for("#sign-in").click()
    browser.drawn("jobs")

    (asked,) = found.authorizations
    (exchange,) = found.exchanges
    assert asked["scope"] == "openid jobs:read quarantine:read systems:read"
    assert s256(exchange["code_verifier"]) == asked["code_challenge"]
    assert 43 <= len(exchange["code_verifier"]) <= 128
    # Back where they were, with the filter; the code and state are off the address bar.
    assert browser.driver.current_url == oidc_stack.url("/console/#/jobs?status=failed")
    assert browser.driver.execute_script("return sessionStorage.getItem('sluice.token')") == found.issued[-1]
    assert browser.wait_for("#who-name").text == "Signed in as anna@acme.example"

    browser.wait_for("#sign-out").click()
    browser.drawn("signin")
    assert found.logouts[-1] == {"client_id": CLIENT_ID, "logout_uri": oidc_stack.url("/console/")}
    assert browser.driver.execute_script("return sessionStorage.getItem('sluice.token')") is None


def test_a_code_this_tab_did_not_ask_for_is_refused(oidc_stack: BrowserStack, browser: Browser) -> None:
    # A forged callback (another tab's or an attacker's code): no state of this tab matches it.
    open_console(browser, oidc_stack, "?code=stolen&state=forged")

    browser.drawn("signin")

    assert "not asked for by this tab" in browser.wait_for("main .message").text
    assert browser.driver.execute_script("return sessionStorage.getItem('sluice.token')") is None
    assert "code=" not in browser.driver.current_url
