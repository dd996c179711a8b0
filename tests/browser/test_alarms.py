"""The console's Alarms page in a real browser: an alarm raised (written with SQL as the evaluator writes it: the
alarm and its "raised" history entry) is listed and filtered; acknowledging it with a note records who and when,
which the page and the API show; an alarm acknowledged by someone else meanwhile is a 409 in plain words, and a
sign-in without alerts:write is a 403. Each test has a tenant of its own."""

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select

from ..stack_harness import http
from .harness import Browser, BrowserStack

pytestmark = pytest.mark.db

SUB = "anna@acme.example"
CONFLICT = r"/api/v1/alarms/[0-9a-f-]+/acknowledge - Failed to load resource: .* 409 \(Conflict\)"
FORBIDDEN = r"/api/v1/alarms/[0-9a-f-]+/acknowledge - Failed to load resource: .* 403 \(Forbidden\)"


@dataclass(frozen=True)
class Raised:
    """An alarm of a tenant of its own, on one of its systems."""

    tenant: str
    system_id: str
    alarm_id: str


def raise_alarm(stack: BrowserStack, *, severity: str = "critical", value: float = 262.5) -> Raised:
    """A threshold rule on a new tenant's system and an active alarm of it, as the evaluator writes them (as the
    database's owner: the evaluator's own role writes the same rows)."""
    tenant = f"alarms-{uuid.uuid4().hex[:10]}"
    system = stack.register_system(tenant, "press-17 (hall 1)")
    trigger = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    with stack.connect() as conn:
        [rule_id] = conn.execute(
            "INSERT INTO alert_rules (tenant_id, name, kind, system_id, severity, unit, condition, threshold,"
            " clear_threshold, for_seconds, created_by)"
            " VALUES (%s, 'supply pressure high', 'threshold', %s, %s, 'bar', 'above', 250, 240, 300, %s)"
            " RETURNING id",
            (tenant, system["id"], severity, SUB),
        ).fetchone() or (None,)
        [alarm_id] = conn.execute(
            "INSERT INTO alarms (tenant_id, rule_id, rule_name, kind, severity, system_id, sensor_id, unit, status,"
            " value, trigger_time) VALUES (%s, %s, 'supply pressure high', 'threshold', %s, %s, %s, 'bar', 'active',"
            " %s, %s) RETURNING id",
            (tenant, rule_id, severity, system["id"], uuid.uuid4(), value, trigger),
        ).fetchone() or (None,)
        conn.execute(
            "INSERT INTO alarm_events (alarm_id, event, detail) VALUES (%s, 'raised', %s)",
            (alarm_id, json.dumps({"trigger_time": trigger.isoformat(), "value": value})),
        )
    return Raised(tenant, system["id"], str(alarm_id))


def alarm_of(stack: BrowserStack, raised: Raised) -> dict[str, Any]:
    answer = http("GET", stack.url(f"/api/v1/alarms/{raised.alarm_id}"), stack.token(tenant=raised.tenant))
    assert answer.status == 200, answer.body
    found: dict[str, Any] = answer.body
    return found


def open_alarm(browser: Browser, raised: Raised) -> None:
    browser.show(f"#/alarms/{raised.alarm_id}")
    browser.drawn("alarms")


def test_an_active_alarm_is_listed_and_acknowledging_it_records_who_and_when(
    stack: BrowserStack, browser: Browser
) -> None:
    # Given an active critical alarm, and a person on the alarms page filtered to active ones
    raised = raise_alarm(stack)
    browser.sign_in(stack.token(tenant=raised.tenant, sub=SUB))
    browser.show("#/alarms?status=active")
    browser.drawn("alarms")

    # Then it is listed with its rule, severity, system name and value
    row = browser.wait_for_text("#alarms-list tbody tr", "supply pressure high")
    for shown in ("active", "critical", "press-17 (hall 1)", "262.5 bar"):
        assert shown in row.text

    # When they open it, write a note and acknowledge it
    row.find_element(By.CSS_SELECTOR, "a").click()
    browser.drawn("alarms")
    raising = browser.wait_for("#alarm-history li")
    assert raising.text.startswith("Raised")
    # Who (the evaluator) and what it saw: the value, and the trigger time as a local time with UTC on hover
    assert "by the evaluator" in raising.text
    assert "value 262.5" in raising.text
    assert len(raising.find_elements(By.CSS_SELECTOR, "time[title$=' UTC']")) == 2
    browser.driver.find_element(By.ID, "acknowledge-note").send_keys("valve replaced")
    browser.driver.find_element(By.ID, "acknowledge-submit").click()

    # Then the page says so, shows who and when, the note, and the history's new entry; the form is gone
    done = browser.wait_for("#acknowledge-outcome .message.success")
    assert f"acknowledged by {SUB}" in done.text
    alarm = alarm_of(stack, raised)
    assert (alarm["status"], alarm["acknowledged_by"], alarm["acknowledge_note"]) == (
        "acknowledged",
        SUB,
        "valve replaced",
    )
    facts = browser.driver.find_element(By.ID, "alarm-facts")
    assert f"Acknowledged\n{SUB}" in facts.text
    shown_times = [str(t.get_attribute("datetime")) for t in facts.find_elements(By.TAG_NAME, "time")]
    assert any(moment.startswith(alarm["acknowledged_at"][:19]) for moment in shown_times), shown_times
    assert "valve replaced" in facts.text
    entries = browser.driver.find_elements(By.CSS_SELECTOR, "#alarm-history li")
    assert [entry.text.split(" ")[0] for entry in entries] == ["Raised", "Acknowledged"]
    assert f"by {SUB}" in entries[1].text
    assert "valve replaced" in entries[1].text
    assert browser.driver.find_elements(By.ID, "acknowledge-form") == []
    assert browser.driver.find_element(By.TAG_NAME, "h1").text == "supply pressure high: acknowledged"

    # And back on the list, it is no longer active but acknowledged, by them
    browser.driver.find_element(By.LINK_TEXT, "← Alarms").click()
    browser.drawn("alarms")
    assert browser.wait_for("#alarms-list p.empty").text == "No alarms match these filters."
    browser.show("#/alarms?status=acknowledged")
    browser.drawn("alarms")
    assert SUB in browser.wait_for_text("#alarms-list tbody tr", "supply pressure high").text


def test_alarms_are_paged_with_the_apis_cursor_and_filtered_by_severity(stack: BrowserStack, browser: Browser) -> None:
    # Given a tenant with one critical alarm and, raised after it, 50 cleared warnings of the same rule and sensor
    raised = raise_alarm(stack)
    with stack.connect() as conn:
        conn.execute(
            "INSERT INTO alarms (tenant_id, rule_id, rule_name, kind, severity, system_id, sensor_id, unit, status,"
            " value, trigger_time, raised_at, cleared_time, cleared_at, cleared_reason)"
            " SELECT tenant_id, rule_id, rule_name, kind, 'warning', system_id, sensor_id, unit, 'cleared', value,"
            " trigger_time, now() + n * interval '1 second', now(), now(), 'condition_cleared'"
            " FROM alarms, generate_series(1, 50) AS n WHERE id = %s",
            (raised.alarm_id,),
        )
    browser.sign_in(stack.token(tenant=raised.tenant, sub=SUB))

    # When the person opens the alarms page: the 50 newest fill the first page, and the next follows the cursor
    browser.driver.find_element(By.CSS_SELECTOR, '#nav a[data-page="alarms"]').click()
    browser.drawn("alarms")
    assert len(browser.driver.find_elements(By.CSS_SELECTOR, "#alarms-list tbody tr")) == 50
    assert "critical" not in browser.driver.find_element(By.ID, "alarms-list").text
    browser.driver.find_element(By.CSS_SELECTOR, "#alarms-list a[rel=next]").click()
    [row] = browser.wait_until(lambda driver: one_row(driver, first_page=False), "the second page")
    assert "critical" in row.text
    assert "cursor=" in browser.driver.current_url

    # And filtering by severity starts again from the first page, with that alarm alone
    Select(browser.driver.find_element(By.ID, "alarms-severity")).select_by_value("critical")
    browser.driver.find_element(By.CSS_SELECTOR, "main form.filters button[type=submit]").click()
    [row] = browser.wait_until(lambda driver: one_row(driver, first_page=True), "the filtered first page")
    assert "severity=critical" in browser.driver.current_url
    assert str(row.find_element(By.CSS_SELECTOR, "a").get_attribute("href")).endswith(f"#/alarms/{raised.alarm_id}")


def one_row(driver: WebDriver, *, first_page: bool) -> list[WebElement] | None:
    """The list's rows once it shows one alarm on the first page (no "First page" link) or a later one."""
    rows = driver.find_elements(By.CSS_SELECTOR, "#alarms-list tbody tr")
    later = bool(driver.find_elements(By.CSS_SELECTOR, "#alarms-list .pager a:not([rel])"))
    return rows if len(rows) == 1 and later != first_page else None


@pytest.mark.console_errors(CONFLICT)
def test_an_alarm_acknowledged_meanwhile_is_refused_saying_by_whom(stack: BrowserStack, browser: Browser) -> None:
    # Given a person looking at an active alarm
    raised = raise_alarm(stack, severity="warning")
    browser.sign_in(stack.token(tenant=raised.tenant, sub=SUB))
    open_alarm(browser, raised)
    browser.wait_for("#acknowledge-submit")

    # When a colleague acknowledges it first, and then they press Acknowledge
    first = http(
        "POST",
        stack.url(f"/api/v1/alarms/{raised.alarm_id}/acknowledge"),
        stack.token(tenant=raised.tenant, sub="ben@acme.example"),
        {"note": "on it"},
    )
    assert first.status == 200, first.body
    browser.driver.find_element(By.ID, "acknowledge-submit").click()

    # Then the 409 says so in plain words and names the colleague; the page shows the alarm as it now is
    refused = browser.wait_for('#acknowledge-outcome .message.error[data-code="not_active"]')
    assert refused.get_attribute("data-status") == "409"
    assert "This alarm is not active any more." in refused.text
    assert "acknowledged by ben@acme.example" in refused.text
    browser.wait_for_text("#alarm-facts", "Acknowledged\nben@acme.example")
    assert browser.driver.find_elements(By.ID, "acknowledge-form") == []
    assert alarm_of(stack, raised)["acknowledged_by"] == "ben@acme.example"


@pytest.mark.console_errors(FORBIDDEN)
def test_without_alerts_write_acknowledging_is_refused_in_plain_words(stack: BrowserStack, browser: Browser) -> None:
    # Given a person whose sign-in may read alarms but not change them
    raised = raise_alarm(stack, severity="info")
    browser.sign_in(stack.token(tenant=raised.tenant, sub=SUB, scope="jobs:read systems:read alerts:read"))
    open_alarm(browser, raised)

    # When they try to acknowledge it
    browser.wait_for("#acknowledge-submit").click()

    # Then the 403 names the permission it needs, and the alarm stays active
    refused = browser.wait_for('#acknowledge-outcome .message.error[data-status="403"]')
    assert "Your sign-in does not allow acknowledging alarms." in refused.text
    assert "alerts:write" in refused.text
    assert alarm_of(stack, raised)["status"] == "active"
    assert browser.driver.find_element(By.ID, "acknowledge-submit").is_enabled()
