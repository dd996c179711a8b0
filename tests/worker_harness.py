"""Driving LoadWorkerFunction the way its SQS event source mapping does: objects go into the bucket, S3 puts its
events on IngestQueue, and the messages received from there are handed to the handler as a Lambda SQS event.

Used by the worker's integration tests (in-process moto) and by its benchmark (the moto server).
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any
from urllib.parse import quote_plus
from uuid import UUID

import psycopg

from sluice.adapters.aws import dynamodb_client, s3_client, sqs_client
from sluice.adapters.dynamodb import DynamoJobStore, job_from_item
from sluice.adapters.s3 import S3BatchStore
from sluice.domain.ingest import Batch, IngestCall, IngestPolicy, api_job
from sluice.models.jobs import Job
from sluice_tools.faults import with_faults
from sluice_tools.local.template import StackContext
from sluice_tools.settings import FaultSwitches

from .lambdas import FakeLambdaContext


@dataclass
class WorkerHarness:
    """The worker's handler, the stack it runs against, and its database."""

    module: ModuleType
    stack: StackContext
    dsn: str
    remaining_ms: int = 300_000
    responses: list[dict[str, Any]] = field(default_factory=list)
    # The service the handler runs with (its wired one when None), e.g. one with a fault switched on.
    service: Any = None

    @property
    def bucket(self) -> str:
        return str(self.stack.ref("BatchBucket"))

    @property
    def queue_url(self) -> str:
        return str(self.stack.ref("IngestQueue"))

    def put(self, key: str, body: bytes, **extra: Any) -> dict[str, Any]:
        """Store an object; S3 enqueues its event."""
        answer: dict[str, Any] = dict(s3_client().put_object(Bucket=self.bucket, Key=key, Body=body, **extra))
        return answer

    def send_api_batch(self, tenant: str, system_id: UUID, body: bytes, total: int, *, gzipped: bool = False) -> UUID:
        """What IngestApiFunction leaves behind for an accepted batch, written by its own domain and adapters: the
        queued job record, then the object (whose S3 event enqueues it)."""
        batch = Batch(system_id=system_id, total_readings=total, body=body, gzipped=gzipped, sha256="")
        policy = IngestPolicy(max_body_bytes=len(body), job_retention=timedelta(days=90))
        job = api_job(IngestCall(tenant, "harness", body), batch, self.bucket, policy, datetime.now(UTC))
        DynamoJobStore(self.stack.ref("JobsTable")).create_job(job)
        S3BatchStore(self.bucket).put_batch(job.object_key, body, gzipped=gzipped, metadata={})
        return job.job_id

    def receive(self, visibility_timeout: int = 600) -> list[dict[str, Any]]:
        """Every message visible on IngestQueue now, received (so invisible) as an event source mapping does."""
        messages: list[dict[str, Any]] = []
        while True:
            batch = (
                sqs_client()
                .receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=10,
                    VisibilityTimeout=visibility_timeout,
                    AttributeNames=["All"],
                    WaitTimeSeconds=0,
                )
                .get("Messages", [])
            )
            if not batch:
                return messages
            messages.extend(batch)  # type: ignore[arg-type]

    def receive_objects(self, visibility_timeout: int = 600) -> list[dict[str, Any]]:
        """Like ``receive``, leaving out the s3:TestEvent S3 sends when notifications are configured."""
        return [m for m in self.receive(visibility_timeout) if '"s3:TestEvent"' not in m["Body"]]

    def event(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """The Lambda SQS event for ``messages``."""
        arn = self.stack.attributes["IngestQueue"]["Arn"]
        return {
            "Records": [
                {
                    "messageId": message["MessageId"],
                    "receiptHandle": message["ReceiptHandle"],
                    "body": message["Body"],
                    "attributes": message.get("Attributes", {}),
                    "messageAttributes": {},
                    "md5OfBody": message["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": arn,
                    "awsRegion": arn.split(":")[3],
                }
                for message in messages
            ]
        }

    def crash_after_chunk(self, chunk_no: int | None) -> None:
        """From now on the handler's service raises right after chunk ``chunk_no`` commits (None: no more)."""
        self.service = None
        if chunk_no is not None:
            self.service = with_faults(self.module.get_service(), FaultSwitches(crash_after_chunk=chunk_no))

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        """Run the handler on one event; return its partial-batch response."""
        context = FakeLambdaContext(remaining_ms=self.remaining_ms)
        response: dict[str, Any] = dict(self.module.lambda_handler(event, context, service=self.service))
        self.responses.append(response)
        return response

    def deliver(self) -> dict[str, Any]:
        """Receive every waiting message and hand them to the handler in one event; ack the ones that succeeded."""
        messages = self.receive()
        response = self.invoke(self.event(messages))
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        for message in messages:
            if message["MessageId"] not in failed:
                sqs_client().delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return response

    def jobs(self) -> list[Job]:
        table = str(self.stack.ref("JobsTable"))
        return [job_from_item(item) for item in dynamodb_client().scan(TableName=table)["Items"]]

    def job(self, job_id: UUID | str) -> Job:
        found = [job for job in self.jobs() if str(job.job_id) == str(job_id)]
        assert len(found) == 1, f"job {job_id} not found among {len(self.jobs())}"
        return found[0]

    def job_by_key(self, key: str) -> Job:
        found = [job for job in self.jobs() if job.object_key == key]
        assert len(found) == 1, f"{len(found)} jobs for {key}"
        return found[0]

    def query(self, statement: str, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return conn.execute(statement, params).fetchall()

    def quarantine(self, job_id: UUID | str) -> Iterator[dict[str, Any]]:
        """The job's quarantine rows, in position order, as dicts."""
        with psycopg.connect(self.dsn, autocommit=True) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT * FROM quarantined_readings WHERE job_id = %s ORDER BY position, id", (job_id,))
            names = [column.name for column in cursor.description or ()]
            for row in cursor:
                yield dict(zip(names, row, strict=True))


def s3_event_body(bucket: str, key: str, version_id: str | None = None, etag: str = "0" * 32) -> str:
    """The body S3 puts on the queue for one created object (keys arrive URL-encoded)."""
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/"), "size": 1, "eTag": etag, "sequencer": "00"}
    if version_id:
        obj["versionId"] = version_id
    return json.dumps(
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": bucket}, "object": obj},
                }
            ]
        }
    )
