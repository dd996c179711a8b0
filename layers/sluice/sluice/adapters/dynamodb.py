"""DynamoDB: job records and the per-principal request log of the rate limit."""

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from botocore.exceptions import BotoCoreError, ClientError

from sluice.adapters.aws import dynamodb_client
from sluice.domain.jobs import JobFilter, JobListing, JobPosition
from sluice.domain.load import JobFinish, NotStarted, not_started
from sluice.domain.ratelimit import RateLimit, Spend, SpendDecision, decide_spend
from sluice.errors import StorageUnavailableError
from sluice.models.jobs import Job, JobSource, JobStatus, sortable_instant
from sluice.models.quarantine import JobReviewCounts

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

# Two writers of one principal's log rarely collide; when they do, the loser reads again and decides again.
_RATE_LIMIT_ATTEMPTS = 5
_CONDITION_FAILED = "ConditionalCheckFailedException"
# template.yaml's JobsTable index: tenant_id (hash) + created_at (range, ISO 8601 UTC text).
TENANT_JOBS_INDEX = "TenantJobsIndex"
# template.yaml's JobsTable index: status (hash) + created_at (range), projecting what the maintenance sweeper reads.
STATUS_JOBS_INDEX = "StatusJobsIndex"
# A filtered listing reads at most this many index items per request; a page may then be short, with a cursor.
LISTING_READ_BUDGET = 1000


class DynamoJobStore:
    """Job records, keyed by job_id; a tenant's jobs are listed newest first through TenantJobsIndex."""

    def __init__(
        self, table: str, client: "DynamoDBClient | None" = None, read_budget: int = LISTING_READ_BUDGET
    ) -> None:
        self._table = table
        self._client = client or dynamodb_client()
        self._read_budget = read_budget

    def create_job(self, job: Job) -> None:
        """Write a new job record; a job id is never reused."""
        if not self._put_new(job):
            raise StorageUnavailableError(f"writing job {job.job_id} failed: the id is taken")

    def fail_job(self, job_id: UUID, message: str, now: datetime) -> None:
        """Mark a job that is still queued as failed with a message for the client."""
        if not self._mark_failed(job_id, message, now, (JobStatus.QUEUED,)):
            raise StorageUnavailableError(f"marking job {job_id} failed did not work: it is no longer queued")

    def park_job(self, job_id: UUID, message: str, now: datetime) -> bool:
        """Mark a queued or processing job failed (its message goes to the dead-letter queue); False otherwise."""
        return self._mark_failed(job_id, message, now, (JobStatus.QUEUED, JobStatus.PROCESSING))

    def _mark_failed(self, job_id: UUID, message: str, now: datetime, from_statuses: tuple[JobStatus, ...]) -> bool:
        """Set status failed, the message and completed_at, when its status is one of ``from_statuses``."""
        names = {f":from{n}": status for n, status in enumerate(from_statuses)}
        answer = _conditional(
            f"marking job {job_id} failed",
            lambda: self._client.update_item(
                TableName=self._table,
                Key={"job_id": {"S": str(job_id)}},
                UpdateExpression="SET #status = :failed, error_message = :message, completed_at = :now",
                ConditionExpression=f"#status IN ({', '.join(names)})",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":failed": {"S": JobStatus.FAILED},
                    ":message": {"S": message},
                    ":now": {"S": now.isoformat()},
                    **{name: {"S": status} for name, status in names.items()},
                },
            ),
        )
        return answer is not None

    def jobs_created_before(self, status: JobStatus, before: datetime, page_size: int = 500) -> Iterator[Job]:
        """The jobs in ``status`` created before ``before``, oldest first, through StatusJobsIndex (for the
        maintenance sweeper: it reads only what it may act on, never the finished jobs). The index is eventually
        consistent and projects only what the sweeper reads; writes based on it are conditional."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": STATUS_JOBS_INDEX,
            "KeyConditionExpression": "#status = :status AND created_at < :before",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {
                ":status": {"S": status},
                # The text created_at is stored as, so it compares as time.
                ":before": {"S": sortable_instant(before)},
            },
            "Limit": page_size,
        }
        while True:
            try:
                answer = self._client.query(**request)
            except (BotoCoreError, ClientError) as exc:
                raise StorageUnavailableError(f"listing {status} jobs failed: {exc}") from exc
            for item in answer.get("Items", []):
                yield job_from_item(item)
            last = answer.get("LastEvaluatedKey")
            if last is None:
                return
            request["ExclusiveStartKey"] = last

    def requeue_job(self, job: Job, now: datetime) -> bool:
        """Record that the sweeper requeues ``job`` (attempted_at = now) if it is as it was read: still in its
        status and not started or requeued since. False otherwise. On a queued job attempted_at is this record
        alone (a worker's start makes a job processing), which is how the sweeper requeues one only once."""
        return self._update_unchanged(job, "requeueing", "SET attempted_at = :now", {":now": {"S": now.isoformat()}})

    def fail_unchanged_job(self, job: Job, message: str, now: datetime) -> bool:
        """Mark ``job`` failed with ``message`` if it is as it was read (see requeue_job); False otherwise."""
        return self._update_unchanged(job, "failing", _FAIL, _fail_values(message, now))

    def queue_upload(self, job: Job) -> bool:
        """Move an upload's job from awaiting_upload to queued (its file is stored; the worker never started it);
        False when it is no longer awaiting (a worker started it meanwhile)."""
        return self._move_awaiting(job, "queueing", "SET #status = :queued", {":queued": {"S": JobStatus.QUEUED}})

    def fail_upload(self, job: Job, message: str, now: datetime) -> bool:
        """Fail an upload's job whose file never came, if it is still awaiting it; False otherwise."""
        return self._move_awaiting(job, "failing", _FAIL, _fail_values(message, now))

    def _move_awaiting(self, job: Job, doing: str, update: str, values: dict[str, "AttributeValueTypeDef"]) -> bool:
        answer = _conditional(
            f"{doing} upload job {job.job_id}",
            lambda: self._client.update_item(
                TableName=self._table,
                Key={"job_id": {"S": str(job.job_id)}},
                UpdateExpression=update,
                ConditionExpression="#status = :awaiting",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={**values, ":awaiting": {"S": JobStatus.AWAITING_UPLOAD}},
            ),
        )
        return answer is not None

    def _update_unchanged(self, job: Job, doing: str, update: str, values: dict[str, "AttributeValueTypeDef"]) -> bool:
        # A worker that starts the job meanwhile sets attempted_at (always written as an ISO 8601 UTC instant by
        # this class, so the value read back compares equal as text).
        condition = "#status = :seen_status AND "
        seen: dict[str, AttributeValueTypeDef] = {":seen_status": {"S": job.status}}
        if job.attempted_at is None:
            condition += "attribute_not_exists(attempted_at)"
        else:
            condition += "attempted_at = :seen_attempt"
            seen[":seen_attempt"] = {"S": job.attempted_at.astimezone(UTC).isoformat()}
        answer = _conditional(
            f"{doing} job {job.job_id}",
            lambda: self._client.update_item(
                TableName=self._table,
                Key={"job_id": {"S": str(job.job_id)}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={**values, **seen},
            ),
        )
        return answer is not None

    def get_job(self, job_id: UUID) -> Job | None:
        """Read one job record (strongly consistent), or None."""
        try:
            answer = self._client.get_item(
                TableName=self._table, Key={"job_id": {"S": str(job_id)}}, ConsistentRead=True
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailableError(f"reading job {job_id} failed: {exc}") from exc
        item = answer.get("Item")
        return None if item is None else job_from_item(item)

    def start_job(self, job: Job, now: datetime) -> Job | NotStarted:
        """Mark the job processing and return it as stored, when its record names the same object as ``job`` (see
        ``claims``). A drop's record is created from ``job`` when it does not exist; an API batch's or an upload's
        never is: only the API writes those, before the object can exist. An upload's job is pinned to the first
        version started (``object_version``): any other version is refused. One call in the usual cases: an API
        batch's or an upload's job exists, a drop's does not (unless its S3 event came twice)."""
        started = job.model_copy(update={"status": JobStatus.PROCESSING, "started_at": now})
        if job.source is JobSource.DROP and self._put_new(started):
            return started
        marked = self._mark_started(job, now)
        if marked is not None:
            return marked
        # Refused: the record is missing, names another object or version, or is completed (a completed job stays
        # completed).
        return not_started(self.get_job(job.job_id), job)

    def _put_new(self, job: Job) -> bool:
        """Write a job record unless its id exists; False when it does."""
        written = _conditional(
            f"writing job {job.job_id}",
            lambda: self._client.put_item(
                TableName=self._table, Item=job_item(job), ConditionExpression="attribute_not_exists(job_id)"
            ),
        )
        return written is not None

    def _mark_started(self, job: Job, now: datetime) -> Job | None:
        update = "SET #status = :processing, started_at = if_not_exists(started_at, :now), attempted_at = :now"
        condition = (
            "attribute_exists(job_id) AND #status <> :completed AND tenant_id = :tenant"
            " AND #bucket = :bucket AND object_key = :key"
        )
        values: dict[str, AttributeValueTypeDef] = {
            ":processing": {"S": JobStatus.PROCESSING},
            ":completed": {"S": JobStatus.COMPLETED},
            ":now": {"S": now.isoformat()},
            ":tenant": {"S": job.tenant_id},
            ":bucket": {"S": job.bucket},
            ":key": {"S": job.object_key},
        }
        if job.object_version is not None:
            # The first version started is the job's: a form POSTed twice leaves two versions of one key.
            update += ", object_version = if_not_exists(object_version, :version)"
            condition += " AND (attribute_not_exists(object_version) OR object_version = :version)"
            values[":version"] = {"S": job.object_version}
        answer = _conditional(
            f"starting job {job.job_id}",
            lambda: self._client.update_item(
                TableName=self._table,
                Key={"job_id": {"S": str(job.job_id)}},
                # started_at is the first start: a resumed job's processing time counts from there. attempted_at is
                # this start, which the maintenance sweeper counts as progress. A failed job starts again when its
                # parked message is redriven: the failure it ended with no longer describes it.
                UpdateExpression=f"{update} REMOVE error_message, completed_at",
                # Only the record of this very object (``claims``): an object no job record names is not loaded.
                ConditionExpression=condition,
                ExpressionAttributeNames={"#status": "status", "#bucket": "bucket"},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            ),
        )
        return None if answer is None else job_from_item(answer["Attributes"])

    def finish_job(self, job_id: UUID, finish: JobFinish) -> None:
        """Record a job's end with the counts summed from its ledger (the same values however often written)."""
        counts = finish.counts
        values: dict[str, AttributeValueTypeDef] = {
            ":status": {"S": finish.status},
            ":completed_at": {"S": finish.completed_at.isoformat()},
            ":ms": {"N": str(finish.processing_time_ms)},
            ":total": {"N": str(counts.total)},
            ":inserted": {"N": str(counts.inserted)},
            ":quarantined": {"N": str(counts.quarantined)},
            ":duplicates": {"N": str(counts.duplicates)},
        }
        assignments = [
            "#status = :status",
            "completed_at = :completed_at",
            "processing_time_ms = :ms",
            "total_readings = :total",
            "inserted_readings = :inserted",
            "quarantined_readings = :quarantined",
            "duplicate_readings = :duplicates",
        ]
        removals = []
        if counts.success_rate is None:
            removals.append("success_rate")
        else:
            assignments.append("success_rate = :rate")
            values[":rate"] = {"N": repr(counts.success_rate)}
        if finish.error_message is None:
            removals.append("error_message")
        else:
            assignments.append("error_message = :message")
            values[":message"] = {"S": finish.error_message}
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"job_id": {"S": str(job_id)}},
                UpdateExpression=f"SET {', '.join(assignments)} REMOVE {', '.join(removals)}"
                if removals
                else f"SET {', '.join(assignments)}",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=values,
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailableError(f"finishing job {job_id} failed: {exc}") from exc

    def list_jobs(self, tenant_id: str, keep: JobFilter, limit: int, after: JobPosition | None) -> JobListing:
        """A tenant's jobs newest first through TenantJobsIndex. The created range is part of the key condition,
        so it costs no reads; the other filters are applied by DynamoDB after reading, so a listing with filters
        stops after reading ``read_budget`` items and hands back the position it reached; the page is then
        shorter than ``limit`` but the walk misses nothing."""
        created = _created_range(keep)
        if created is None:
            return JobListing([], None)
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": TENANT_JOBS_INDEX,
            "KeyConditionExpression": f"tenant_id = :tenant{created.condition}",
            "ExpressionAttributeValues": {":tenant": {"S": tenant_id}, **created.values},
            "ScanIndexForward": False,
        }
        _add_filter(query, keep)
        start = None if after is None else _index_key(tenant_id, after.created_at, str(after.job_id))
        # DynamoDB refuses a start key outside the key condition ("outside query boundaries"), and one on the bound
        # the listing walks towards. Newest first, a position later than the range has all of the range after it,
        # and one at its start or earlier has nothing (but a job created in the very same microsecond).
        if after is not None and created.newest_excluded is not None and after.created_at >= created.newest_excluded:
            start = None
        if after is not None and created.oldest is not None and after.created_at <= created.oldest:
            return JobListing([], None)
        # One more than the page, so a full page knows whether anything follows it; a filtered listing reads
        # bigger pages, since most of what it reads may be filtered out.
        page_size = limit + 1 if keep.keeps_everything else min(max(limit + 1, 200), self._read_budget)
        jobs: list[Job] = []
        last_shown: JobPosition | None = None
        read = 0
        while True:
            page = {**query, "Limit": page_size}
            if start is not None:
                page["ExclusiveStartKey"] = start
            try:
                answer = self._client.query(**page)
            except (BotoCoreError, ClientError) as exc:
                raise StorageUnavailableError(f"listing jobs failed: {exc}") from exc
            for item in answer.get("Items", []):
                if len(jobs) == limit:
                    return JobListing(jobs, last_shown)
                jobs.append(job_from_item(item))
                last_shown = _position(item)
            read += int(answer.get("ScannedCount", 0))
            last = answer.get("LastEvaluatedKey")
            if last is None:
                return JobListing(jobs, None)
            if read >= self._read_budget:
                return JobListing(jobs, _position(last))
            start = last

    def record_reviews(self, counts: JobReviewCounts) -> bool:
        """Show a job's review counts on its record; False when the record is gone (expired) or already shows
        later counts. Counts only grow, so the larger wins whatever order two reviewers' writes arrive in."""
        written = _conditional(
            f"recording reviews of job {counts.job_id}",
            lambda: self._client.update_item(
                TableName=self._table,
                Key={"job_id": {"S": str(counts.job_id)}},
                UpdateExpression="SET reviewed_readings = :reviewed, replayed_readings = :replayed",
                ConditionExpression="attribute_exists(job_id)"
                " AND (attribute_not_exists(reviewed_readings) OR reviewed_readings < :reviewed)",
                ExpressionAttributeValues={
                    ":reviewed": {"N": str(counts.reviewed)},
                    ":replayed": {"N": str(counts.replayed)},
                },
            ),
        )
        return written is not None


@dataclass(frozen=True, slots=True)
class _CreatedRange:
    """A listing's created range as a condition on the index's sort key (empty for none), its values, and its
    bounds as the index's text: ``oldest`` included, ``newest_excluded`` not."""

    condition: str
    values: dict[str, "AttributeValueTypeDef"]
    oldest: str | None
    newest_excluded: str | None


def _created_range(keep: JobFilter) -> _CreatedRange | None:
    """The key condition for ``keep``'s created range; None when the range holds no instant. Bounds are written
    as created_at is stored, or comparing the text would not be comparing the instants."""
    start, end = keep.created_from, keep.created_to
    if start is not None and end is not None:
        if end <= start:
            return None
        # A key condition has one comparison on the sort key, and BETWEEN includes both ends: created_at has
        # microseconds, so "before the end" is "at most a microsecond before it" (never before the start here).
        oldest, newest = sortable_instant(start), sortable_instant(end - timedelta(microseconds=1))
        values: dict[str, AttributeValueTypeDef] = {":oldest": {"S": oldest}, ":newest": {"S": newest}}
        return _CreatedRange(" AND created_at BETWEEN :oldest AND :newest", values, oldest, sortable_instant(end))
    if start is not None:
        oldest = sortable_instant(start)
        return _CreatedRange(" AND created_at >= :oldest", {":oldest": {"S": oldest}}, oldest, None)
    if end is not None:
        newest_excluded = sortable_instant(end)
        return _CreatedRange(" AND created_at < :newest", {":newest": {"S": newest_excluded}}, None, newest_excluded)
    return _CreatedRange("", {}, None, None)


def _add_filter(query: dict[str, Any], keep: JobFilter) -> None:
    conditions: list[str] = []
    names: dict[str, str] = {}
    values: dict[str, AttributeValueTypeDef] = query["ExpressionAttributeValues"]
    for name, wanted in (("status", keep.status), ("source", keep.source), ("system_id", keep.system_id)):
        if wanted is not None:
            conditions.append(f"#{name} = :{name}")
            names[f"#{name}"] = name
            values[f":{name}"] = {"S": str(wanted)}
    if keep.alive_at is not None:
        conditions.append("#expires_at > :alive_at")
        names["#expires_at"] = "expires_at"
        values[":alive_at"] = {"N": str(keep.alive_at)}
    if conditions:
        query["FilterExpression"] = " AND ".join(conditions)
        query["ExpressionAttributeNames"] = names


def _index_key(tenant_id: str, created_at: str, job_id: str) -> dict[str, "AttributeValueTypeDef"]:
    return {"tenant_id": {"S": tenant_id}, "created_at": {"S": created_at}, "job_id": {"S": job_id}}


def _position(key: Mapping[str, Any]) -> JobPosition:
    """The listing position of an index item or key (the stored text, so the next query starts exactly there)."""
    return JobPosition(created_at=key["created_at"]["S"], job_id=UUID(key["job_id"]["S"]))


class DynamoRequestLimiter:
    """The sliding-log rate limit, one item per principal and budget, written with optimistic concurrency."""

    def __init__(self, table: str, limit: RateLimit, client: "DynamoDBClient | None" = None) -> None:
        self._table = table
        self._limit = limit
        self._client = client or dynamodb_client()

    def admit(self, principal_key: str, now: datetime, amount: int = 1) -> SpendDecision:
        """Decide on one request spending ``amount`` of the limit and, when it passes, record it."""
        moment = now.timestamp()
        decision = SpendDecision(allowed=False, history=(), retry_after_s=1)
        for _ in range(_RATE_LIMIT_ATTEMPTS):
            history, version = self._read(principal_key)
            decision = decide_spend(history, moment, self._limit, amount)
            if not decision.allowed or self._write(principal_key, decision.history, version, moment):
                return decision
        # Still contended after several rounds: this principal is sending in parallel, which is what a limit is for.
        return SpendDecision(allowed=False, history=decision.history, retry_after_s=1)

    def _read(self, principal_key: str) -> tuple[list[Spend], int]:
        try:
            item = self._client.get_item(
                TableName=self._table, Key={"limit_key": {"S": principal_key}}, ConsistentRead=True
            ).get("Item")
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailableError(f"reading the rate limit failed: {exc}") from exc
        if item is None:
            return [], 0
        moments = [float(value["N"]) for value in item["hits"]["L"]]
        # A log whose requests each spent one unit (every request log, ingest's among them) has no amounts.
        amounts = [int(value["N"]) for value in item["amounts"]["L"]] if "amounts" in item else [1] * len(moments)
        return [Spend(at, amount) for at, amount in zip(moments, amounts, strict=True)], int(item["version"]["N"])

    def _write(self, principal_key: str, history: tuple[Spend, ...], version: int, now: float) -> bool:
        item: dict[str, AttributeValueTypeDef] = {
            "limit_key": {"S": principal_key},
            "hits": {"L": [{"N": repr(spend.at)} for spend in history]},
            "version": {"N": str(version + 1)},
            # TTL removes logs of principals that went quiet.
            "expires_at": {"N": str(int(now) + self._limit.window_s + 1)},
        }
        if any(spend.amount != 1 for spend in history):
            item["amounts"] = {"L": [{"N": str(spend.amount)} for spend in history]}
        written = _conditional(
            "recording the rate limit",
            lambda: self._client.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(limit_key) OR version = :version",
                ExpressionAttributeValues={":version": {"N": str(version)}},
            ),
        )
        return written is not None


# How the maintenance sweeper fails a job it found unchanged, or an upload still awaiting its file.
_FAIL = "SET #status = :failed, error_message = :message, completed_at = :now"


def _fail_values(message: str, now: datetime) -> dict[str, "AttributeValueTypeDef"]:
    return {":failed": {"S": JobStatus.FAILED}, ":message": {"S": message}, ":now": {"S": now.isoformat()}}


def _condition_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == _CONDITION_FAILED


def _conditional[Answer](doing: str, write: Callable[[], Answer]) -> Answer | None:
    """A conditional write's answer, or None when DynamoDB refused its condition; any other fault is a
    StorageUnavailableError naming what was being done."""
    try:
        return write()
    except ClientError as exc:
        if _condition_failed(exc):
            return None
        raise StorageUnavailableError(f"{doing} failed: {exc}") from exc
    except BotoCoreError as exc:
        raise StorageUnavailableError(f"{doing} failed: {exc}") from exc


def job_item(job: Job) -> dict[str, "AttributeValueTypeDef"]:
    """A job as a DynamoDB item: absent values are left out rather than stored as NULL."""
    return {name: _attribute(value) for name, value in job.model_dump(mode="json", exclude_none=True).items()}


def job_from_item(item: Mapping[str, Any]) -> Job:
    """A job read back from its DynamoDB item."""
    return Job.model_validate({name: _value(attribute) for name, attribute in item.items()})


def _attribute(value: object) -> "AttributeValueTypeDef":
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"N": repr(value)}
    raise TypeError(f"no DynamoDB attribute for {value!r}")


def _value(attribute: Mapping[str, Any]) -> object:
    if "S" in attribute:
        return attribute["S"]
    number = str(attribute["N"])
    return float(number) if any(mark in number for mark in ".eE") else int(number)
