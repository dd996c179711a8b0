"""Fixtures of the browser tests: one `make run` stack for the session, and a fresh headless Chromium per test
whose console must stay free of errors.

    def test_x(stack: BrowserStack, browser: Browser) -> None: ...         # 1280x800
    def test_y(phone_browser: Browser) -> None: ...                         # 390x844, a phone's layout
    @pytest.mark.parametrize("browser", ["desktop", "phone"], indirect=True)  # both
    @pytest.mark.console_errors(r"401 \\(Unauthorized\\)")                  # errors provoked on purpose

When a test fails, its screenshot, page source and console log are written to .local/browser-failures/.
"""

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from ..paths import REPO_ROOT
from ..stack_harness import TokenMinter, running_stack
from .harness import DESKTOP, PHONE, VIEWPORTS, Browser, BrowserStack, Viewport, start_chromium

STACK_NAME = "sluice-browser"
FAILURES = REPO_ROOT / ".local" / "browser-failures"
_CALL_FAILED = pytest.StashKey[bool]()


@pytest.fixture(scope="session")
def stack(server_dsn: str) -> Iterator[BrowserStack]:
    """`make run`'s stack on free ports with a database of its own, shared by the session's browser tests."""
    with running_stack(server_dsn, STACK_NAME, prefix="sluice_browser") as running:
        yield BrowserStack(running, TokenMinter.for_stack(running))


@pytest.fixture
def browser(request: pytest.FixtureRequest, stack: BrowserStack) -> Iterator[Browser]:
    """A fresh Chromium tab at 1280x800 (or the viewport named by an indirect parameter: "desktop", "phone")."""
    viewport = VIEWPORTS[getattr(request, "param", DESKTOP.name)]
    yield from _browser(request, stack, viewport)


@pytest.fixture
def phone_browser(request: pytest.FixtureRequest, stack: BrowserStack) -> Iterator[Browser]:
    """A fresh Chromium tab laid out as a 390x844 phone."""
    yield from _browser(request, stack, PHONE)


def _browser(request: pytest.FixtureRequest, stack: BrowserStack, viewport: Viewport) -> Iterator[Browser]:
    driver = start_chromium(viewport)
    opened = Browser(driver, stack.base_url, viewport)
    for marker in request.node.iter_markers("console_errors"):
        opened.expect_console_errors(*marker.args)
    try:
        yield opened
        if request.node.stash.get(_CALL_FAILED, False):
            _keep_evidence(opened, request.node.nodeid)
        unexpected = opened.unexpected_errors()
        if unexpected:
            lines = "\n".join(f"  {entry.level} {entry.source}: {entry.message}" for entry in unexpected)
            pytest.fail(f"the browser console logged errors:\n{lines}", pytrace=False)
    finally:
        driver.quit()


def _keep_evidence(browser: Browser, nodeid: str) -> None:
    name = "".join(char if char.isalnum() or char in "-_." else "_" for char in nodeid)
    FAILURES.mkdir(parents=True, exist_ok=True)
    base = FAILURES / name
    browser.driver.save_screenshot(f"{base}.png")
    Path(f"{base}.html").write_text(browser.driver.page_source, encoding="utf-8")
    console = "\n".join(f"{entry.level} {entry.source}: {entry.message}" for entry in browser.console())
    Path(f"{base}.console.txt").write_text(console + "\n", encoding="utf-8")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Note a failed test body, for the browser fixture's teardown to keep its evidence."""
    report: pytest.TestReport = yield
    if report.when == "call" and report.failed:
        item.stash[_CALL_FAILED] = True
    return report
