"""The console's upload page in a real browser: a person chooses (or drops) a file, the page asks the API for a form,
POSTs the file to the local S3 with progress, and follows its job to the end; the readings are checked in the
database. Each test has a tenant of its own, with one registered system."""

import gzip
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from ..stack_harness import http, now_text
from .harness import Browser, BrowserStack

pytestmark = pytest.mark.db

# A follow reads the job every 2 s: a small file's job ends within a few reads.
FOLLOW_S = 30.0
HEADER = "system_id,sensor_id,timestamp,value,unit,quality"
# A file's standing in the drop: a File made in the page from text, put in a DataTransfer as a drag carries it.
DROP = """
const [zone, name, text] = arguments;
const carried = new DataTransfer();
carried.items.add(new File([text], name, {type: "application/octet-stream"}));
for (const type of ["dragenter", "dragover", "drop"]) {
  zone.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: carried}));
}
"""


def tenant_with_system(stack: BrowserStack) -> tuple[str, str]:
    """A new tenant and the id of its one system."""
    tenant = f"upload-{uuid.uuid4().hex[:10]}"
    return tenant, str(stack.register_system(tenant, "press-30")["id"])


def readings_csv(system_id: str, sensor: str) -> str:
    """Three good readings and one of a unit Sluice does not know, which is quarantined."""
    rows = [f"{system_id},{sensor},{now_text(-n)},{200 + n},bar,95" for n in (30, 20, 10)]
    rows.append(f"{system_id},{sensor},{now_text()},7,furlongs,95")
    return "\n".join([HEADER, *rows]) + "\n"


def sign_in(browser: Browser, stack: BrowserStack, tenant: str) -> None:
    browser.sign_in(stack.token(tenant=tenant))
    browser.driver.find_element(By.CSS_SELECTOR, '#nav a[data-page="upload"]').click()
    browser.drawn("upload")


def job_of(stack: BrowserStack, tenant: str, job_id: str) -> dict[str, Any]:
    answer = http("GET", stack.url(f"/api/v1/jobs/{job_id}"), stack.token(tenant=tenant))
    assert answer.status == 200, answer.body
    job: dict[str, Any] = answer.body
    return job


def followed_job_id(browser: Browser) -> str:
    """The job the page follows, once it has ended and the page links its quarantine."""
    browser.wait_for("#job-quarantine", timeout_s=FOLLOW_S)
    return str(browser.driver.find_element(By.CSS_SELECTOR, "#job-facts dd code").text)


def stored(stack: BrowserStack, job_id: str) -> tuple[int, list[str]]:
    """The job's readings in the database: how many were stored, and the units of those quarantined."""
    with stack.connect() as conn:
        row = conn.execute("SELECT count(*) FROM readings WHERE job_id = %s", (job_id,)).fetchone()
        units = conn.execute("SELECT unit FROM quarantined_readings WHERE job_id = %s", (job_id,)).fetchall()
    assert row is not None
    return int(row[0]), [unit for (unit,) in units]


@pytest.mark.parametrize("browser", ["desktop", "phone"], indirect=True)
def test_a_csv_chosen_with_the_keyboard_is_uploaded_and_its_job_followed_to_the_end(
    stack: BrowserStack, browser: Browser, tmp_path: Path
) -> None:
    # Given a CSV of three good readings and one bad, and a person on the upload page
    tenant, system_id = tenant_with_system(stack)
    path = tmp_path / "press-30 history.csv"
    path.write_text(readings_csv(system_id, str(uuid.uuid4())), encoding="utf-8")
    sign_in(browser, stack, tenant)

    # When they Tab to the file input (labelled), choose the file, Tab to Upload and press Enter
    browser.driver.execute_script("document.getElementById('main').focus()")
    ActionChains(browser.driver).send_keys(Keys.TAB).perform()
    chooser = browser.driver.switch_to.active_element
    assert chooser.get_attribute("id") == "upload-file"
    assert chooser.get_attribute("type") == "file"
    assert browser.driver.find_element(By.CSS_SELECTOR, 'label[for="upload-file"]').text == "Choose a file of readings"
    chooser.send_keys(str(path))
    browser.wait_for_text("#upload-chosen", "press-30 history.csv")
    # (A file input's send_keys takes paths: the Tab is pressed on the keyboard instead.)
    ActionChains(browser.driver).send_keys(Keys.TAB).perform()
    assert browser.driver.switch_to.active_element.get_attribute("id") == "upload-submit"
    ActionChains(browser.driver).send_keys(Keys.ENTER).perform()

    # Then every byte is shown sent, the job is followed until completed with its counts, and the readings are
    # in the database: three stored, the bad one quarantined
    job_id = followed_job_id(browser)
    progress = browser.driver.find_element(By.ID, "upload-progress")
    assert progress.get_attribute("value") == "100"
    assert "(100 %)" in browser.driver.find_element(By.ID, "upload-progress-text").text
    assert "Sent press-30 history.csv" in browser.driver.find_element(By.ID, "upload-progress-label").text
    facts = browser.driver.find_element(By.ID, "job-facts").text
    assert "completed" in facts
    job = job_of(stack, tenant, job_id)
    assert (job["status"], job["source"], job["filename"]) == ("completed", "upload", "press-30 history.csv")
    assert (job["total_readings"], job["inserted_readings"], job["quarantined_readings"]) == (4, 3, 1)
    assert stored(stack, job_id) == (3, ["furlongs"])
    assert browser.driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")

    # And its link leads to the job's pending quarantine
    link = browser.driver.find_element(By.ID, "job-quarantine")
    browser.driver.execute_script("arguments[0].scrollIntoView()", link)
    link.click()
    browser.drawn("quarantine")
    hash_now = browser.driver.execute_script("return location.hash")
    assert hash_now == f"#/quarantine?job_id={job_id}&review_status=pending"


def test_a_dropped_file_is_the_one_uploaded(stack: BrowserStack, browser: Browser) -> None:
    # Given an NDJSON file dragged from the desktop
    tenant, system_id = tenant_with_system(stack)
    sensor = str(uuid.uuid4())
    lines = [
        json.dumps(
            {
                "system_id": system_id,
                "sensor_id": sensor,
                "timestamp": now_text(-n),
                "value": 50.5,
                "unit": "celsius",
                "quality": 90,
            }
        )
        for n in (2, 1)
    ]
    sign_in(browser, stack, tenant)

    # When it is dropped on the drop zone and uploaded
    zone = browser.wait_for("#upload-zone")
    browser.driver.execute_script(DROP, zone, "dropped.ndjson", "\n".join(lines) + "\n")
    browser.wait_for_text("#upload-chosen", "dropped.ndjson")
    browser.driver.find_element(By.ID, "upload-submit").click()

    # Then the input holds the dropped file, and it is what the job loaded
    assert browser.driver.execute_script("return document.getElementById('upload-file').files[0].name") == (
        "dropped.ndjson"
    )
    browser.wait_for_text("#job-facts", "completed", timeout_s=FOLLOW_S)
    job_id = browser.driver.find_element(By.CSS_SELECTOR, "#job-facts dd code").text
    job = job_of(stack, tenant, job_id)
    assert (job["filename"], job["inserted_readings"], job["quarantined_readings"]) == ("dropped.ndjson", 2, 0)
    assert stored(stack, job_id) == (2, [])
    assert browser.driver.find_element(By.ID, "upload-status").find_element(By.CLASS_NAME, "hint").text == (
        "Nothing of this job is in quarantine."
    )


def test_a_gzip_file_without_a_gz_name_is_announced_as_gzip(
    stack: BrowserStack, browser: Browser, tmp_path: Path
) -> None:
    # Given a gzip-compressed CSV whose name does not say so
    tenant, system_id = tenant_with_system(stack)
    path = tmp_path / "compressed.csv"
    path.write_bytes(gzip.compress(readings_csv(system_id, str(uuid.uuid4())).encode()))
    sign_in(browser, stack, tenant)

    # When it is uploaded
    browser.wait_for("#upload-file").send_keys(str(path))
    browser.driver.find_element(By.ID, "upload-submit").click()

    # Then the page told the API it is gzip (it starts as gzip does), so the worker read it whole
    job_id = followed_job_id(browser)
    job = job_of(stack, tenant, job_id)
    assert (job["status"], job["inserted_readings"], job["quarantined_readings"]) == ("completed", 3, 1), job
    assert stored(stack, job_id) == (3, ["furlongs"])


@pytest.mark.console_errors(r"/api/v1/uploads - Failed to load resource: .* 400 \(Bad Request\)")
def test_a_file_of_unknown_format_is_refused_before_anything_is_sent(
    stack: BrowserStack, browser: Browser, tmp_path: Path
) -> None:
    tenant, _ = tenant_with_system(stack)
    path = tmp_path / "notes.txt"
    path.write_text("not readings\n", encoding="utf-8")
    sign_in(browser, stack, tenant)

    chooser = browser.wait_for("#upload-file")
    chooser.send_keys(str(path))
    warned = browser.wait_for_text("#upload-chosen", "notes.txt")
    browser.driver.find_element(By.ID, "upload-submit").click()

    refused = browser.wait_for('#upload-outcome .message.error[data-status="400"]')
    assert "field filename" in refused.text
    assert "the API will refuse it" in warned.text
    assert chooser.get_attribute("aria-invalid") == "true"
    assert browser.driver.find_elements(By.ID, "upload-progress") == []
    jobs = http("GET", stack.url("/api/v1/jobs"), stack.token(tenant=tenant))
    assert jobs.body["items"] == []


@pytest.mark.console_errors(r"Failed to load resource: net::ERR_BLOCKED_BY_CLIENT")
def test_storage_out_of_reach_is_said_in_plain_words_and_the_job_waits(
    stack: BrowserStack, browser: Browser, tmp_path: Path
) -> None:
    # Given a browser that cannot reach the bucket (the local S3's requests are blocked, as a network would)
    tenant, system_id = tenant_with_system(stack)
    path = tmp_path / "unsent.csv"
    path.write_text(readings_csv(system_id, str(uuid.uuid4())), encoding="utf-8")
    sign_in(browser, stack, tenant)
    browser.driver.execute_cdp_cmd("Network.enable", {})
    browser.driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": [f"{stack.moto_endpoint}/*"]})

    # When the person uploads a file
    browser.wait_for("#upload-file").send_keys(str(path))
    browser.driver.find_element(By.ID, "upload-submit").click()

    # Then the page says the file was not sent and does not follow a job; the job still waits for its file
    refused = browser.wait_for('#upload-status .message.error[data-s3-status="0"]')
    assert "The file could not be sent to storage." in refused.text
    assert browser.driver.find_elements(By.ID, "job-facts") == []
    [job] = http("GET", stack.url("/api/v1/jobs"), stack.token(tenant=tenant)).body["items"]
    assert (job["status"], job["filename"]) == ("awaiting_upload", "unsent.csv")
