"""JobStatusFunction against template.yaml's jobs table in moto: one job, a tenant's jobs page by page, and every
refusal. It has no database to lean on: everything it answers comes from the job records."""

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID, uuid4

import pytest
from botocore.exceptions import ClientError

from sluice.adapters.dynamodb import DynamoJobStore
from sluice.domain.jobs import JobFilter, listed_at
from sluice.models.jobs import Job, JobSource, JobStatus
from sluice.models.quarantine import JobReviewCounts
from sluice.settings import get_job_status_settings
from sluice_tools.local.template import StackContext, function_environment

from ..api_client import OTHER_TENANT, TENANT, Answer, call, claims
from ..lambdas import FakeLambdaContext, handler_module, load_event
from ..worker_harness import WorkerHarness

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

START = datetime(2026, 11, 20, 8, tzinfo=UTC)
SYSTEM_A = UUID("3f0c9a52-6a7e-4c43-9a55-2c8f1b7d9e01")
SYSTEM_B = UUID("9a0c9a52-6a7e-4c43-9a55-2c8f1b7d9e02")
READ = claims("jobs:read")


class Jobs:
    """The handler, and a way to put job records in its table."""

    def __init__(self, module: ModuleType, stack: StackContext) -> None:
        self.module = module
        self.store = DynamoJobStore(str(stack.ref("JobsTable")))
        self.made = 0

    def add(self, tenant: str = TENANT, **changes: Any) -> Job:
        """A job record, each one a second newer than the last."""
        self.made += 1
        job_id = changes.pop("job_id", uuid4())
        job = Job(
            job_id=job_id,
            tenant_id=tenant,
            status=JobStatus.QUEUED,
            source=JobSource.API,
            system_id=SYSTEM_A,
            created_by="press-gateway-17",
            total_readings=3,
            bucket="bucket",
            object_key=f"incoming/{tenant}/2026/11/20/{job_id}.json",
            created_at=START + timedelta(seconds=self.made),
            expires_at=1_900_000_000,
        ).model_copy(update=changes)
        self.store.create_job(job)
        return job

    def get(self, path: str, query: dict[str, str] | None = None, verified: dict[str, str] | None = READ) -> Answer:
        return call(self.module, "GET", path, verified=verified, query=query)

    def walk(self, query: dict[str, str], between_pages: Any = None) -> list[list[str]]:
        """Every page of a listing, following next_cursor; ``between_pages`` runs after each page."""
        pages: list[list[str]] = []
        cursor = None
        while True:
            answer = self.get("/api/v1/jobs", query | ({"cursor": cursor} if cursor else {}))
            assert answer.status == 200, answer.body
            pages.append([item["job_id"] for item in answer.body["items"]])
            cursor = answer.body["next_cursor"]
            if cursor is None:
                return pages
            if between_pages is not None:
                between_pages()


@pytest.fixture
def jobs(aws_stack: StackContext, monkeypatch: pytest.MonkeyPatch) -> Iterator[Jobs]:
    """JobStatusFunction with the template's environment, imported cold."""
    for name, value in function_environment(aws_stack, "JobStatusFunction").items():
        monkeypatch.setenv(name, value)
    get_job_status_settings.cache_clear()
    yield Jobs(handler_module("JobStatusFunction"), aws_stack)
    get_job_status_settings.cache_clear()


def test_a_job_shows_the_contract_fields(jobs: Jobs) -> None:
    job = jobs.add(
        status=JobStatus.COMPLETED,
        started_at=START + timedelta(seconds=2),
        completed_at=START + timedelta(seconds=3),
        inserted_readings=2,
        quarantined_readings=1,
        duplicate_readings=0,
        processing_time_ms=840,
        success_rate=2 / 3,
    )

    answer = jobs.get(f"/api/v1/jobs/{job.job_id}")

    assert answer.status == 200
    assert answer.body == {
        "job_id": str(job.job_id),
        "status": "completed",
        "source": "api",
        "system_id": str(SYSTEM_A),
        "created_by": "press-gateway-17",
        "total_readings": 3,
        "inserted_readings": 2,
        "quarantined_readings": 1,
        "duplicate_readings": 0,
        "success_rate": 2 / 3,
        "created_at": "2026-11-20T08:00:01Z",
        "started_at": "2026-11-20T08:00:02Z",
        "completed_at": "2026-11-20T08:00:03Z",
        "processing_time_ms": 840,
        "error_message": None,
        "reviewed_readings": 0,
        "replayed_readings": 0,
        # An upload's; null for other jobs.
        "filename": None,
        "size": None,
        "upload_expires_at": None,
    }


def test_a_trailing_slash_finds_the_same_job(jobs: Jobs) -> None:
    job = jobs.add()

    assert jobs.get(f"/api/v1/jobs/{job.job_id}/").body == jobs.get(f"/api/v1/jobs/{job.job_id}").body


def test_the_sample_event_reads_its_job(jobs: Jobs) -> None:
    event = load_event("job-status-get.json")
    jobs.add(job_id=UUID(event["pathParameters"]["job_id"]))

    result = jobs.module.lambda_handler(event, FakeLambdaContext())

    assert result["statusCode"] == 200


def test_a_queued_job_shows_zero_counts_and_a_failed_one_its_message(jobs: Jobs) -> None:
    queued = jobs.add()
    failed = jobs.add(status=JobStatus.FAILED, error_message="the object is not gzip")

    assert jobs.get(f"/api/v1/jobs/{queued.job_id}").body["inserted_readings"] == 0
    assert jobs.get(f"/api/v1/jobs/{failed.job_id}").body["error_message"] == "the object is not gzip"


def test_review_counts_recorded_on_the_job_are_shown_and_only_grow(jobs: Jobs) -> None:
    job = jobs.add(status=JobStatus.COMPLETED)

    assert jobs.store.record_reviews(JobReviewCounts(job.job_id, reviewed=3, replayed=2))
    assert not jobs.store.record_reviews(JobReviewCounts(job.job_id, reviewed=2, replayed=1))  # arrived late
    assert not jobs.store.record_reviews(JobReviewCounts(uuid4(), reviewed=1, replayed=1))  # no such job

    body = jobs.get(f"/api/v1/jobs/{job.job_id}").body
    assert (body["reviewed_readings"], body["replayed_readings"]) == (3, 2)
    assert len(jobs.store.list_jobs(TENANT, JobFilter(), 10, None).jobs) == 1


def test_another_tenants_job_is_not_found_exactly_like_a_missing_one(jobs: Jobs) -> None:
    theirs = jobs.add(tenant=OTHER_TENANT)
    missing = uuid4()

    answer = jobs.get(f"/api/v1/jobs/{theirs.job_id}")
    nothing = jobs.get(f"/api/v1/jobs/{missing}")

    assert (answer.status, answer.error["code"]) == (404, "not_found")
    assert answer.error["message"] == nothing.error["message"].replace(str(missing), str(theirs.job_id))
    assert jobs.get("/api/v1/jobs/not-a-uuid").status == 404
    assert jobs.get(f"/api/v1/jobs/{theirs.job_id}/extra").status == 404


def test_a_token_without_jobs_read_is_forbidden_and_no_token_unauthorized(jobs: Jobs) -> None:
    job = jobs.add()

    forbidden = jobs.get(f"/api/v1/jobs/{job.job_id}", verified=claims("ingest:write"))
    no_tenant = jobs.get("/api/v1/jobs", verified=claims("jobs:read", tenant=None))
    anonymous = jobs.get("/api/v1/jobs", verified=None)

    assert (forbidden.status, forbidden.error["details"][0]["field"]) == (403, "scope")
    assert (no_tenant.status, no_tenant.error["details"][0]["field"]) == (403, "tenant_id")
    assert (anonymous.status, anonymous.headers.get("WWW-Authenticate")) == (401, "Bearer")


def test_the_listing_is_the_tenants_jobs_newest_first(jobs: Jobs) -> None:
    mine = [jobs.add() for _ in range(3)]
    jobs.add(tenant=OTHER_TENANT)

    answer = jobs.get("/api/v1/jobs")

    assert answer.status == 200
    assert [item["job_id"] for item in answer.body["items"]] == [str(job.job_id) for job in reversed(mine)]
    assert answer.body["next_cursor"] is None


def test_jobs_of_one_second_list_newest_first_whole_second_included(jobs: Jobs) -> None:
    whole = jobs.add(created_at=START.replace(second=30))
    later = jobs.add(created_at=START.replace(second=30, microsecond=200_000))

    listed = [item["job_id"] for item in jobs.get("/api/v1/jobs").body["items"]]

    assert listed == [str(later.job_id), str(whole.job_id)]


def test_filters_keep_only_matching_jobs(jobs: Jobs) -> None:
    completed_a = jobs.add(status=JobStatus.COMPLETED)
    jobs.add(status=JobStatus.FAILED)
    drop = jobs.add(status=JobStatus.COMPLETED, source=JobSource.DROP, system_id=None)
    completed_b = jobs.add(status=JobStatus.COMPLETED, system_id=SYSTEM_B)

    def listed(**query: str) -> list[str]:
        answer = jobs.get("/api/v1/jobs", query)
        assert answer.status == 200, answer.body
        return [item["job_id"] for item in answer.body["items"]]

    assert listed(status="completed") == [str(completed_b.job_id), str(drop.job_id), str(completed_a.job_id)]
    assert listed(status="completed", source="drop") == [str(drop.job_id)]
    assert listed(system_id=str(SYSTEM_B)) == [str(completed_b.job_id)]
    assert listed(status="processing") == []


def test_pages_walk_every_job_once_while_new_jobs_arrive(jobs: Jobs) -> None:
    before = [str(jobs.add(status=JobStatus.COMPLETED if i % 2 else JobStatus.FAILED).job_id) for i in range(23)]

    pages = jobs.walk({"limit": "5"}, between_pages=jobs.add)
    filtered = jobs.walk({"limit": "4", "status": "completed"}, between_pages=jobs.add)

    walked = [job_id for page in pages for job_id in page]
    assert walked == list(reversed(before))
    assert [len(page) for page in pages] == [5, 5, 5, 5, 3]
    assert [job_id for page in filtered for job_id in page] == list(reversed(before[1::2]))


def test_a_filtered_listing_stops_at_its_read_budget_and_resumes_where_it_stopped(jobs: Jobs) -> None:
    wanted = [jobs.add(status=JobStatus.FAILED) for _ in range(2)]
    for _ in range(30):
        jobs.add(status=JobStatus.COMPLETED)
    store = DynamoJobStore(jobs.store._table, read_budget=10)

    first = store.list_jobs(TENANT, JobFilter(status=JobStatus.FAILED), 5, None)
    rest = []
    position = first.next_position
    while position is not None:
        listing = store.list_jobs(TENANT, JobFilter(status=JobStatus.FAILED), 5, position)
        rest.extend(listing.jobs)
        position = listing.next_position

    assert first.jobs == []
    assert first.next_position is not None
    assert [job.job_id for job in rest] == [job.job_id for job in reversed(wanted)]


def test_pages_of_large_job_records_stay_under_lambdas_answer_limit(jobs: Jobs) -> None:
    # Given job records near DynamoDB's 400 KB item limit, their text full of quotes (four bytes each in the Lambda
    # answer): 9.6 MB of answer in one page of the default limit
    large = [str(jobs.add(status=JobStatus.FAILED, error_message='"' * 300_000).job_id) for _ in range(8)]

    # When the listing is walked
    sizes: list[int] = []
    walked: list[str] = []
    cursor = None
    while True:
        event = load_event("job-status-list.json")
        event["queryStringParameters"] = {"cursor": cursor} if cursor else None
        event["requestContext"]["authorizer"]["jwt"]["claims"] = READ
        result = jobs.module.lambda_handler(event, FakeLambdaContext())
        sizes.append(len(json.dumps(result, ensure_ascii=False).encode()))
        page = json.loads(result["body"])
        walked += [item["job_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    # Then each page fits Lambda's answer (6,291,556 bytes), and every job is listed once
    assert max(sizes) <= 6_291_556
    assert walked == list(reversed(large))


# --- a date range ---------------------------------------------------------------------------------------------------


def text(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_a_date_range_keeps_the_jobs_from_its_start_up_to_but_not_at_its_end(jobs: Jobs) -> None:
    # Given six jobs a second apart, at START + 1 s .. START + 6 s
    made = [str(jobs.add().job_id) for _ in range(6)]

    def listed(**query: str) -> list[str]:
        answer = jobs.get("/api/v1/jobs", query)
        assert answer.status == 200, answer.body
        return [item["job_id"] for item in answer.body["items"]]

    # When ranges are asked for, their ends falling on jobs
    # Then the start's job is in, the end's job is out, and either end alone leaves the other side open
    assert listed(created_from=text(START + timedelta(seconds=2)), created_to=text(START + timedelta(seconds=5))) == [
        made[3],
        made[2],
        made[1],
    ]
    assert listed(created_from=text(START + timedelta(seconds=5))) == [made[5], made[4]]
    assert listed(created_to=text(START + timedelta(seconds=2))) == [made[0]]
    assert listed(created_from=text(START + timedelta(seconds=7))) == []


def test_a_range_compares_instants_whatever_their_offset_and_fraction(jobs: Jobs) -> None:
    # Given jobs on a whole second and on its last microsecond (stored as "...:30.000000Z" and "...:30.999999Z")
    whole = jobs.add(created_at=START.replace(second=30))
    last = jobs.add(created_at=START.replace(second=30, microsecond=999_999))
    jobs.add(created_at=START.replace(second=31))

    def listed(**query: str) -> list[str]:
        answer = jobs.get("/api/v1/jobs", query)
        assert answer.status == 200, answer.body
        return [item["job_id"] for item in answer.body["items"]]

    # When the range is that second, written in another offset and without a fraction
    # Then both jobs are in it, and the next second's is not ("...:30+01:00" is not compared as text)
    assert listed(created_from="2026-11-20T09:00:30+01:00", created_to="2026-11-20T09:00:31+01:00") == [
        str(last.job_id),
        str(whole.job_id),
    ]
    # And an end a microsecond after the whole second keeps only that one
    assert listed(created_from="2026-11-20T08:00:30Z", created_to="2026-11-20T08:00:30.000001Z") == [str(whole.job_id)]


def test_a_range_is_read_through_the_index_so_older_and_newer_jobs_cost_no_reads(jobs: Jobs) -> None:
    # Given two failed jobs, with 30 newer completed ones above them and a store that reads 10 items a request
    wanted = [jobs.add(status=JobStatus.FAILED) for _ in range(2)]
    for _ in range(30):
        jobs.add(status=JobStatus.COMPLETED)
    store = DynamoJobStore(jobs.store._table, read_budget=10)
    keep = JobFilter(
        status=JobStatus.FAILED,
        created_from=wanted[0].created_at,
        created_to=wanted[-1].created_at + timedelta(seconds=1),
    )

    # When the failed jobs of their range are listed
    listing = store.list_jobs(TENANT, keep, 5, None)

    # Then one request finds both: the newer jobs lie outside the key condition, never read (a filter would have
    # read 10 of them and stopped, as in test_a_filtered_listing_stops_at_its_read_budget...)
    assert [job.job_id for job in listing.jobs] == [job.job_id for job in reversed(wanted)]
    assert listing.next_position is None


def test_pages_of_a_range_walk_every_job_in_it_once_while_new_jobs_arrive(jobs: Jobs) -> None:
    # Given twelve jobs, of which the middle eight are in the range
    made = [str(jobs.add().job_id) for _ in range(12)]
    query = {"created_from": text(START + timedelta(seconds=3)), "created_to": text(START + timedelta(seconds=11))}

    # When the range is walked three at a time, a job arriving after each page (later than the range)
    pages = jobs.walk(query | {"limit": "3"}, between_pages=jobs.add)
    filtered = jobs.walk(query | {"limit": "2", "source": "api"}, between_pages=jobs.add)

    # Then every job of the range is listed once, newest first
    assert pages == [made[9:6:-1], made[6:3:-1], made[3:1:-1]]
    assert [job_id for page in filtered for job_id in page] == list(reversed(made[2:10]))


class BoundedStartKeys:
    """The moto client, but refusing a Query whose ExclusiveStartKey lies outside its key condition on created_at,
    or on the bound a descending query walks towards, as DynamoDB does ("The provided starting key is outside query
    boundaries based on provided condition"); moto takes any start key."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def query(self, **request: Any) -> Any:
        start = request.get("ExclusiveStartKey")
        condition = re.search(
            r"created_at (?:BETWEEN (:\w+) AND (:\w+)|(>=|<) (:\w+))", request["KeyConditionExpression"]
        )
        if start is not None and condition is not None:
            at = start["created_at"]["S"]
            values = {name: value["S"] for name, value in request["ExpressionAttributeValues"].items()}
            low, high, operator, bound = condition.groups()
            if low is not None:
                inside = values[low] < at <= values[high]
            elif operator == ">=":
                inside = at > values[bound]
            else:
                inside = at < values[bound]
            if not inside:
                raise ClientError(
                    {"Error": {"Code": "ValidationException", "Message": "The provided starting key is outside query"}},
                    "Query",
                )
        return self._client.query(**request)


def test_a_position_from_outside_the_range_continues_inside_it_without_a_refused_query(jobs: Jobs) -> None:
    # Given ten jobs, a store whose client refuses start keys outside the range as DynamoDB does, and a range of the
    # 4th to 6th
    from sluice.adapters.aws import dynamodb_client  # noqa: PLC0415

    made = [jobs.add() for _ in range(10)]
    store = DynamoJobStore(jobs.store._table, client=cast("DynamoDBClient", BoundedStartKeys(dynamodb_client())))
    keep = JobFilter(created_from=made[3].created_at, created_to=made[6].created_at)

    def after(job: Job) -> list[UUID]:
        return [found.job_id for found in store.list_jobs(TENANT, keep, 5, listed_at(job)).jobs]

    # When the range is listed after positions later than it, inside it, at its start and earlier than it
    # Then a later position has the whole range after it, an inner one the rest, the others nothing
    assert after(made[8]) == after(made[6]) == [made[5].job_id, made[4].job_id, made[3].job_id]
    assert after(made[5]) == [made[4].job_id, made[3].job_id]
    assert after(made[3]) == after(made[1]) == []
    # And from one end only
    keep = JobFilter(created_from=made[3].created_at)
    assert after(made[4]) == [made[3].job_id]
    keep = JobFilter(created_to=made[3].created_at)
    assert after(made[5]) == [made[2].job_id, made[1].job_id, made[0].job_id]


def test_a_jobs_creator_is_the_senders_sub_and_a_drops_is_null(jobs: Jobs, worker: WorkerHarness) -> None:
    # Given an API batch sent by principal "harness", and a file dropped into the bucket, both loaded by the worker
    system = worker.query("INSERT INTO systems (tenant_id, name) VALUES (%s, 'press-1') RETURNING id", TENANT)[0][0]
    reading = {"sensor_id": str(uuid4()), "timestamp": text(datetime.now(UTC)), "value": 1.0, "unit": "bar"}
    body = json.dumps({"system_id": str(system), "readings": [reading | {"quality": 90}]}).encode()
    sent = worker.send_api_batch(TENANT, system, body, 1)
    worker.put(
        f"drops/{TENANT}/press-1.ndjson", json.dumps(reading | {"system_id": str(system), "quality": 90}).encode()
    )
    assert worker.deliver() == {"batchItemFailures": []}
    dropped = worker.job_by_key(f"drops/{TENANT}/press-1.ndjson")

    # When the tenant reads both jobs
    batch_job = jobs.get(f"/api/v1/jobs/{sent}").body
    drop_job = jobs.get(f"/api/v1/jobs/{dropped.job_id}").body

    # Then the batch names its sender and the drop no one
    assert (batch_job["source"], batch_job["created_by"]) == ("api", "harness")
    assert (drop_job["source"], drop_job["created_by"]) == ("drop", None)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "done"}, "status"),
        ({"source": "ftp"}, "source"),
        ({"system_id": "press-17"}, "system_id"),
        ({"state": "completed"}, "state"),
        ({"cursor": "bm90IGEgY3Vyc29y"}, "cursor"),
        ({"cursor": "eyJrIjoicXVhcmFudGluZSIsInAiOnsiYmVmb3JlX2lkIjo1fX0"}, "cursor"),
        ({"cursor": "eyJrIjoiam9icyIsInAiOnsiY3JlYXRlZF9hdCI6Im5vIn19"}, "cursor"),
        ({"created_from": "2026-11-20T08:00:00"}, "created_from"),
        ({"created_from": "2026-11-20"}, "created_from"),
        ({"created_from": "1795680000"}, "created_from"),
        ({"created_to": "yesterday"}, "created_to"),
        ({"created_from": "0001-01-01T00:00:00+01:00"}, "created_from"),
        ({"created_from": "2026-11-20T08:00:00Z", "created_to": "2026-11-20T08:00:00Z"}, "created_to"),
        ({"created_from": "2026-11-20T09:00:00+01:00", "created_to": "2026-11-20T08:00:00Z"}, "created_to"),
    ],
)
def test_a_bad_query_is_refused_naming_the_parameter(jobs: Jobs, query: dict[str, str], field: str) -> None:
    answer = jobs.get("/api/v1/jobs", query)

    assert (answer.status, answer.error["code"]) == (400, "invalid_request")
    assert [detail["field"] for detail in answer.error["details"]] == [field]


def test_the_jobs_table_gone_answers_503(jobs: Jobs, aws_stack: StackContext) -> None:
    from sluice.adapters.aws import dynamodb_client  # noqa: PLC0415

    dynamodb_client().delete_table(TableName=str(aws_stack.ref("JobsTable")))

    listing = jobs.get("/api/v1/jobs")
    one = jobs.get(f"/api/v1/jobs/{uuid4()}")

    assert (listing.status, listing.headers["Retry-After"]) == (503, "5")
    assert one.status == 503


def test_an_expired_job_is_gone_from_reads_while_its_item_lingers(jobs: Jobs) -> None:
    # Given a job past its expires_at that DynamoDB's TTL has not deleted yet (it takes days), and a live one
    expired = jobs.add(expires_at=int(datetime.now(UTC).timestamp()) - 60)
    live = jobs.add()

    # When the tenant reads it and lists its jobs
    answer = jobs.get(f"/api/v1/jobs/{expired.job_id}")
    listed = jobs.get("/api/v1/jobs").body["items"]

    # Then it is 404, like a deleted one, and not listed
    assert answer.status == 404, answer.body
    assert [item["job_id"] for item in listed] == [str(live.job_id)]


# --- the per-principal read limit ---------------------------------------------------------------------------------


def test_one_principal_gets_the_template_default_of_reads_then_429_with_retry_after(jobs: Jobs) -> None:
    # Given the template's ReadRateLimitRequests (120 in any rolling RateLimitWindowSeconds, 60)
    job = jobs.add()

    # When one principal reads 121 times in a burst, listing and reading one job in turn
    answers = [jobs.get("/api/v1/jobs") if n % 2 else jobs.get(f"/api/v1/jobs/{job.job_id}") for n in range(121)]

    # Then 120 are served and the 121st is refused with the usual error body and a wait in seconds
    assert [answer.status for answer in answers[:120]] == [200] * 120
    refused = answers[120]
    assert (refused.status, refused.error["code"]) == (429, "rate_limited")
    assert refused.error["message"].startswith("rate limit reached (read)")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


def test_a_read_flood_from_one_principal_leaves_others_unaffected(
    jobs: Jobs, aws_stack: StackContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUICE_READ_RATE_LIMIT_REQUESTS", "3")
    get_job_status_settings.cache_clear()
    limited = Jobs(handler_module("JobStatusFunction"), aws_stack)
    job = limited.add()
    flooder = claims("jobs:read", sub="script-in-a-loop")

    flood = [limited.get(f"/api/v1/jobs/{job.job_id}", verified=flooder).status for _ in range(5)]
    colleague = limited.get(f"/api/v1/jobs/{job.job_id}", verified=claims("jobs:read", sub="dashboard"))
    same_sub_other_tenant = limited.get("/api/v1/jobs", verified=claims("jobs:read", OTHER_TENANT, "script-in-a-loop"))

    assert flood == [200, 200, 200, 429, 429]
    assert colleague.status == 200
    assert same_sub_other_tenant.status == 200


def test_a_refused_read_needs_a_verified_caller_first(jobs: Jobs, aws_stack: StackContext) -> None:
    # The limit counts verified principals only: a request without a tenant or scope never writes a rate-limit log.
    from sluice.adapters.aws import dynamodb_client  # noqa: PLC0415

    assert jobs.get("/api/v1/jobs", verified=claims("ingest:write")).status == 403
    assert jobs.get("/api/v1/jobs", verified=None).status == 401

    assert dynamodb_client().scan(TableName=str(aws_stack.ref("RateLimitTable")))["Count"] == 0
