"""Uploads without AWS: which keys are uploads, what a request must be, the order of signing and recording, which
version of a key a job loads, and what maintenance does with an upload whose form expired. Fakes stand in for
the ports."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from sluice.domain.load import NotStarted, check_declared_size, not_started
from sluice.domain.maintenance import (
    MaintenancePolicy,
    UploadReport,
    requeue_ref,
    settle_uploads,
)
from sluice.domain.objects import ObjectRef, TargetKind, target_of, upload_object_key, version_of
from sluice.domain.ratelimit import INGEST_BUDGET, PrincipalBudget, RateLimit
from sluice.domain.uploads import (
    FormRequest,
    SignedForm,
    UploadCall,
    UploadPolicy,
    UploadPorts,
    check_upload,
    create_upload,
)
from sluice.errors import InvalidRequestError, RateLimitedError, StorageUnavailableError, UnreadableObjectError
from sluice.models.api import UploadRequest
from sluice.models.jobs import Job, JobSource, JobStatus

from .test_ratelimit import MemoryLimiter

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
JOB_ID = UUID("0b7f6a8e-2c1d-4e5f-9a8b-7c6d5e4f3a2b")
BUCKET = "sluice-batches-123456789012-eu-central-1"
POLICY = UploadPolicy(max_bytes=5 * 1024**3, expiry=timedelta(minutes=15), job_retention=timedelta(days=90))


# --- keys --------------------------------------------------------------------------------------------------------


def test_an_object_under_a_tenants_uploads_folder_is_the_upload_of_the_job_its_name_carries() -> None:
    target = target_of(ObjectRef(BUCKET, f"drops/acme/uploads/{JOB_ID}.csv.gz", etag="e1"))

    assert (target.kind, target.tenant_id, target.job_id) == (TargetKind.UPLOAD, "acme", JOB_ID)


@pytest.mark.parametrize(
    "key", ["drops/acme/uploads/readings.csv", "drops/acme/uploads/sub/x.csv", f"drops/acme/uploads/x/{JOB_ID}.csv"]
)
def test_anything_else_under_the_reserved_uploads_folder_is_ignored_not_loaded_as_a_drop(key: str) -> None:
    target = target_of(ObjectRef(BUCKET, key, etag="e1"))

    assert (target.kind, target.job_id) == (TargetKind.IGNORED, None)
    assert "reserved for uploads" in target.reason


def test_a_drop_beside_the_uploads_folder_stays_a_drop() -> None:
    assert target_of(ObjectRef(BUCKET, "drops/acme/uploads.csv", etag="e1")).kind is TargetKind.DROP
    assert target_of(ObjectRef(BUCKET, "drops/acme/2026/uploads.csv", etag="e1")).kind is TargetKind.DROP


def test_the_key_of_an_upload_reads_back_as_its_job() -> None:
    key = upload_object_key("acme", JOB_ID, ".ndjson")

    assert key == f"drops/acme/uploads/{JOB_ID}.ndjson"
    assert target_of(ObjectRef(BUCKET, key)).job_id == JOB_ID


def test_a_version_is_its_version_id_or_else_its_etag() -> None:
    assert version_of(ObjectRef(BUCKET, "k", version_id="v1", etag='"e1"')) == "v1"
    assert version_of(ObjectRef(BUCKET, "k", version_id="null", etag='"e1"')) == "e1"
    assert version_of(ObjectRef(BUCKET, "k", etag='"e1"')) == "e1"


# --- the request -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "encoding", "extension", "gzipped"),
    [
        ("readings.csv", None, ".csv", False),
        ("readings.CSV.GZ", None, ".csv.gz", True),
        ("export.jsonl", None, ".ndjson", False),
        ("export.ndjson", "gzip", ".ndjson.gz", True),
        ("batch.json", None, ".json", False),
    ],
)
def test_the_file_name_picks_the_keys_extension_and_gz_or_the_encoding_makes_it_gzip(
    filename: str, encoding: Any, extension: str, gzipped: bool
) -> None:
    upload = check_upload(UploadRequest(filename=filename, size=10, content_encoding=encoding), POLICY.max_bytes)

    assert (upload.extension, upload.gzipped) == (extension, gzipped)


@pytest.mark.parametrize(
    ("filename", "size", "field_at_fault"),
    [
        ("readings.xlsx", 10, "filename"),
        ("readings", 10, "filename"),
        ("../readings.csv", 10, "filename"),
        ("a\\b.csv", 10, "filename"),
        ("a\nb.csv", 10, "filename"),
        ("readings.csv", 5 * 1024**3 + 1, "size"),
    ],
)
def test_a_request_the_upload_cannot_take_is_400_naming_the_field(
    filename: str, size: int, field_at_fault: str
) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        check_upload(UploadRequest(filename=filename, size=size), POLICY.max_bytes)

    assert [problem.field for problem in refused.value.details] == [field_at_fault]


# --- signing, then recording -------------------------------------------------------------------------------------


@dataclass
class FakeSigner:
    signed: list[FormRequest] = field(default_factory=list)
    broken: bool = False

    def sign_form(self, form: FormRequest) -> SignedForm:
        if self.broken:
            raise StorageUnavailableError("no credentials")
        self.signed.append(form)
        return SignedForm(url=f"https://s3.example/{BUCKET}", fields={"key": form.key, "policy": "p"})


@dataclass
class FakeJobs:
    created: list[Job] = field(default_factory=list)
    broken: bool = False

    def create_job(self, job: Job) -> None:
        if self.broken:
            raise StorageUnavailableError("throttled")
        self.created.append(job)


@dataclass
class FakeIdempotency:
    remembered: dict[tuple[str, str], tuple[str, dict[str, Any]]] = field(default_factory=dict)

    def run_once(self, scope: str, key: str, fingerprint: str, action: Any) -> dict[str, Any]:
        if (scope, key) not in self.remembered:
            self.remembered[scope, key] = (fingerprint, action())
        return self.remembered[scope, key][1]


def upload_ports(
    signer: FakeSigner, jobs: FakeJobs, requests: int = 15
) -> tuple[UploadPorts, MemoryLimiter, FakeIdempotency]:
    limiter = MemoryLimiter(RateLimit(requests=requests, window_s=60))
    idempotency = FakeIdempotency()
    budget = PrincipalBudget(INGEST_BUDGET, limiter)
    return UploadPorts(jobs, signer, BUCKET, budget, idempotency), limiter, idempotency


def call(filename: str = "readings.csv.gz", size: int = 1000, key: str | None = None) -> UploadCall:
    return UploadCall("acme", "device-7", UploadRequest(filename=filename, size=size), idempotency_key=key)


def test_an_upload_signs_a_form_for_its_jobs_key_then_records_the_job_awaiting_it() -> None:
    signer, jobs = FakeSigner(), FakeJobs()
    ports, _, _ = upload_ports(signer, jobs)

    created = create_upload(call(), ports, POLICY, NOW)

    (job,) = jobs.created
    (form,) = signer.signed
    assert job.job_id == created.job_id
    assert (job.status, job.source, job.tenant_id, job.created_by) == (
        JobStatus.AWAITING_UPLOAD,
        JobSource.UPLOAD,
        "acme",
        "device-7",
    )
    assert job.object_key == form.key == f"drops/acme/uploads/{job.job_id}.csv.gz"
    assert (job.filename, job.size, job.upload_expires_at) == ("readings.csv.gz", 1000, NOW + timedelta(minutes=15))
    assert (form.max_bytes, form.gzipped, form.expires_in_s) == (1000, True, 900)
    assert created.expires_at == NOW + timedelta(minutes=15)
    assert created.form.fields["key"] == job.object_key


def test_a_form_that_cannot_be_signed_leaves_no_job_and_a_job_that_cannot_be_recorded_answers_no_form() -> None:
    unsigned, jobs = FakeSigner(broken=True), FakeJobs()
    with pytest.raises(StorageUnavailableError):
        create_upload(call(), upload_ports(unsigned, jobs)[0], POLICY, NOW)
    assert jobs.created == []

    signer, unrecorded = FakeSigner(), FakeJobs(broken=True)
    with pytest.raises(StorageUnavailableError):
        create_upload(call(), upload_ports(signer, unrecorded)[0], POLICY, NOW)


def test_an_unknown_format_is_refused_before_anything_is_signed_and_the_budget_is_spent_first() -> None:
    signer, jobs = FakeSigner(), FakeJobs()
    ports, limiter, _ = upload_ports(signer, jobs, requests=1)

    with pytest.raises(InvalidRequestError):
        create_upload(call(filename="readings.xlsx"), ports, POLICY, NOW)
    with pytest.raises(RateLimitedError):
        create_upload(call(), ports, POLICY, NOW)

    assert (signer.signed, jobs.created) == ([], [])
    # The refused request spent the one request the budget held, as a refused batch does.
    assert len(limiter.asked) == 2


def test_an_idempotency_key_gets_the_first_job_and_form_back() -> None:
    signer, jobs = FakeSigner(), FakeJobs()
    ports, _, _ = upload_ports(signer, jobs)

    first = create_upload(call(key="upload-1"), ports, POLICY, NOW)
    again = create_upload(call(key="upload-1"), ports, POLICY, NOW + timedelta(seconds=5))

    assert (first.replayed, again.replayed) == (False, True)
    assert (again.job_id, again.form, again.expires_at) == (first.job_id, first.form, first.expires_at)
    assert len(jobs.created) == len(signer.signed) == 1


# --- the worker: one version, within the declared size -----------------------------------------------------------


def upload_record(**changes: Any) -> Job:
    fields: dict[str, Any] = {
        "job_id": JOB_ID,
        "tenant_id": "acme",
        "status": JobStatus.AWAITING_UPLOAD,
        "source": JobSource.UPLOAD,
        "bucket": BUCKET,
        "object_key": f"drops/acme/uploads/{JOB_ID}.csv",
        "created_at": NOW - timedelta(hours=1),
        "expires_at": 0,
        "filename": "readings.csv",
        "size": 100,
        "upload_expires_at": NOW - timedelta(minutes=45),
    }
    return Job.model_validate(fields | changes)


def test_a_refused_start_says_whether_the_upload_is_unclaimed_another_version_or_completed() -> None:
    started = upload_record(status=JobStatus.QUEUED, object_version="v2")

    assert not_started(None, started) is NotStarted.UNCLAIMED
    assert not_started(upload_record(object_key="drops/acme/uploads/x.csv"), started) is NotStarted.UNCLAIMED
    assert not_started(upload_record(status=JobStatus.PROCESSING, object_version="v1"), started) is (
        NotStarted.OTHER_VERSION
    )
    assert not_started(upload_record(status=JobStatus.COMPLETED, object_version="v2"), started) is (
        NotStarted.COMPLETED
    )


def test_a_file_larger_than_its_upload_declared_fails_its_job_saying_so() -> None:
    check_declared_size(upload_record(), 100)
    check_declared_size(upload_record(size=None), 10**9)  # a drop declares nothing

    with pytest.raises(UnreadableObjectError, match="101 bytes, more than the 100 declared"):
        check_declared_size(upload_record(), 101)


def test_a_stuck_upload_is_led_back_only_to_the_version_its_job_loads() -> None:
    job = upload_record(status=JobStatus.PROCESSING, object_version="v1")

    assert requeue_ref(job, ObjectRef(BUCKET, job.object_key, version_id="v1", etag="e1")) is not None
    assert requeue_ref(job, ObjectRef(BUCKET, job.object_key, version_id="v2", etag="e2")) is None
    unversioned = upload_record(status=JobStatus.PROCESSING, object_version="e1")
    assert requeue_ref(unversioned, ObjectRef(BUCKET, job.object_key, etag='"e1"')) is not None


# --- maintenance -------------------------------------------------------------------------------------------------

MAINTENANCE = MaintenancePolicy(
    retention_years=5,
    rollup_retention_years=10,
    stuck_after=timedelta(minutes=45),
    queued_after=timedelta(minutes=15),
    upload_grace=timedelta(minutes=15),
)


@dataclass
class FakeUploads:
    records: dict[UUID, Job]
    broken: set[UUID] = field(default_factory=set)
    queued: list[UUID] = field(default_factory=list)
    failed: dict[UUID, str] = field(default_factory=dict)

    def jobs_created_before(self, status: JobStatus, before: datetime) -> Iterable[Job]:
        return [job for job in self.records.values() if job.status is status and job.created_at < before]

    def get_job(self, job_id: UUID) -> Job | None:
        if job_id in self.broken:
            raise StorageUnavailableError("throttled")
        return self.records.get(job_id)

    def queue_upload(self, job: Job) -> bool:
        self.queued.append(job.job_id)
        return True

    def fail_upload(self, job: Job, message: str, now: datetime) -> bool:
        self.failed[job.job_id] = message
        return True


@dataclass
class FakeBucket:
    keys: set[str] = field(default_factory=set)

    def newest_version(self, bucket: str, key: str) -> ObjectRef | None:
        return ObjectRef(bucket, key, etag="e1", size=10) if key in self.keys else None


def awaiting(expired_ago: timedelta) -> Job:
    job_id = uuid4()
    return upload_record(
        job_id=job_id,
        object_key=f"drops/acme/uploads/{job_id}.csv",
        created_at=NOW - expired_ago - timedelta(minutes=15),
        upload_expires_at=NOW - expired_ago,
    )


def test_an_expired_upload_is_queued_when_its_file_is_stored_and_failed_when_none_came() -> None:
    stored, never, within_grace = (
        awaiting(timedelta(minutes=20)),
        awaiting(timedelta(hours=2)),
        awaiting(timedelta(minutes=5)),
    )
    jobs = FakeUploads({job.job_id: job for job in (stored, never, within_grace)})

    report = settle_uploads(jobs, FakeBucket({stored.object_key, within_grace.object_key}), MAINTENANCE, NOW)

    assert jobs.queued == [stored.job_id]
    assert list(jobs.failed) == [never.job_id]
    assert jobs.failed[never.job_id].startswith(
        f"No file was uploaded before the upload form expired at {NOW - timedelta(hours=2):%Y-%m-%d %H:%M:%S} UTC;"
        " create a new upload. Quote error id "
    )
    assert report.counts == {"ExpiredUploadsQueued": 1, "ExpiredUploadsFailed": 1, "UploadErrors": 0}
    assert str(never.job_id) in str(report.summary()["failed_jobs"])


def test_an_upload_that_cannot_be_read_is_counted_and_the_others_are_settled() -> None:
    broken, never = awaiting(timedelta(hours=1)), awaiting(timedelta(hours=1))
    jobs = FakeUploads({job.job_id: job for job in (broken, never)}, broken={broken.job_id})

    report = settle_uploads(jobs, FakeBucket(), MAINTENANCE, NOW)

    assert isinstance(report, UploadReport)
    assert (report.errors, list(jobs.failed)) == (1, [never.job_id])
