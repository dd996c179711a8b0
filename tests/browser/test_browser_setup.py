"""The browser tests' own footing, without the console: Chromium opens the twin's pages at both screen sizes, its
console errors are caught (and let through only when a test asks for them), and a page on the API's origin can
send an upload form to the local S3 from a script, with progress, as the console's upload page does."""

import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from ..paths import REPO_ROOT
from ..stack_harness import SYSTEM, finished_job, http, now_text, raw_http
from .harness import Browser, BrowserStack

pytestmark = pytest.mark.db

# Sends the form's fields and then the file (S3 ignores fields after it) with a progress listener on the upload,
# which makes even this "simple" multipart POST wait for a CORS preflight. Answers what the page could see.
POST_FORM = """
const [url, fields, text, done] = arguments;
const form = new FormData();
for (const [name, value] of Object.entries(fields)) form.append(name, value);
form.append("file", new Blob([text], {type: "text/csv"}), "browser.csv");
const progress = [];
const xhr = new XMLHttpRequest();
xhr.upload.addEventListener("progress", (event) => progress.push([event.loaded, event.total]));
xhr.addEventListener("load", () => done({status: xhr.status, progress, failed: false}));
xhr.addEventListener("error", () => done({status: xhr.status, progress, failed: true}));
xhr.open("POST", url);
xhr.send(form);
"""


def spec_title() -> str:
    spec: dict[str, Any] = yaml.safe_load((REPO_ROOT / "docs" / "openapi.yaml").read_text(encoding="utf-8"))
    return str(spec["info"]["title"])


@pytest.mark.parametrize("browser", ["desktop", "phone"], indirect=True)
def test_the_api_docs_render_from_the_twin_alone_at_both_sizes(stack: BrowserStack, browser: Browser) -> None:
    browser.open("/docs/")

    title = browser.wait_for_text(".information-container .title", spec_title())

    assert browser.driver.title == "Sluice API (local)"
    assert title.is_displayed()
    # The screen's size (a page without a viewport meta tag, as this one, is laid out 980 px wide on a phone).
    size = browser.driver.execute_script("return [screen.width, screen.height]")
    assert size == [browser.viewport.width, browser.viewport.height]
    # Everything the page loaded came from the twin: no CDN.
    loaded = browser.driver.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
    assert loaded
    assert all(url.startswith(f"{stack.base_url}/") for url in loaded), loaded
    load = browser.page_load()
    assert load.resources == len(loaded)
    assert load.transferred_bytes > (Path(swagger_ui_path) / "swagger-ui-bundle.js").stat().st_size
    assert 0 < load.interactive_ms <= load.loaded_ms


def test_a_console_error_fails_the_test_unless_it_expects_it(phone_browser: Browser) -> None:
    phone_browser.open("/docs/")
    phone_browser.wait_for(".information-container .title")

    phone_browser.driver.execute_script("console.error('provoked by the test')")

    errors = phone_browser.wait_until(lambda _: phone_browser.unexpected_errors(), "the error in the console")
    assert [(entry.level, entry.source) for entry in errors] == [("SEVERE", "console-api")]
    assert "provoked by the test" in errors[0].message
    phone_browser.expect_console_errors("provoked by the test")
    assert phone_browser.unexpected_errors() == []


@pytest.mark.console_errors(r"/api/v1/jobs - Failed to load resource: .* 401 \(Unauthorized\)")
def test_a_401_the_test_asks_for_is_let_through_by_its_marker(browser: Browser) -> None:
    browser.open("/docs/")
    browser.wait_for(".information-container .title")

    status = browser.run_async("fetch('/api/v1/jobs').then((answer) => arguments[0](answer.status))")

    assert status == 401
    logged = browser.wait_until(
        lambda _: [entry for entry in browser.console() if "401" in entry.message], "the 401 in the console"
    )
    assert [(entry.level, entry.source) for entry in logged] == [("SEVERE", "network")]
    assert browser.unexpected_errors() == []


def test_a_page_on_the_apis_origin_uploads_a_signed_form_to_s3_with_progress(
    stack: BrowserStack, browser: Browser
) -> None:
    # Given an upload form for a small CSV, signed by the API for the demo system's tenant
    bearer = stack.token()
    sensor = str(uuid.uuid4())
    rows = [f"{SYSTEM},{sensor},{now_text(-n)},{200 + n},bar,95" for n in range(1, 4)]
    text = "system_id,sensor_id,timestamp,value,unit,quality\n" + "\n".join(rows) + "\n"
    created = http("POST", stack.url("/api/v1/uploads"), bearer, {"filename": "browser.csv", "size": len(text)})
    assert created.status == 201, created.body
    form = created.body["upload"]
    bucket = stack.running.names().ref("BatchBucket")
    # Path style: botocore puts no bucket in the host of an IP address endpoint, so the browser can reach it.
    assert form["url"] == f"{stack.moto_endpoint}/{bucket}"
    log = REPO_ROOT / ".local" / "moto" / f"moto-{stack.running.moto_port}.log"
    log_before = log.stat().st_size

    # When a page of the twin (another origin than moto's) POSTs it from a script
    browser.open("/docs/")
    answer = browser.run_async(POST_FORM, form["url"], form["fields"], text)

    # Then the bucket answered the preflight, S3 stored the file, and the page saw it all happen
    assert (answer["status"], answer["failed"]) == (204, False), answer
    assert answer["progress"], "no upload progress event"
    assert answer["progress"][-1][0] == answer["progress"][-1][1]
    with log.open(encoding="utf-8") as lines:
        lines.seek(log_before)
        requests = [line for line in lines if f"/{bucket} HTTP/1.1" in line]
    assert [line.split('"')[1].split()[0] for line in requests] == ["OPTIONS", "POST"], requests
    assert all('" 20' in line for line in requests), requests
    stored = stack.running.s3().get_object(Bucket=bucket, Key=form["fields"]["key"])["Body"].read()
    assert stored.decode() == text
    job = finished_job(stack.running, bearer, created.body["job_id"])
    assert (job["status"], job["inserted_readings"], job["quarantined_readings"]) == ("completed", 3, 0), job


def test_moto_answers_the_upload_preflight_by_the_buckets_rule(stack: BrowserStack) -> None:
    # moto's server answers CORS for any origin and method when a bucket has no rule; the bucket's rule allows only
    # POST and says how long a browser may keep the answer, which shows that the rule is what answered.
    bucket_url = f"{stack.moto_endpoint}/{stack.running.names().ref('BatchBucket')}"
    preflight = {"Origin": stack.base_url, "Access-Control-Request-Method": "POST"}

    answer = raw_http("OPTIONS", bucket_url, headers=preflight)

    assert answer.status == 200
    assert answer.headers["access-control-allow-origin"] == stack.base_url
    assert answer.headers["access-control-allow-methods"] == "POST"
    assert answer.headers["access-control-max-age"] == "600"
