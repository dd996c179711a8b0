"""A real headless Chromium for the browser tests: Debian's chromium and chromium-driver (``make browser`` installs
them), driven through Selenium at their fixed paths, with the page's console log kept and checked.

Selenium never downloads anything here: given the driver's path in ``Service``, it skips Selenium Manager (the
tool that would fetch a browser and driver), and ``binary_location`` names the browser.
"""

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from sluice_tools.cli import ALL_SCOPES

from ..stack_harness import RunningStack, TokenMinter, http

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_S = 10.0


@dataclass(frozen=True)
class Viewport:
    """A screen the page is laid out for: its CSS pixel size, and whether it is a phone's (which honours the
    page's viewport meta tag, as a phone does)."""

    name: str
    width: int
    height: int
    mobile: bool = False


DESKTOP = Viewport("desktop", 1280, 800)
PHONE = Viewport("phone", 390, 844, mobile=True)
VIEWPORTS = {viewport.name: viewport for viewport in (DESKTOP, PHONE)}


@dataclass(frozen=True)
class ConsoleEntry:
    """One line of the page's console log: SEVERE for console.error, uncaught errors and failed requests."""

    level: str
    source: str
    message: str


@dataclass(frozen=True)
class PageLoad:
    """What loading the current page cost, from the browser's Navigation and Resource Timing entries."""

    # Bytes over the network (headers included) for the document and every resource it loaded so far.
    transferred_bytes: int
    resources: int
    # From the start of the navigation: the document parsed (domInteractive), and its load event ended.
    interactive_ms: float
    loaded_ms: float


PAGE_LOAD = """
const [navigation] = performance.getEntriesByType("navigation");
if (!navigation || !navigation.loadEventEnd) return null;
const resources = performance.getEntriesByType("resource");
return {
  transferred: navigation.transferSize + resources.reduce((sum, entry) => sum + entry.transferSize, 0),
  resources: resources.length,
  interactive: navigation.domInteractive,
  loaded: navigation.loadEventEnd,
};
"""


def start_chromium(viewport: Viewport) -> webdriver.Chrome:
    """Headless Chromium laid out at ``viewport``, keeping every console message."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} missing: run 'make browser' (infra/install-chromium.sh)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    options.add_argument("--headless=new")
    options.add_argument(f"--window-size={DESKTOP.width},{DESKTOP.height}")
    # Shared memory in /tmp rather than /dev/shm, which may be small (64 MiB in a container). Debian's launcher means
    # to add this flag when /dev/shm is small, but its test breaks when /dev/shm is mounted twice.
    options.add_argument("--disable-dev-shm-usage")
    # Chromium's sandbox refuses to run as root (CI runs as root); elsewhere it stays on.
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    # The window's size leaves the page less than it (headless Chromium keeps room for a toolbar, and no window is
    # narrower than 500 px): the page's own viewport is set instead, exactly, for every page the tab opens.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {
            "width": viewport.width,
            "height": viewport.height,
            "screenWidth": viewport.width,
            "screenHeight": viewport.height,
            "deviceScaleFactor": 1,
            "mobile": viewport.mobile,
        },
    )
    return driver


@dataclass
class Browser:
    """One Chromium tab on the stack, with waits and the console log kept across pages."""

    driver: webdriver.Chrome
    base_url: str
    viewport: Viewport
    # Patterns (re.search) of SEVERE console messages the test provokes on purpose: a 401 it asks for, say.
    expected_errors: list[str] = field(default_factory=list)
    _console: list[ConsoleEntry] = field(default_factory=list)

    def open(self, path: str) -> None:
        """Load ``path`` (``/docs/``, ``/console/#...``) of the stack's HTTP API."""
        self.driver.get(f"{self.base_url}{path}")

    def sign_in(self, token: str) -> None:
        """Open the console signed in with ``token`` in the fragment, as `sluice console` prints its URL, and wait
        for its first page (Jobs) to be drawn."""
        self.open(f"/console/#token={token}")
        self.drawn("jobs")

    def drawn(self, page: str) -> None:
        """Wait until the console has drawn ``page`` with its data (main.js marks the body so)."""
        self.wait_for(f'body[data-rendered="{page}"]')

    def show(self, place: str) -> None:
        """Change the console's hash to ``place``, as a link does. The mark of the page drawn before is cleared
        first, so a wait for a page sees the new one (the hash change is handled after this script returns); the
        same hash again changes nothing."""
        self.driver.execute_script(
            "if (location.hash !== arguments[0]) {"
            " delete document.body.dataset.rendered; location.hash = arguments[0]; }",
            place,
        )

    def wait_for(self, css: str, timeout_s: float = WAIT_S) -> WebElement:
        """The first element matching ``css`` once it is visible."""
        found: WebElement = self._wait(timeout_s).until(
            expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, css)),
            f"no visible {css!r} within {timeout_s} s",
        )
        return found

    def wait_for_text(self, css: str, text: str, timeout_s: float = WAIT_S) -> WebElement:
        """The first visible element matching ``css`` whose text contains ``text``, once there is one."""

        def holding(driver: webdriver.Chrome) -> WebElement | None:
            for element in driver.find_elements(By.CSS_SELECTOR, css):
                if text in element.text and element.is_displayed():
                    return element
            return None

        return self.wait_until(holding, f"a visible {css!r} with {text!r}", timeout_s)

    def wait_gone(self, css: str, timeout_s: float = WAIT_S) -> None:
        """Until no element matching ``css`` is visible (or none exists)."""
        self._wait(timeout_s).until(
            expected_conditions.invisibility_of_element_located((By.CSS_SELECTOR, css)),
            f"{css!r} still visible after {timeout_s} s",
        )

    def wait_until[T](self, probe: Callable[[webdriver.Chrome], T | None], what: str, timeout_s: float = WAIT_S) -> T:
        """``probe``'s first truthy answer (it is called with the driver every 0.1 s); ``what`` names what is
        awaited in the timeout's message."""
        answer = self._wait(timeout_s).until(probe, f"{what}: not within {timeout_s} s")
        assert answer is not None  # until() returns only a truthy answer, or raises TimeoutException
        return answer

    def run_async(self, script: str, *arguments: Any, timeout_s: float = WAIT_S) -> Any:
        """Run ``script`` in the page; it ends by calling ``arguments[arguments.length - 1]`` with its answer."""
        self.driver.set_script_timeout(timeout_s)
        return self.driver.execute_async_script(script, *arguments)

    def page_load(self) -> PageLoad:
        """The current page's weight and timings, once its load event has ended."""
        measured = self.wait_until(lambda driver: driver.execute_script(PAGE_LOAD), "the page's load event")
        return PageLoad(
            int(measured["transferred"]), int(measured["resources"]), measured["interactive"], measured["loaded"]
        )

    def expect_console_errors(self, *patterns: str) -> None:
        """Let SEVERE console messages matching any of ``patterns`` (re.search) pass the check at teardown."""
        self.expected_errors.extend(patterns)

    def console(self) -> list[ConsoleEntry]:
        """Every console message since the tab opened (Chromium hands each out once; they are kept here)."""
        self._console.extend(
            ConsoleEntry(entry["level"], entry.get("source", ""), entry["message"])
            for entry in self.driver.get_log("browser")  # type: ignore[no-untyped-call]  # Selenium leaves it untyped
        )
        return list(self._console)

    def unexpected_errors(self) -> list[ConsoleEntry]:
        """SEVERE console messages that no expected pattern matches."""
        expected = [re.compile(pattern) for pattern in self.expected_errors]
        return [
            entry
            for entry in self.console()
            if entry.level == "SEVERE" and not any(pattern.search(entry.message) for pattern in expected)
        ]

    def _wait(self, timeout_s: float) -> WebDriverWait[webdriver.Chrome]:
        return WebDriverWait(
            self.driver, timeout_s, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
        )


@dataclass(frozen=True)
class BrowserStack:
    """`make run`'s stack the browser tests share: where it serves, tokens it accepts and its database."""

    running: RunningStack
    minter: TokenMinter

    @property
    def base_url(self) -> str:
        """The HTTP API twin, e.g. http://127.0.0.1:41234 (the console is at ``/console/``)."""
        return self.running.api

    @property
    def moto_endpoint(self) -> str:
        """The moto server standing in for S3, SQS, DynamoDB and Secrets Manager."""
        return self.running.moto

    @property
    def dsn(self) -> str:
        """The stack's own database (a scratch database, dropped after the session)."""
        return self.running.dsn

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def token(
        self,
        *,
        tenant: str = "demo",
        sub: str = "browser-operator",
        scope: str = ALL_SCOPES,
        lifetime_s: int = 3600,
        issued_at: int | None = None,
    ) -> str:
        """A token the stack accepts, signed with the checkout's local key as `sluice token` signs; an
        ``issued_at`` in the past with a short ``lifetime_s`` makes an expired one."""
        return self.minter.mint(tenant, sub, scope, lifetime_s=lifetime_s, issued_at=issued_at)

    def register_system(self, tenant: str, name: str, system_id: str | None = None) -> dict[str, Any]:
        """Register a system of ``tenant`` through the API (201): the system as the API shows it."""
        body = {"name": name} if system_id is None else {"name": name, "id": system_id}
        answer = http("POST", self.url("/api/v1/systems"), self.token(tenant=tenant), body)
        assert answer.status == 201, answer.body
        system: dict[str, Any] = answer.body
        return system

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """An autocommit connection to the stack's database, as its owner."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            yield conn
