"""Uploads end to end in-process: IngestApiFunction signs a form and records the job, the form is POSTed as
multipart/form-data to S3 (template.yaml's bucket in moto), S3's event reaches LoadWorkerFunction, which loads the
file into the real TimescaleDB under the same job; MaintenanceFunction settles the uploads that never came.

moto stores whatever a form POST sends, so what S3 in AWS would refuse is checked on the policy document itself
(``tests/s3_post_policy.py``)."""

import base64
import csv
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any
from uuid import UUID

import boto3
import pytest
import requests

from sluice.adapters.aws import dynamodb_client, sqs_client
from sluice.adapters.dynamodb import DynamoJobStore
from sluice.models.jobs import Job, JobSource, JobStatus
from sluice.settings import (
    get_ingest_api_settings,
    get_job_status_settings,
    get_load_worker_settings,
    get_maintenance_settings,
)
from sluice_tools.local.template import StackContext, function_environment

from ..api_client import Answer, call, claims
from ..lambdas import FakeLambdaContext, handler_module, load_event
from ..s3_post_policy import refusals
from ..worker_harness import WorkerHarness

TENANT = "demo"
SENSOR = "6b1d2c3e-4f50-4a61-8b72-93a4b5c6d7e8"


@dataclass
class Uploads:
    """The ingest, job status, worker and maintenance handlers over one stack and database."""

    api: ModuleType
    jobs_api: ModuleType
    maintenance: ModuleType
    worker: WorkerHarness
    system_id: UUID

    def create(self, filename: str = "readings.csv.gz", size: int = 1000, **extra: Any) -> Answer:
        body = {"filename": filename, "size": size} | extra
        return call(self.api, "POST", "/api/v1/uploads", verified=claims("ingest:write"), body=body)

    def list_jobs(self, **query: str) -> Answer:
        return call(self.jobs_api, "GET", "/api/v1/jobs", verified=claims("jobs:read"), query=query)

    def job(self, job_id: str | UUID) -> Job:
        found = DynamoJobStore(str(self.worker.stack.ref("JobsTable"))).get_job(UUID(str(job_id)))
        assert found is not None
        return found

    def run_maintenance(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.maintenance.lambda_handler(
            load_event("maintenance-schedule.json"), FakeLambdaContext(remaining_ms=120_000)
        )
        return answer

    def expire(self, job_id: str, by: timedelta) -> None:
        """Move a job's creation and its form's expiry back, as if its form had expired ``by`` ago."""
        expired = datetime.now(UTC) - by
        dynamodb_client().update_item(
            TableName=str(self.worker.stack.ref("JobsTable")),
            Key={"job_id": {"S": job_id}},
            UpdateExpression="SET created_at = :created, upload_expires_at = :expired",
            ExpressionAttributeValues={
                ":created": {"S": (expired - timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")},
                ":expired": {"S": expired.isoformat()},
            },
        )


@pytest.fixture
def uploads(
    aws_stack: StackContext, migrated_db: str, database_secret: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Uploads]:
    """The four functions with the environments template.yaml gives them (their settings do not collide)."""
    for function in ("IngestApiFunction", "JobStatusFunction", "LoadWorkerFunction", "MaintenanceFunction"):
        for name, value in function_environment(aws_stack, function).items():
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("SLUICE_DB_SECRET_ARN", database_secret)
    settings = (get_ingest_api_settings, get_job_status_settings, get_load_worker_settings, get_maintenance_settings)
    for cached in settings:
        cached.cache_clear()
    worker = WorkerHarness(handler_module("LoadWorkerFunction"), aws_stack, migrated_db)
    rows = worker.query("INSERT INTO systems (tenant_id, name) VALUES (%s, 'press-17') RETURNING id", TENANT)
    harness = Uploads(
        api=handler_module("IngestApiFunction"),
        jobs_api=handler_module("JobStatusFunction"),
        maintenance=handler_module("MaintenanceFunction"),
        worker=worker,
        system_id=UUID(str(rows[0][0])),
    )
    yield harness
    worker.module.get_service().connector.close()
    harness.maintenance.get_service().connector.close()
    for cached in settings:
        cached.cache_clear()


def csv_gz(system_id: UUID, rows: int, *, first: int = 0, bad: int = 0) -> bytes:
    """A gzip CSV of ``rows`` readings, one second apart from ``first``; the last ``bad`` of them in psi."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["system_id", "sensor_id", "timestamp", "value", "unit", "quality"])
    for n in range(first, first + rows):
        unit = "psi" if n >= first + rows - bad else "bar"
        writer.writerow([system_id, SENSOR, (start + timedelta(seconds=n)).isoformat(), 212.5, unit, 97])
    return gzip.compress(text.getvalue().encode())


def post_form(created: Answer, body: bytes, filename: str = "readings.csv.gz") -> requests.Response:
    """POST the file as a browser or ``curl -F`` does: every field of the form, then the file, last."""
    upload = created.body["upload"]
    return requests.post(upload["url"], data=upload["fields"], files={"file": (filename, body)}, timeout=30)


def stored(uploads: Uploads, job_id: str) -> tuple[int, int]:
    """(readings, quarantined readings) stored under a job."""
    readings = uploads.worker.query("SELECT count(*) FROM readings WHERE job_id = %s", job_id)[0][0]
    quarantined = uploads.worker.query("SELECT count(*) FROM quarantined_readings WHERE job_id = %s", job_id)[0][0]
    return int(readings), int(quarantined)


# --- the form and its job ----------------------------------------------------------------------------------------


def test_an_upload_answers_a_form_for_its_own_key_and_records_the_job_awaiting_it(uploads: Uploads) -> None:
    before = datetime.now(UTC)

    created = uploads.create("Press 17 (Nov).CSV.GZ", 4096)

    assert created.status == 201
    job_id = created.body["job_id"]
    key = f"drops/{TENANT}/uploads/{job_id}.csv.gz"
    assert created.body["status"] == "awaiting_upload"
    assert created.body["status_url"] == created.headers["Location"] == f"https://api.example.com/api/v1/jobs/{job_id}"
    assert created.headers["Idempotent-Replayed"] == "false"
    # The bucket's regional endpoint, as in AWS (through `make run`, the moto server's address).
    assert created.body["upload"]["url"] == f"https://{uploads.worker.bucket}.s3.eu-central-1.amazonaws.com/"
    fields = created.body["upload"]["fields"]
    assert fields["key"] == key
    assert fields["Content-Encoding"] == "gzip"
    expires_at = datetime.fromisoformat(created.body["expires_at"])
    assert before + timedelta(seconds=899) <= expires_at <= datetime.now(UTC) + timedelta(seconds=900)
    job = uploads.job(job_id)
    assert (job.status, job.source, job.object_key, job.created_by) == (
        JobStatus.AWAITING_UPLOAD,
        JobSource.UPLOAD,
        key,
        "operator-anna",
    )
    assert (job.filename, job.size, job.upload_expires_at) == ("Press 17 (Nov).CSV.GZ", 4096, expires_at)
    policy = json.loads(base64.b64decode(fields["policy"]))
    assert {"key": key} in policy["conditions"]
    assert ["content-length-range", 1, 4096] in policy["conditions"]
    assert {"Content-Encoding": "gzip"} in policy["conditions"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"filename": "readings.xlsx", "size": 10}, "filename"),
        ({"filename": "readings.csv", "size": 0}, "size"),
        ({"filename": "readings.csv", "size": 5 * 1024**3 + 1}, "size"),
        ({"filename": "readings.csv", "size": "10"}, "size"),
        ({"filename": "readings.csv", "size": 10, "content_encoding": "br"}, "content_encoding"),
        ({"size": 10}, "filename"),
        ({"filename": "readings.csv", "size": 10, "key": "drops/demo/x.csv"}, "key"),
    ],
)
def test_a_request_the_upload_cannot_take_is_400_naming_the_field_and_nothing_is_signed_or_recorded(
    uploads: Uploads, body: dict[str, Any], field: str
) -> None:
    answer = call(uploads.api, "POST", "/api/v1/uploads", verified=claims("ingest:write"), body=body)

    assert (answer.status, answer.error["code"]) == (400, "invalid_request")
    assert field in [detail["field"] for detail in answer.error["details"]]
    assert uploads.worker.jobs() == []


def test_an_idempotency_key_gets_the_first_job_and_form_back_and_refuses_another_file(uploads: Uploads) -> None:
    def create(body: dict[str, Any]) -> Answer:
        headers = {"idempotency-key": "press-17-upload-1"}
        return call(uploads.api, "POST", "/api/v1/uploads", verified=claims("ingest:write"), body=body, headers=headers)

    first = create({"filename": "readings.csv", "size": 10})
    again = create({"filename": "readings.csv", "size": 10})
    other = create({"filename": "readings.csv", "size": 11})

    assert (first.status, again.status) == (201, 201)
    assert (first.headers["Idempotent-Replayed"], again.headers["Idempotent-Replayed"]) == ("false", "true")
    assert again.body == first.body
    assert (other.status, other.error["code"]) == (422, "idempotency_key_reused")
    assert [str(job.job_id) for job in uploads.worker.jobs()] == [first.body["job_id"]]


def test_the_upload_route_needs_ingest_write(uploads: Uploads) -> None:
    answer = call(uploads.api, "POST", "/api/v1/uploads", verified=claims("jobs:read"), body={"filename": "a.csv"})

    assert (answer.status, answer.error["details"][0]["field"]) == (403, "scope")


def test_the_form_satisfies_its_policy_and_s3_would_refuse_it_expired_for_another_key_or_oversize(
    uploads: Uploads,
) -> None:
    created = uploads.create("readings.csv.gz", 1000)
    url, fields = created.body["upload"]["url"], created.body["upload"]["fields"]
    # The credentials the function signed with (moto's, in-process), as S3 would look them up by access key id.
    credentials = boto3.Session().get_credentials()
    assert credentials is not None
    assert fields["x-amz-credential"].startswith(f"{credentials.access_key}/")
    secret = credentials.secret_key
    now, expires_at = datetime.now(UTC), datetime.fromisoformat(created.body["expires_at"])

    assert refusals(url, fields, 1000, secret, now) == []
    assert refusals(url, fields, 1, secret, expires_at - timedelta(seconds=1)) == []
    assert refusals(url, fields, 1000, secret, expires_at) == [f"the policy expired at {expires_at:%Y-%m-%dT%H:%M:%SZ}"]
    assert refusals(url, fields | {"key": "drops/demo/uploads/other.csv.gz"}, 1000, secret, now) == [
        f"the field key is 'drops/demo/uploads/other.csv.gz', the policy wants eq {fields['key']!r}"
    ]
    assert refusals(url, fields, 1001, secret, now) == ["the body has 1001 bytes, not 1 to 1000"]
    assert refusals(url, fields, 0, secret, now) == ["the body has 0 bytes, not 1 to 1000"]
    assert refusals(url, fields | {"Content-Type": "text/csv"}, 10, secret, now) == [
        "the field content-type is not allowed by any condition"
    ]
    assert refusals(url, fields | {"Content-Encoding": "br"}, 10, secret, now) == [
        "the field content-encoding is 'br', the policy wants eq 'gzip'"
    ]
    assert refusals(url.replace(uploads.worker.bucket, "another-bucket"), fields, 10, secret, now) == [
        f"the field bucket is 'another-bucket', the policy wants eq {uploads.worker.bucket!r}"
    ]
    assert refusals(url, fields, 10, "another-secret", now) == ["the signature does not match the policy"]


# --- the file, loaded under the same job -------------------------------------------------------------------------


def test_a_posted_file_takes_the_same_job_to_completed_with_exact_counts(uploads: Uploads) -> None:
    body = csv_gz(uploads.system_id, 2_000, bad=3)
    created = uploads.create("readings.csv.gz", len(body))
    job_id = created.body["job_id"]

    posted = post_form(created, body)
    uploads.worker.deliver()

    assert posted.status_code == 204
    job = uploads.job(job_id)
    assert (job.status, job.total_readings, job.inserted_readings, job.quarantined_readings) == (
        JobStatus.COMPLETED,
        2_000,
        1_997,
        3,
    )
    assert stored(uploads, job_id) == (1_997, 3)
    assert job.object_version is not None
    # One job: the upload's; no drop job was made for its key.
    assert [each.job_id for each in uploads.worker.jobs()] == [UUID(job_id)]
    listed = uploads.list_jobs(source="upload")
    assert [(item["job_id"], item["status"], item["filename"], item["size"]) for item in listed.body["items"]] == [
        (job_id, "completed", "readings.csv.gz", len(body))
    ]


def test_a_duplicated_event_leaves_the_completed_job_as_it_was(uploads: Uploads) -> None:
    body = csv_gz(uploads.system_id, 50)
    created = uploads.create("readings.csv.gz", len(body))
    post_form(created, body)
    (message,) = uploads.worker.receive_objects()
    event = uploads.worker.event([message])

    uploads.worker.invoke(event)
    first = uploads.job(created.body["job_id"])
    uploads.worker.invoke(event)

    again = uploads.job(created.body["job_id"])
    assert again == first
    assert (again.status, again.inserted_readings) == (JobStatus.COMPLETED, 50)
    assert stored(uploads, created.body["job_id"]) == (50, 0)


def test_a_form_posted_twice_loads_only_the_first_version_its_job_started(
    uploads: Uploads, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    first, second = csv_gz(uploads.system_id, 40), csv_gz(uploads.system_id, 60, first=1000)
    created = uploads.create("readings.csv.gz", max(len(first), len(second)))

    post_form(created, first)
    post_form(created, second)
    uploads.worker.deliver()

    job = uploads.job(created.body["job_id"])
    assert (job.status, job.total_readings, job.inserted_readings) == (JobStatus.COMPLETED, 40, 40)
    assert stored(uploads, created.body["job_id"]) == (40, 0)
    assert "upload version ignored: its job loads another version" in caplog.text
    assert '"IgnoredUploadVersions":[1.0]' in capsys.readouterr().out


def test_a_file_larger_than_declared_fails_its_job_saying_so(uploads: Uploads) -> None:
    body = csv_gz(uploads.system_id, 500)
    created = uploads.create("readings.csv.gz", 100)

    post_form(created, body)  # moto stores it: it enforces no content-length-range
    uploads.worker.deliver()

    job = uploads.job(created.body["job_id"])
    assert job.status is JobStatus.FAILED
    assert job.error_message == (
        f"the uploaded file has {len(body)} bytes, more than the 100 declared when the upload was created: it was"
        " not loaded; create a new upload with the file's size"
    )
    assert stored(uploads, created.body["job_id"]) == (0, 0)


def test_a_file_under_the_uploads_folder_that_no_form_was_signed_for_is_not_loaded(uploads: Uploads) -> None:
    key = f"drops/{TENANT}/uploads/0b7f6a8e-2c1d-4e5f-9a8b-7c6d5e4f3a2b.csv.gz"

    uploads.worker.put(key, csv_gz(uploads.system_id, 5))
    uploads.worker.deliver()

    assert uploads.worker.jobs() == []
    assert uploads.worker.query("SELECT count(*) FROM readings")[0][0] == 0


# --- listing -----------------------------------------------------------------------------------------------------


def test_jobs_awaiting_their_upload_are_listed_and_filtered(uploads: Uploads) -> None:
    created = uploads.create("readings.ndjson", 10)
    uploads.worker.send_api_batch(TENANT, uploads.system_id, b'{"system_id": "x", "readings": [1]}', 1)

    awaiting = uploads.list_jobs(status="awaiting_upload")
    everything = uploads.list_jobs()

    assert [item["job_id"] for item in awaiting.body["items"]] == [created.body["job_id"]]
    (item,) = awaiting.body["items"]
    assert (item["source"], item["filename"], item["size"], item["total_readings"]) == (
        "upload",
        "readings.ndjson",
        10,
        0,
    )
    assert item["upload_expires_at"] == created.body["expires_at"].replace("+00:00", "Z")
    assert len(everything.body["items"]) == 2


# --- maintenance -------------------------------------------------------------------------------------------------


def test_an_upload_never_made_is_failed_after_its_form_expired_and_a_grace(uploads: Uploads) -> None:
    waiting, expired = uploads.create("a.csv", 10), uploads.create("b.csv", 10)
    uploads.expire(expired.body["job_id"], timedelta(minutes=16))
    uploads.expire(waiting.body["job_id"], timedelta(minutes=14))

    answer = uploads.run_maintenance()

    job = uploads.job(expired.body["job_id"])
    assert job.status is JobStatus.FAILED
    assert job.upload_expires_at is not None
    assert job.error_message is not None
    assert job.error_message.startswith(
        f"No file was uploaded before the upload form expired at {job.upload_expires_at:%Y-%m-%d %H:%M:%S} UTC;"
        " create a new upload. Quote error id "
    )
    assert uploads.job(waiting.body["job_id"]).status is JobStatus.AWAITING_UPLOAD
    assert answer["uploads"]["failed_jobs"] == [expired.body["job_id"]]


def test_an_upload_whose_s3_event_was_lost_is_queued_requeued_and_completed(uploads: Uploads) -> None:
    body = csv_gz(uploads.system_id, 30)
    created = uploads.create("readings.csv.gz", len(body))
    post_form(created, body)
    sqs_client().purge_queue(QueueUrl=uploads.worker.queue_url)  # the S3 event is lost
    uploads.expire(created.body["job_id"], timedelta(minutes=20))

    answer = uploads.run_maintenance()
    uploads.worker.deliver()

    assert answer["uploads"]["queued_jobs"] == [created.body["job_id"]]
    # Queued by the uploads step, its event sent by the stuck-jobs step of the same run.
    assert answer["stuck_jobs"]["requeued_jobs"] == [created.body["job_id"]]
    job = uploads.job(created.body["job_id"])
    assert (job.status, job.inserted_readings) == (JobStatus.COMPLETED, 30)
