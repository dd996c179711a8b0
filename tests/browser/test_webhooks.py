"""The console's Webhooks page in a real browser: a subscription created there (its URL refused first, naming the
field), its secret shown once and never again; a subscription's deliveries with their attempts and answers (written
with SQL as the dispatcher writes them); a subscription deleted after a confirmation. Outcomes are checked in the
API's own answers. Each test has a tenant of its own."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from ..stack_harness import http
from .harness import Browser, BrowserStack

pytestmark = pytest.mark.db

SUB = "anna@acme.example"
RECEIVER = "http://127.0.0.1:9/hooks/sluice"
INVALID = r"/api/v1/webhooks - Failed to load resource: .* 400 \(Bad Request\)"


def new_tenant() -> str:
    return f"hooks-{uuid.uuid4().hex[:10]}"


def webhooks_of(stack: BrowserStack, tenant: str) -> list[dict[str, Any]]:
    answer = http("GET", stack.url("/api/v1/webhooks"), stack.token(tenant=tenant))
    assert answer.status == 200, answer.body
    items: list[dict[str, Any]] = answer.body["items"]
    return items


def open_webhooks(browser: Browser, stack: BrowserStack, tenant: str) -> None:
    browser.sign_in(stack.token(tenant=tenant, sub=SUB))
    browser.driver.find_element(By.CSS_SELECTOR, '#nav a[data-page="webhooks"]').click()
    browser.drawn("webhooks")


@pytest.mark.console_errors(INVALID)
def test_a_subscription_created_shows_its_secret_once_and_is_listed(stack: BrowserStack, browser: Browser) -> None:
    # Given a person on the webhooks page of a tenant without subscriptions
    tenant = new_tenant()
    open_webhooks(browser, stack, tenant)
    browser.wait_for_text("#webhooks-list", "No subscriptions yet")

    # When they send a URL the API refuses (no scheme it takes)
    url = browser.driver.find_element(By.ID, "webhook-url")
    url.send_keys("ftp://127.0.0.1/hooks", Keys.ENTER)

    # Then the refusal names the field, and nothing is made
    refused = browser.wait_for('#webhook-outcome .message.error[data-status="400"]')
    assert "field url" in refused.text
    assert url.get_attribute("aria-invalid") == "true"
    assert webhooks_of(stack, tenant) == []

    # When they correct it, choose job.failed besides the alarm events (checked already), and create it
    url.clear()
    url.send_keys(RECEIVER)
    browser.driver.find_element(By.CSS_SELECTOR, 'input[name="event"][value="job.failed"]').click()
    browser.driver.find_element(By.ID, "webhook-submit").click()

    # Then the secret is shown once, with a copy button and the warning, and the subscription is listed
    created = browser.wait_for('#webhook-outcome #webhook-created[data-status="201"]')
    secret = str(browser.driver.find_element(By.ID, "webhook-secret").get_attribute("value"))
    assert secret.startswith("whsec_")
    assert "you will not see it again" in created.text
    assert browser.driver.find_element(By.ID, "webhook-copy").text == "Copy the secret"
    assert url.get_attribute("aria-invalid") is None
    [hook] = webhooks_of(stack, tenant)
    assert (hook["url"], hook["created_by"]) == (RECEIVER, SUB)
    assert hook["events"] == ["alarm.raised", "alarm.cleared", "alarm.acknowledged", "job.failed"]
    row = browser.wait_for_text("#webhooks-list tbody tr", RECEIVER)
    assert "job.failed" in row.text
    assert "job.completed" not in row.text
    # The copy button puts the secret on the clipboard (or, refused, selects it for the person's own copy).
    browser.driver.find_element(By.ID, "webhook-copy").click()
    browser.wait_until(lambda driver: driver.find_element(By.ID, "webhook-copied").text, "the copy's outcome")

    # And after a reload the subscription is still listed, its secret nowhere on the page or in the tab's storage
    browser.driver.refresh()
    browser.drawn("webhooks")
    browser.wait_for_text("#webhooks-list tbody tr", RECEIVER)
    assert secret not in browser.driver.page_source
    assert browser.driver.find_elements(By.ID, "webhook-secret") == []
    kept = browser.driver.execute_script("return JSON.stringify({...sessionStorage, ...localStorage})")
    assert secret not in kept
    browser.driver.find_element(By.LINK_TEXT, RECEIVER).click()
    browser.drawn("webhooks")
    assert secret not in browser.driver.page_source
    assert "Shown once" in browser.wait_for("#webhook-facts").text


def record_deliveries(stack: BrowserStack, tenant: str, webhook_id: str) -> dict[str, str]:
    """Two deliveries as the dispatcher leaves them: one delivered at its second attempt, one given up after a 503
    (neither is pending, so no dispatcher sends them again); their ids by status."""
    alarm, job = uuid.uuid4(), uuid.uuid4()
    start = datetime.now(UTC) - timedelta(hours=2)
    ids = {"delivered": f"msg_{uuid.uuid4().hex}", "failed": f"msg_{uuid.uuid4().hex}"}
    with stack.connect() as conn:
        conn.execute(
            "INSERT INTO webhook_deliveries (id, webhook_id, tenant_id, event_type, event_key, body, created_at,"
            " status, attempts, next_attempt_at, delivered_at) VALUES"
            " (%s, %s, %s, 'alarm.raised', %s, '{}', %s, 'delivered', 2, %s, %s),"
            " (%s, %s, %s, 'job.failed', %s, '{}', %s, 'failed', 1, %s, NULL)",
            (
                ids["delivered"], webhook_id, tenant, f"alarm.raised:{alarm}", start + timedelta(minutes=5),
                start + timedelta(minutes=6), start + timedelta(minutes=6),
                ids["failed"], webhook_id, tenant, f"job.failed:{job}", start, start,
            ),
        )  # fmt: skip
        conn.cursor().executemany(
            "INSERT INTO webhook_attempts (delivery_id, attempt, at, duration_ms, status_code, error, response)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                (ids["delivered"], 1, start + timedelta(minutes=5), 10001, None, "timed out after 10 s", None),
                (ids["delivered"], 2, start + timedelta(minutes=6), 84, 204, None, ""),
                (ids["failed"], 1, start, 12, 503, None, json.dumps({"error": "receiver down"})),
            ],
        )
    return {"alarm": str(alarm), **ids}


def test_a_subscriptions_deliveries_show_their_attempts_and_it_is_deleted_after_a_confirmation(
    stack: BrowserStack, browser: Browser
) -> None:
    # Given a subscription (made through the API) with two deliveries behind it
    tenant = new_tenant()
    made = http(
        "POST",
        stack.url("/api/v1/webhooks"),
        stack.token(tenant=tenant, sub=SUB),
        {"url": RECEIVER, "events": ["alarm.raised", "job.failed"]},
    )
    assert made.status == 201, made.body
    recorded = record_deliveries(stack, tenant, made.body["id"])

    # When the person opens it from the list
    open_webhooks(browser, stack, tenant)
    browser.wait_for_text("#webhooks-list tbody tr", RECEIVER).find_element(By.LINK_TEXT, RECEIVER).click()
    browser.drawn("webhooks")

    # Then each delivery shows its status, attempts and last answer, newest first, with every attempt on demand
    rows = browser.wait_until(
        lambda driver: driver.find_elements(By.CSS_SELECTOR, "#deliveries-list tbody tr") or None, "the deliveries"
    )
    assert [row.find_element(By.CSS_SELECTOR, ".badge").text for row in rows] == ["delivered", "failed"]
    delivered, failed = rows
    assert "alarm.raised" in delivered.text
    assert "HTTP 204" in delivered.text
    assert delivered.find_elements(By.CSS_SELECTOR, "td.num")[0].text == "2"
    link = delivered.find_element(By.CSS_SELECTOR, f'a[href="#/alarms/{recorded["alarm"]}"]')
    assert link.text == recorded["alarm"][:8]
    delivered.find_element(By.TAG_NAME, "summary").click()
    attempts = delivered.find_elements(By.CSS_SELECTOR, "ol.attempts li")
    assert "timed out after 10 s" in attempts[0].text
    assert "HTTP 204" in attempts[1].text
    assert "job.failed" in failed.text
    assert "HTTP 503" in failed.text
    assert "gave up" in failed.text
    failed.find_element(By.TAG_NAME, "summary").click()
    assert "receiver down" in failed.find_element(By.CSS_SELECTOR, "ol.attempts pre").text

    # And the status filter narrows them
    browser.driver.find_element(By.CSS_SELECTOR, "#deliveries-status option[value='failed']").click()
    browser.driver.find_element(By.CSS_SELECTOR, "#webhook form.filters button[type=submit]").click()
    browser.wait_until(
        lambda driver: len(driver.find_elements(By.CSS_SELECTOR, "#deliveries-list tbody tr")) == 1 or None,
        "one failed delivery",
    )

    # When they ask to delete it, cancel once, then confirm
    browser.driver.find_element(By.ID, "webhook-delete").click()
    browser.wait_for("#webhook-delete-dialog").find_element(By.ID, "webhook-delete-cancel").click()
    browser.wait_gone("#webhook-delete-dialog")
    assert len(webhooks_of(stack, tenant)) == 1
    browser.driver.find_element(By.ID, "webhook-delete").click()
    browser.wait_for("#webhook-delete-confirm").click()

    # Then the list says it is gone, and the API no longer has it
    assert RECEIVER in browser.wait_for("#webhook-outcome #webhook-deleted").text
    browser.wait_for_text("#webhooks-list", "No subscriptions yet")
    assert webhooks_of(stack, tenant) == []
