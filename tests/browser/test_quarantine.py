"""The console's Quarantine page in a real browser: one reading fixed, approved or rejected; every reading matching a
filter rejected through the API's cursor, once each, resumed after a lost answer and a closed tab; a concurrent
review's 409 shown; the page at a phone's width and by keyboard alone. Data arrives through the API (batches whose
bad readings are quarantined); outcomes are read in the database."""

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select

from ..stack_harness import finished_job, http
from .harness import Browser, BrowserStack

pytestmark = pytest.mark.db

SUB = "browser-reviewer"
# Lets the nth review POST through to the API and then loses its answer, as a dropped connection would: the API has
# done the work, the page never hears of it.
LOSE_ANSWER = """
const lost = arguments[0];
const real = window.fetch;
let reviews = 0;
window.fetch = async (url, options) => {
  const answer = await real(url, options);
  if (String(url).endsWith("/api/v1/quarantine/review") && ++reviews === lost) throw new TypeError("Failed to fetch");
  return answer;
};
"""


@dataclass(frozen=True)
class Tenant:
    """A tenant of this test alone, with one registered system and a token of every scope."""

    name: str
    system_id: str
    bearer: str


def new_tenant(stack: BrowserStack) -> Tenant:
    name = f"q-{uuid.uuid4().hex[:10]}"
    bearer = stack.token(tenant=name, sub=SUB)
    system_id = str(uuid.uuid4())
    stack.register_system(name, "press-q", system_id)
    return Tenant(name, system_id, bearer)


def stamp(seconds_ago: int) -> str:
    return (datetime.now(UTC) - timedelta(seconds=120 + seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def reading(n: int, **changes: Any) -> dict[str, Any]:
    return {
        "sensor_id": str(uuid.uuid4()),
        "timestamp": stamp(n),
        "value": 100.0 + n,
        "unit": "bar",
        "quality": 95,
    } | changes


def send_batch(
    stack: BrowserStack, tenant: Tenant, readings: list[dict[str, Any]], system_id: str | None = None
) -> str:
    """A batch through the API, waited for until its bad readings are in quarantine; its job id."""
    sent = http(
        "POST",
        stack.url("/api/v1/data/ingest"),
        tenant.bearer,
        {"system_id": system_id or tenant.system_id, "readings": readings},
    )
    assert sent.status == 202, sent.body
    job = finished_job(stack.running, tenant.bearer, sent.body["job_id"])
    assert job["status"] == "completed", job
    return str(sent.body["job_id"])


def quarantined(stack: BrowserStack, job_id: str) -> list[dict[str, Any]]:
    """The job's quarantined rows as the database holds them, oldest first."""
    with stack.connect() as conn:
        cursor = conn.execute(
            "SELECT id, reason, review_status, reviewed_by, review_notes, review_correction, sensor_id"
            " FROM quarantined_readings WHERE job_id = %s ORDER BY id",
            (job_id,),
        )
        names = [column.name for column in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def reviews_counted(stack: BrowserStack, job_id: str) -> int:
    """Reviews recorded for the job: one per decided row, in each review's own transaction."""
    with stack.connect() as conn:
        row = conn.execute("SELECT reviewed_readings FROM job_reviews WHERE job_id = %s", (job_id,)).fetchone()
    return 0 if row is None else int(row[0])


def sign_in(browser: Browser, stack: BrowserStack, tenant: Tenant) -> None:
    """Open the console with a token in the fragment, as `sluice console` prints it."""
    browser.sign_in(stack.token(tenant=tenant.name, sub=SUB))


def go(browser: Browser, place: str, ready: str) -> WebElement:
    """Follow a link to ``place`` (a hash) and wait until ``ready`` shows."""
    browser.show(place)
    return browser.wait_for(ready)


def listing(**filters: str) -> str:
    return f"#/quarantine?{urlencode(filters)}"


def walk_requests(browser: Browser) -> int:
    """Bulk review requests the page has sent."""
    return int(
        browser.driver.execute_script(
            "return performance.getEntriesByType('resource')"
            ".filter((entry) => entry.name.endsWith('/api/v1/quarantine/review')).length"
        )
    )


def test_a_reading_fixed_in_value_unit_and_timestamp_is_stored_in_readings(
    stack: BrowserStack, browser: Browser
) -> None:
    # Given a reading refused for its unit
    tenant = new_tenant(stack)
    sent = reading(30, unit="psi", value=14.5)
    job_id = send_batch(stack, tenant, [sent])
    [row] = quarantined(stack, job_id)
    sign_in(browser, stack, tenant)

    # When the reviewer opens it, sees it as it arrived, and fixes its value, unit and timestamp
    go(browser, f"#/quarantine/{row['id']}", "#fix-form")
    raw = json.loads(browser.wait_for("#reading-raw").text)
    assert raw == sent
    assert "unit: expected one of" in browser.wait_for("#reading-facts").text
    value = browser.wait_for("#fix-value")
    value.clear()
    value.send_keys("1.0005")
    Select(browser.wait_for("#fix-unit")).select_by_value("bar")
    yesterday = datetime.now() - timedelta(days=1)  # noqa: DTZ005 - typed in the browser's own time zone
    when = browser.wait_for("#fix-timestamp")
    when.send_keys(yesterday.strftime("%m%d%Y"), Keys.ARROW_RIGHT, "093015AM")
    typed = when.get_attribute("value")
    assert typed == yesterday.strftime("%Y-%m-%dT09:30:15"), "the browser's date format is not en-US"
    expected_time = browser.driver.execute_script("return new Date(arguments[0]).toISOString()", typed)
    browser.wait_for("#review-notes").send_keys("gauge read in psi; converted")
    browser.wait_for("#review-fix").click()

    # Then the page says so and shows the correction; readings holds the fixed reading, the row keeps what arrived
    browser.wait_for_text(".message.success", f"Reading #{row['id']} fixed.")
    assert "Corrected: value 1.0005, unit bar, timestamp " in browser.wait_for("#reading-correction").text
    with stack.connect() as conn:
        stored = conn.execute(
            "SELECT value, unit, time, job_id::text FROM readings WHERE sensor_id = %s", (sent["sensor_id"],)
        ).fetchall()
    assert stored == [(1.0005, "bar", datetime.fromisoformat(expected_time), job_id)]
    [after] = quarantined(stack, job_id)
    assert (after["review_status"], after["reviewed_by"], after["review_notes"]) == (
        "fixed",
        SUB,
        "gauge read in psi; converted",
    )
    assert set(after["review_correction"]) == {"value", "unit", "timestamp"}


def test_one_reading_approved_and_one_rejected_with_a_note(stack: BrowserStack, browser: Browser) -> None:
    # Given two readings of a system unknown when they came, registered since
    tenant = new_tenant(stack)
    late_system = str(uuid.uuid4())
    first, second = reading(40), reading(41)
    job_id = send_batch(stack, tenant, [first, second], system_id=late_system)
    registered = http("POST", stack.url("/api/v1/systems"), tenant.bearer, {"name": "late", "id": late_system})
    assert registered.status == 201, registered.body
    approve_row, reject_row = quarantined(stack, job_id)
    sign_in(browser, stack, tenant)

    # When the reviewer follows the job's link to its pending readings, approves one and rejects the other with a note
    go(browser, f"#/jobs/{job_id}", "#job-quarantine").click()
    browser.wait_for("#quarantine-list")
    assert browser.driver.execute_script("return location.hash") == listing(job_id=job_id, review_status="pending")
    assert "2 quarantined readings match" in browser.wait_for("#quarantine-list caption").text
    browser.wait_for(f"a[href='#/quarantine/{approve_row['id']}']").click()
    browser.wait_for("#review-approve").click()
    browser.wait_for_text(".message.success", f"Reading #{approve_row['id']} approved.")
    go(browser, f"#/quarantine/{reject_row['id']}", "#review-reject")
    browser.wait_for("#review-notes").send_keys("sensor replaced on site; reading worthless")
    browser.wait_for("#review-reject").click()

    # Then the page shows the decision in the history, and the database records both, the note with the rejection
    browser.wait_for_text(".message.success", f"Reading #{reject_row['id']} rejected.")
    assert browser.wait_for("#reading-notes").text == "sensor replaced on site; reading worthless"
    assert f"rejected by {SUB}" in browser.wait_for("#reading-history").text
    approved, rejected = quarantined(stack, job_id)
    assert (approved["review_status"], approved["reviewed_by"], approved["review_notes"]) == ("approved", SUB, None)
    assert (rejected["review_status"], rejected["review_notes"]) == (
        "rejected",
        "sensor replaced on site; reading worthless",
    )
    with stack.connect() as conn:
        stored = conn.execute("SELECT sensor_id::text FROM readings WHERE system_id = %s", (late_system,)).fetchall()
    assert stored == [(first["sensor_id"],)]


def start_reject_all(browser: Browser, note: str, per_request: int) -> str:
    """Open the confirmation of "Reject all matching", answer it, confirm; the number it stated."""
    browser.wait_for("#bulk-reject-all").click()
    dialog = browser.wait_for("#walk-dialog")
    number = browser.wait_for("#walk-number").text
    notes = dialog.find_element(By.ID, "walk-notes")
    notes.clear()
    notes.send_keys(note)
    dialog.find_element(By.CSS_SELECTOR, "details summary").click()
    size = browser.wait_for("#walk-step")
    size.clear()
    size.send_keys(str(per_request))
    browser.wait_for("#walk-confirm").click()
    browser.wait_gone("#walk-dialog")
    return number


def test_reject_all_matching_a_filter_decides_each_row_once_and_leaves_the_rest(
    stack: BrowserStack, browser: Browser
) -> None:
    # Given a job with 7 readings out of range and 2 of low quality, and another job out of range as well
    tenant = new_tenant(stack)
    job_id = send_batch(
        stack, tenant, [reading(n, value=950.0 + n) for n in range(7)] + [reading(n, quality=5) for n in range(7, 9)]
    )
    other_job = send_batch(stack, tenant, [reading(20, value=990.0)])
    sign_in(browser, stack, tenant)
    go(browser, listing(job_id=job_id), "#quarantine-list")
    Select(browser.wait_for("#q-reason")).select_by_value("out_of_range")
    browser.wait_for("form.filters button[type='submit']").click()
    browser.wait_for_text("#quarantine-list caption", "7 quarantined readings match")

    # When the reviewer rejects all matching, 3 readings per request, and confirms the number
    number = start_reject_all(browser, "pump test run, not production", per_request=3)

    # Then the dialog stated it, progress reached it, and the summary tells the outcome
    assert number.startswith("7 pending readings match job id")
    summary = browser.wait_for_text("#walk-summary", "The bulk review is finished.")
    assert "7 rejected; 0 failed" in summary.text
    progress = browser.wait_for("#walk-progress")
    assert (progress.get_attribute("value"), progress.get_attribute("max")) == ("7", "7")
    assert walk_requests(browser) == 3  # 3 + 3 + 1: the cursor walked
    # Every matching row is rejected with the note, once (one review counted per row); the rest are untouched
    rows = quarantined(stack, job_id)
    matching = [row for row in rows if row["reason"] == "out_of_range"]
    assert {(row["review_status"], row["review_notes"]) for row in matching} == {
        ("rejected", "pump test run, not production")
    }
    assert reviews_counted(stack, job_id) == 7
    assert {row["review_status"] for row in rows if row["reason"] != "out_of_range"} == {"pending"}
    assert [row["review_status"] for row in quarantined(stack, other_job)] == ["pending"]
    assert browser.driver.execute_script("return Object.keys(localStorage)") == []


def test_resuming_after_a_lost_answer_and_a_closed_tab_decides_every_row_once(
    stack: BrowserStack, browser: Browser
) -> None:
    # Given 7 readings out of range, and a walk of 2 per request whose second answer is lost on the way back
    tenant = new_tenant(stack)
    job_id = send_batch(stack, tenant, [reading(n, value=950.0 + n) for n in range(7)])
    sign_in(browser, stack, tenant)
    go(browser, listing(job_id=job_id, review_status="pending"), "#bulk-reject-all")
    browser.driver.execute_script(LOSE_ANSWER, 2)
    start_reject_all(browser, "bench rig", per_request=2)
    stopped = browser.wait_for_text("#walk-summary", "The bulk review stopped.")
    assert "The API could not be reached." in stopped.text
    assert "2 rejected; 0 failed." in stopped.text
    assert browser.wait_for("#walk-resume").text == "Resume the bulk review (2 done so far)"
    # What a resume needs is kept in local storage, the token is not (it stays in the tab's session storage)
    kept, token = browser.driver.execute_script(
        "return [Object.values(localStorage), sessionStorage.getItem('sluice.token')]"
    )
    [record] = [json.loads(text) for text in kept]
    assert (record["action"], record["filter"], record["notes"]) == ("reject", {"job_id": job_id}, "bench rig")
    assert record["cursor"]
    assert record["tallies"]["reviewed"] == 2
    assert token
    assert all(token not in text for text in kept)

    # When the tab is closed, and the reviewer signs in again in a new one and goes back to the quarantine
    first_tab = browser.driver.current_window_handle
    browser.driver.switch_to.new_window("tab")
    second_tab = browser.driver.current_window_handle
    browser.driver.switch_to.window(first_tab)
    browser.driver.close()
    browser.driver.switch_to.window(second_tab)
    # (the same person signed in to another tenant is not offered it: its filter could select rows there)
    sign_in(browser, stack, new_tenant(stack))
    go(browser, "#/quarantine", "#quarantine-list")
    assert browser.driver.find_elements(By.ID, "bulk-resume") == []
    sign_in(browser, stack, tenant)
    go(browser, "#/quarantine", "#bulk-resume")
    resume = browser.wait_for("#bulk-resume-button")
    assert resume.text == "Resume the bulk review (2 done so far)"
    resume.click()

    # Then it walks on to the end from the stored cursor: every row rejected once, the lost request's rows included
    summary = browser.wait_for_text("#walk-summary", "The bulk review is finished.")
    # 2 before the loss and 3 after are counted; the lost request's 2 were decided but never reported to the page
    assert "5 rejected; 0 failed." in summary.text
    assert "1 request left without an answer" in summary.text
    assert {(row["review_status"], row["review_notes"]) for row in quarantined(stack, job_id)} == {
        ("rejected", "bench rig")
    }
    assert reviews_counted(stack, job_id) == 7
    assert browser.driver.execute_script("return Object.keys(localStorage)") == []
    browser.wait_gone("#bulk-resume")


@pytest.mark.console_errors(r"/review - Failed to load resource: .* 409 \(Conflict\)")
def test_a_review_made_behind_the_pages_back_is_shown_as_the_apis_409(stack: BrowserStack, browser: Browser) -> None:
    # Given a reading open in the console
    tenant = new_tenant(stack)
    job_id = send_batch(stack, tenant, [reading(50, quality=3)])
    [row] = quarantined(stack, job_id)
    sign_in(browser, stack, tenant)
    go(browser, f"#/quarantine/{row['id']}", "#review-reject")

    # When someone else rejects it through the API, then the reviewer rejects it in the page
    other = stack.token(tenant=tenant.name, sub="someone-else")
    behind = http("POST", stack.url(f"/api/v1/quarantine/{row['id']}/review"), other, {"action": "reject"})
    assert behind.status == 200, behind.body
    browser.wait_for("#review-reject").click()

    # Then the page shows the API's 409 in plain words, who decided it, and the row keeps the first decision
    shown = browser.wait_for("#review-error[data-status='409']")
    assert shown.get_attribute("data-code") == "not_pending"
    assert "Someone decided this reading first." in shown.text
    assert f"quarantined reading {row['id']} was already reviewed" in shown.text
    assert "rejected by someone-else" in shown.text
    [after] = quarantined(stack, job_id)
    assert (after["review_status"], after["reviewed_by"]) == ("rejected", "someone-else")
    # and the page shows that decision when asked
    browser.wait_for("#review-show-decision").click()
    browser.wait_for_text("#reading-history", "rejected by someone-else")
    browser.wait_gone("#review-reject")


def test_keyboard_alone_selects_a_row_and_rejects_it(stack: BrowserStack, browser: Browser) -> None:
    # Given two pending readings listed
    tenant = new_tenant(stack)
    job_id = send_batch(stack, tenant, [reading(60, quality=2), reading(61, quality=4)])
    newest = quarantined(stack, job_id)[-1]
    sign_in(browser, stack, tenant)
    go(browser, listing(job_id=job_id), "#bulk-reject")
    active = browser.driver.switch_to.active_element

    def tab_to(css: str, limit: int = 40) -> WebElement:
        for _ in range(limit):
            browser.driver.switch_to.active_element.send_keys(Keys.TAB)
            focused = browser.driver.switch_to.active_element
            if browser.driver.execute_script("return arguments[0].matches(arguments[1])", focused, css):
                return focused
        pytest.fail(f"Tab never reached {css}")

    # When the reviewer Tabs to the first row's checkbox, presses Space, Tabs to "Reject selected" and presses Enter
    assert active.tag_name == "main"
    box = tab_to("input.q-select")
    assert box.get_attribute("value") == str(newest["id"])
    box.send_keys(Keys.SPACE)
    assert browser.wait_for("#bulk-selected").text == "1 selected on this page."
    tab_to("#bulk-reject").send_keys(Keys.ENTER)

    # Then the outcome is shown and only that row is rejected
    assert "1 rejected; 0 failed." in browser.wait_for("#bulk-summary").text
    assert [row["review_status"] for row in quarantined(stack, job_id)] == ["pending", "rejected"]


@pytest.mark.parametrize("browser", ["phone"], indirect=True)
def test_the_page_fits_a_phone_but_for_its_table(stack: BrowserStack, browser: Browser) -> None:
    tenant = new_tenant(stack)
    job_id = send_batch(stack, tenant, [reading(70, unit="psi"), reading(71, value=999.0)])
    sign_in(browser, stack, tenant)

    first = quarantined(stack, job_id)[0]["id"]
    for place, ready in ((listing(job_id=job_id), "#bulk-reject-all"), (f"#/quarantine/{first}", "#fix-form")):
        go(browser, place, ready)
        # Nothing is wider than the screen, except inside a table's own sideways scroll
        overflowing = browser.driver.execute_script(
            """
            const width = document.documentElement.clientWidth;
            return [...document.querySelectorAll('body *')]
              .filter((el) => !el.closest('.table-wrap, pre.raw') && el.getBoundingClientRect().right > width + 1)
              .map((el) => el.tagName + '#' + el.id + '.' + el.className);
            """
        )
        assert overflowing == [], place
        assert browser.driver.execute_script("return document.documentElement.scrollWidth") <= 390


@pytest.mark.console_errors(r"/review - Failed to load resource: .* 422 \(Unprocessable (Content|Entity)\)")
def test_a_fix_that_still_breaks_a_rule_shows_the_apis_422_at_its_field(stack: BrowserStack, browser: Browser) -> None:
    # Given a reading out of range, open in the console
    tenant = new_tenant(stack)
    job_id = send_batch(stack, tenant, [reading(80, value=950.0)])
    [row] = quarantined(stack, job_id)
    sign_in(browser, stack, tenant)
    go(browser, f"#/quarantine/{row['id']}", "#fix-form")

    # When the reviewer "fixes" the value to another one out of range
    value = browser.wait_for("#fix-value")
    value.clear()
    value.send_keys("800")
    browser.wait_for("#review-fix").click()

    # Then the API's 422 is shown in plain words, at the value field, and the reading stays pending
    shown = browser.wait_for("#review-error[data-status='422']")
    assert shown.get_attribute("data-code") == "reading_invalid"
    assert "The reading still breaks a rule." in shown.text
    assert "expected 0..700 bar, got 800" in shown.text
    assert value.get_attribute("aria-invalid") == "true"
    assert "expected 0..700 bar" in browser.wait_for("#fix-value-error").text
    assert [r["review_status"] for r in quarantined(stack, job_id)] == ["pending"]


def test_all_on_the_page_approved_at_once_with_each_refusal_reported(stack: BrowserStack, browser: Browser) -> None:
    # Given two readings of a system registered since they came, one of which is of too low a quality to store
    tenant = new_tenant(stack)
    late_system = str(uuid.uuid4())
    job_id = send_batch(stack, tenant, [reading(90), reading(91, quality=5)], system_id=late_system)
    registered = http("POST", stack.url("/api/v1/systems"), tenant.bearer, {"name": "late", "id": late_system})
    assert registered.status == 201, registered.body
    good, poor = quarantined(stack, job_id)
    sign_in(browser, stack, tenant)

    # When the reviewer ticks every pending row on the page and approves the selection
    go(browser, listing(job_id=job_id), "#q-select-all").click()
    assert browser.wait_for("#bulk-selected").text == "2 selected on this page."
    browser.wait_for("#bulk-approve").click()

    # Then each row's outcome is shown: one approved, one refused with the API's code and reason; the list redrawn
    summary = browser.wait_for("#bulk-summary")
    assert "1 approved; 1 failed." in summary.text
    assert f"Reading {poor['id']}: reading_invalid: the reading still breaks a rule (low_quality)" in summary.text
    browser.wait_for_text("#quarantine-list tbody", "approved")
    assert [(row["id"], row["review_status"]) for row in quarantined(stack, job_id)] == [
        (good["id"], "approved"),
        (poor["id"], "pending"),
    ]
