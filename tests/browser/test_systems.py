"""The console's systems page in a real browser: a person registers and renames systems, and sees what the API
refuses in plain words; every outcome is checked in the API's own answer. Each test has a tenant of its own."""

import uuid
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from ..stack_harness import finished_job, http, now_text
from .harness import Browser, BrowserStack

pytestmark = pytest.mark.db

CONFLICT = r"/api/v1/systems(/[0-9a-f-]+)? - Failed to load resource: .* 409 \(Conflict\)"
INVALID = r"/api/v1/systems - Failed to load resource: .* 400 \(Bad Request\)"


def new_tenant() -> str:
    return f"systems-{uuid.uuid4().hex[:10]}"


def sign_in(browser: Browser, stack: BrowserStack, tenant: str) -> None:
    browser.sign_in(stack.token(tenant=tenant))


def go_to(browser: Browser, page: str) -> None:
    """Follow the page bar's link, as a person would."""
    browser.driver.find_element(By.CSS_SELECTOR, f'#nav a[data-page="{page}"]').click()
    browser.drawn(page)


def systems_of(stack: BrowserStack, tenant: str) -> list[dict[str, Any]]:
    answer = http("GET", stack.url("/api/v1/systems?limit=100"), stack.token(tenant=tenant))
    assert answer.status == 200, answer.body
    items: list[dict[str, Any]] = answer.body["items"]
    return items


def fits_the_screen(browser: Browser) -> bool:
    """No sideways scrolling of the page itself (tables scroll inside their own box)."""
    return bool(browser.driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"))


@pytest.mark.parametrize("browser", ["desktop", "phone"], indirect=True)
def test_a_system_registered_in_the_console_is_in_the_api_and_the_list(stack: BrowserStack, browser: Browser) -> None:
    # Given a person signed in to a tenant without systems, on the systems page
    tenant = new_tenant()
    sign_in(browser, stack, tenant)
    go_to(browser, "systems")
    browser.wait_for_text("#systems-list", "No systems yet")

    # When they type a name and press Enter
    browser.driver.find_element(By.ID, "register-name").send_keys("press-21", Keys.ENTER)

    # Then the console says it made the system, which the API lists under that name, and so does the page
    made = browser.wait_for('#register-outcome .message.success[data-status="201"]')
    [system] = systems_of(stack, tenant)
    assert system["name"] == "press-21"
    assert "Registered “press-21”." in made.text
    assert system["id"] in made.text
    row = browser.wait_for_text("#systems-list tbody tr", "press-21")
    assert system["id"] in row.text
    link = row.find_element(By.LINK_TEXT, "press-21")
    assert str(link.get_attribute("href")).endswith(f"#/systems/{system['id']}")
    assert fits_the_screen(browser)

    # And the same name again is found, not made twice
    browser.driver.find_element(By.ID, "register-name").send_keys("press-21", Keys.ENTER)
    again = browser.wait_for('#register-outcome .message.info[data-status="200"]')
    assert "“press-21” was registered already." in again.text
    assert [s["id"] for s in systems_of(stack, tenant)] == [system["id"]]


@pytest.mark.console_errors(CONFLICT)
def test_a_taken_name_is_refused_in_plain_words_and_nothing_changes(stack: BrowserStack, browser: Browser) -> None:
    # Given a tenant with two systems, and a person on the second one's page
    tenant = new_tenant()
    first = stack.register_system(tenant, "press-1")
    second = stack.register_system(tenant, "press-2")
    sign_in(browser, stack, tenant)
    go_to(browser, "systems")
    browser.wait_for_text("#systems-list", "press-2")
    browser.driver.find_element(By.LINK_TEXT, "press-2").click()
    field = browser.wait_for("#rename-name")

    # When they rename it to the first one's name
    field.clear()
    field.send_keys("press-1", Keys.ENTER)

    # Then the console says the name is taken, names the field, and the register is as it was
    refused = browser.wait_for('#rename-outcome .message.error[data-code="name_taken"]')
    assert refused.get_attribute("data-status") == "409"
    assert "That name is taken." in refused.text
    assert "press-1" in refused.text
    assert field.get_attribute("aria-invalid") == "true"
    reason = browser.driver.find_element(By.ID, "rename-name-error")
    assert reason.get_attribute("id") in str(field.get_attribute("aria-describedby")).split()
    assert {s["id"]: s["name"] for s in systems_of(stack, tenant)} == {first["id"]: "press-1", second["id"]: "press-2"}

    # And registering a new system under that name is refused the same way
    go_to(browser, "systems")
    browser.driver.find_element(By.ID, "register-name").send_keys("press-1")
    browser.driver.find_element(By.ID, "register-id").send_keys(str(uuid.uuid4()), Keys.ENTER)
    refused = browser.wait_for('#register-outcome .message.error[data-code="name_taken"]')
    assert "That name is taken." in refused.text
    assert first["id"] in refused.text  # the API names the system that has it
    assert len(systems_of(stack, tenant)) == 2


@pytest.mark.console_errors(INVALID)
def test_a_malformed_id_is_refused_naming_its_field(stack: BrowserStack, browser: Browser) -> None:
    tenant = new_tenant()
    sign_in(browser, stack, tenant)
    go_to(browser, "systems")

    browser.driver.find_element(By.ID, "register-name").send_keys("press-3")
    browser.driver.find_element(By.ID, "register-id").send_keys("press-3's id", Keys.ENTER)

    refused = browser.wait_for('#register-outcome .message.error[data-status="400"]')
    assert "field id" in refused.text
    id_field = browser.driver.find_element(By.ID, "register-id")
    assert id_field.get_attribute("aria-invalid") == "true"
    assert browser.driver.find_element(By.ID, "register-name").get_attribute("aria-invalid") is None
    assert systems_of(stack, tenant) == []

    # A corrected id clears the mark and registers the system under it
    chosen = str(uuid.uuid4())
    id_field.clear()
    id_field.send_keys(chosen, Keys.ENTER)
    browser.wait_for('#register-outcome .message.success[data-status="201"]')
    assert id_field.get_attribute("aria-invalid") is None
    assert [(s["id"], s["name"]) for s in systems_of(stack, tenant)] == [(chosen, "press-3")]


def test_a_renamed_system_shows_its_new_name_on_every_page(stack: BrowserStack, browser: Browser) -> None:
    # Given a system, whose name the jobs page (the first page) has read already
    tenant = new_tenant()
    system = stack.register_system(tenant, "press-4")
    sign_in(browser, stack, tenant)
    option = f'#jobs-systems option[value="{system["id"]}"]'
    assert browser.driver.find_element(By.CSS_SELECTOR, option).get_attribute("textContent") == "press-4"

    # When the person renames it on its page
    go_to(browser, "systems")
    browser.wait_for_text("#systems-list", "press-4")
    browser.driver.find_element(By.LINK_TEXT, "press-4").click()
    field = browser.wait_for("#rename-name")
    assert "Silent after\n10 minutes without a reading" in browser.driver.find_element(By.ID, "system-facts").text
    field.clear()
    field.send_keys("press-4 (hall 2)", Keys.ENTER)

    # Then the API has the new name, the page shows it, and the jobs page names the system by it
    browser.wait_for_text("#rename-outcome .message.success", "Renamed to “press-4 (hall 2)”.")
    assert [(s["id"], s["name"]) for s in systems_of(stack, tenant)] == [(system["id"], "press-4 (hall 2)")]
    assert browser.driver.find_element(By.TAG_NAME, "h1").text == "press-4 (hall 2)"
    go_to(browser, "jobs")
    assert browser.driver.find_element(By.CSS_SELECTOR, option).get_attribute("textContent") == "press-4 (hall 2)"


def test_the_list_shows_a_systems_readings_and_links_its_pending_quarantine(
    stack: BrowserStack, phone_browser: Browser
) -> None:
    # Given a system with two readings stored and one quarantined (a unit Sluice does not know)
    browser = phone_browser
    tenant = new_tenant()
    system = stack.register_system(tenant, "press-5")
    bearer = stack.token(tenant=tenant)
    sensor = str(uuid.uuid4())
    newest = now_text(-5)
    readings = [
        {"sensor_id": sensor, "timestamp": now_text(-10), "value": 201.5, "unit": "bar", "quality": 97},
        {"sensor_id": sensor, "timestamp": newest, "value": 202.5, "unit": "bar", "quality": 97},
        {"sensor_id": sensor, "timestamp": now_text(), "value": 3.0, "unit": "furlongs", "quality": 97},
    ]
    sent = http("POST", stack.url("/api/v1/data/ingest"), bearer, {"system_id": system["id"], "readings": readings})
    assert sent.status == 202, sent.body
    job = finished_job(stack.running, bearer, sent.body["job_id"])
    assert (job["inserted_readings"], job["quarantined_readings"]) == (2, 1), job

    # When the person opens the systems page on a phone
    sign_in(browser, stack, tenant)
    go_to(browser, "systems")

    # Then the system's row counts them, and its pending quarantine leads to those readings
    row = browser.wait_for_text("#systems-list tbody tr", "press-5")
    cells = row.find_elements(By.TAG_NAME, "td")
    last_reading = cells[2].find_element(By.TAG_NAME, "time").get_attribute("datetime")
    assert last_reading == newest.replace("Z", ".000Z")  # the stored one, not the quarantined newer one
    assert [cell.get_attribute("textContent") for cell in cells[3:5]] == ["2", "1"]
    assert fits_the_screen(browser)
    link = row.find_element(By.LINK_TEXT, "1")
    browser.driver.execute_script("arguments[0].scrollIntoView()", link)
    link.click()
    browser.drawn("quarantine")
    hash_now = browser.driver.execute_script("return location.hash")
    assert hash_now == f"#/quarantine?system_id={system['id']}&review_status=pending"
