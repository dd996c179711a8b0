"""The console's shell in a real browser: signing in with `sluice console`'s URL, the jobs list and a job, an
expired or refused sign-in, the health page, and the quality bar every page keeps (labels, keyboard, phone width,
local times and separated numbers)."""

import time
import uuid
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from ..stack_harness import finished_job, http, now_text
from .harness import Browser, BrowserStack

pytestmark = pytest.mark.db

SENSOR = "6b1d2c3e-4f50-4a61-8b72-93a4b5c6d7e8"
PAGES = ["jobs", "quarantine", "systems", "upload", "alarms", "webhooks", "health"]


def new_tenant() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def register(stack: BrowserStack, tenant: str, name: str) -> str:
    return str(stack.register_system(tenant, name)["id"])


def send(stack: BrowserStack, tenant: str, system: str, values: list[float], sub: str = "device-7") -> dict[str, Any]:
    """A batch of readings (bar) for ``system``, one a second back from now; its finished job."""
    bearer = stack.token(tenant=tenant, sub=sub)
    readings = [
        {"sensor_id": SENSOR, "timestamp": now_text(-index), "value": value, "unit": "bar", "quality": 95}
        for index, value in enumerate(values)
    ]
    reply = http("POST", stack.url("/api/v1/data/ingest"), bearer, {"system_id": system, "readings": readings})
    assert reply.status == 202, reply.body
    return finished_job(stack.running, bearer, reply.body["job_id"])


def sign_in(browser: Browser, stack: BrowserStack, tenant: str, place: str = "#/jobs", **token: Any) -> None:
    """Open the console signed in as the tenant's operator, at ``place``."""
    browser.sign_in(stack.token(tenant=tenant, **token))
    browser.show(place)


def one_row[T](rows: list[T]) -> list[T] | None:
    return rows if len(rows) == 1 else None


def test_sluice_console_prints_a_url_that_signs_in_and_leaves_the_token_only_in_the_tabs_session(
    stack: BrowserStack, browser: Browser
) -> None:
    tenant = new_tenant()
    printed = stack.running.sluice("console", "--api", stack.base_url, "--tenant", tenant, "--sub", "anna")
    assert printed.returncode == 0, printed.stderr
    url = printed.stdout.strip()
    assert url.startswith(f"{stack.base_url}/console/#token=")

    browser.driver.get(url)
    browser.drawn("jobs")

    assert browser.wait_for("#who-name").text == "Signed in as anna"
    # Off the address bar and out of the history; kept in this tab's session storage only.
    assert "token" not in browser.driver.current_url
    assert browser.driver.execute_script("return sessionStorage.getItem('sluice.token')") == url.split("#token=")[1]
    assert browser.driver.execute_script("return Object.keys(localStorage)") == []
    assert browser.wait_for("main p.empty").text == "No jobs match these filters."
    browser.driver.back()
    assert "token" not in browser.driver.current_url


def test_jobs_are_listed_newest_first_filtered_by_system_and_a_job_leads_to_its_quarantine(
    stack: BrowserStack, browser: Browser
) -> None:
    tenant = new_tenant()
    press, pump = register(stack, tenant, "press-1"), register(stack, tenant, "pump-2")
    first = send(stack, tenant, press, [210.0, 212.5])
    second = send(stack, tenant, pump, [150.0, 812.5, 151.0], sub="device-9")
    sign_in(browser, stack, tenant)

    rows = browser.driver.find_elements(By.CSS_SELECTOR, "#jobs-list tbody tr")
    assert [str(row.find_element(By.CSS_SELECTOR, "a").get_attribute("href")).rsplit("/", 1)[1] for row in rows] == [
        second["job_id"],
        first["job_id"],
    ]
    assert "pump-2" in rows[0].text
    assert "press-1" in rows[1].text

    # Filter by system: the datalist offers the tenant's systems by name; the value is the id.
    system = browser.wait_for("#jobs-system")
    system.send_keys(pump, Keys.ENTER)
    browser.wait_until(lambda driver: "system_id=" in driver.current_url, "the filter in the address")
    rows = browser.wait_until(
        lambda driver: one_row(driver.find_elements(By.CSS_SELECTOR, "#jobs-list tbody tr")), "the filtered list"
    )
    assert "pump-2" in rows[0].text

    rows[0].find_element(By.CSS_SELECTOR, "a").click()
    browser.drawn("jobs")
    facts = browser.wait_for("#job-facts").text
    assert second["job_id"] in facts
    assert "device-9" in facts  # who sent it
    assert "Quarantined\n1" in facts
    assert "Success rate\n66.7%" in facts

    browser.wait_for("#job-quarantine").click()
    browser.drawn("quarantine")
    assert f"job_id={second['job_id']}" in browser.driver.current_url
    assert "review_status=pending" in browser.driver.current_url


def test_a_filtered_page_survives_an_expired_sign_in_and_a_new_link(stack: BrowserStack, browser: Browser) -> None:
    tenant = new_tenant()
    sign_in(browser, stack, tenant, "#/jobs?status=failed&source=upload")
    browser.drawn("jobs")
    # The token expires while the page is open: the next page change finds it so.
    expired = stack.token(tenant=tenant, lifetime_s=60, issued_at=int(time.time()) - 3600)
    browser.driver.execute_script("sessionStorage.setItem('sluice.token', arguments[0])", expired)

    browser.show("#/jobs?status=failed&source=upload&system_id=")
    browser.drawn("signin")

    assert "Your sign-in has expired" in browser.wait_for("main .message").text
    assert ".venv/bin/sluice console" in browser.wait_for("main pre").text
    # A new link opened in the same tab brings the person back to the page with its filters.
    browser.driver.get(stack.url(f"/console/#token={stack.token(tenant=tenant)}"))
    browser.drawn("jobs")
    assert browser.driver.current_url.endswith("#/jobs?status=failed&source=upload&system_id=")
    assert Select(browser.wait_for("#jobs-status")).first_selected_option.get_attribute("value") == "failed"
    assert Select(browser.wait_for("#jobs-source")).first_selected_option.get_attribute("value") == "upload"


@pytest.mark.console_errors(r"401 \(Unauthorized\)")
def test_a_token_the_api_refuses_returns_to_sign_in(stack: BrowserStack, browser: Browser) -> None:
    # Unexpired, but of another audience: only the API can tell, and answers 401.
    browser.open(f"/console/#token={stack.minter.mint(new_tenant(), aud='someone-else')}")

    browser.drawn("signin")

    assert "expired or was refused" in browser.wait_for("main .message").text
    assert browser.driver.execute_script("return sessionStorage.getItem('sluice.token')") is None


def test_the_health_page_shows_each_dependency_to_an_operator(stack: BrowserStack, browser: Browser) -> None:
    sign_in(browser, stack, new_tenant(), "#/health")
    browser.drawn("health")

    checks = browser.wait_for("#health").text
    assert "Every dependency answers." in checks
    for dependency in ("database", "bucket", "ingest queue", "jobs table"):
        assert dependency in checks


@pytest.mark.console_errors(r"403 \(Forbidden\)")
def test_without_the_operator_scope_the_health_page_says_so_in_plain_words(
    stack: BrowserStack, browser: Browser
) -> None:
    sign_in(browser, stack, new_tenant(), "#/health", scope="jobs:read quarantine:read")
    browser.drawn("health")

    refusal = browser.wait_for("main .message.error")
    assert refusal.get_attribute("data-status") == "403"
    assert "Your sign-in does not allow this." in refusal.text
    assert "permission (scope)" in refusal.text


@pytest.mark.parametrize("browser", ["desktop", "phone"], indirect=True)
def test_every_page_labels_its_controls_and_fits_the_screen(stack: BrowserStack, browser: Browser) -> None:
    tenant = new_tenant()
    send(stack, tenant, register(stack, tenant, "press-1"), [1234.0])
    sign_in(browser, stack, tenant)
    for page in PAGES:
        browser.show(f"#/{page}")
        browser.drawn(page)

        unlabelled = browser.driver.execute_script(
            """return [...document.querySelectorAll('input, select, textarea, button')]
                 .filter((el) => el.type !== 'hidden' && el.offsetParent !== null)
                 .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                                 && !(el.tagName === 'BUTTON' && el.textContent.trim()))
                 .map((el) => el.outerHTML)"""
        )
        assert unlabelled == [], page
        # The page itself never scrolls sideways; a wide table scrolls inside its own box.
        overflow = browser.driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, page
        assert browser.driver.execute_script("return document.documentElement.lang") == "en"


def test_the_keyboard_reaches_every_page_and_shows_where_it_is(stack: BrowserStack, browser: Browser) -> None:
    sign_in(browser, stack, new_tenant())
    # A page change puts focus on the content (main); Shift+Tab walks back through the bar to the skip link.
    assert browser.driver.switch_to.active_element.get_attribute("id") == "main"
    visited = []
    for _ in range(10):
        browser.driver.switch_to.active_element.send_keys(Keys.SHIFT, Keys.TAB)
        visited.append(browser.driver.switch_to.active_element.text)
    assert visited[-1] == "Skip to content"
    assert {"Jobs", "Quarantine", "Systems", "Upload", "Alarms", "Webhooks", "Health", "Sign out"} <= set(visited)
    # Focus is drawn: an outline of its own, not the browser's default removed.
    focused = browser.driver.switch_to.active_element
    assert browser.driver.execute_script("return getComputedStyle(arguments[0]).outlineStyle", focused) == "solid"
    # Enter on a page's link opens it.
    link = browser.driver.find_element(By.CSS_SELECTOR, '#nav a[data-page="health"]')
    link.send_keys(Keys.ENTER)
    browser.drawn("health")
    assert link.get_attribute("aria-current") == "page"


def test_times_are_local_with_utc_on_hover_and_counts_have_separators(stack: BrowserStack, browser: Browser) -> None:
    tenant = new_tenant()
    system = register(stack, tenant, "press-1")
    job = send(stack, tenant, system, [200.0 + index % 300 for index in range(1234)])
    sign_in(browser, stack, tenant, f"#/jobs/{job['job_id']}")
    browser.drawn("jobs")

    facts = browser.wait_for("#job-facts")
    created = facts.find_element(By.CSS_SELECTOR, "time")
    assert str(created.get_attribute("title")).endswith(" UTC")
    assert str(created.get_attribute("datetime")).startswith(job["created_at"][:19])
    separated = browser.driver.execute_script("return new Intl.NumberFormat().format(1234)")
    assert separated != "1234"
    assert f"Readings\n{separated}" in facts.text
