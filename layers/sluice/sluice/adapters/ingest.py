"""Wires the ingest domain to S3 and DynamoDB, from IngestApiFunction's settings."""

from dataclasses import dataclass
from datetime import timedelta

from sluice.adapters.dynamodb import DynamoJobStore, DynamoRequestLimiter
from sluice.adapters.faults import FaultyBatchStore, FaultyJobRepository
from sluice.adapters.idempotency import PowertoolsIdempotencyGuard
from sluice.adapters.s3 import S3BatchStore
from sluice.domain.ingest import BatchStore, IngestPolicy, IngestPorts, JobRepository
from sluice.domain.ratelimit import RateLimit
from sluice.settings import IngestApiSettings


@dataclass(frozen=True, slots=True)
class IngestService:
    """What the ingest handler needs, built once per execution environment."""

    ports: IngestPorts
    policy: IngestPolicy
    tenant_claim: str
    idempotency: PowertoolsIdempotencyGuard


def build_ingest_service(settings: IngestApiSettings) -> IngestService:
    """The AWS-backed ports and the limits of IngestApiFunction."""
    idempotency = PowertoolsIdempotencyGuard(settings.idempotency_table, settings.idempotency_ttl_seconds)
    jobs: JobRepository = DynamoJobStore(settings.jobs_table)
    batches: BatchStore = S3BatchStore(settings.batch_bucket)
    if settings.fault_fail_job_write_every:
        jobs = FaultyJobRepository(jobs, settings.fault_fail_job_write_every)
    if settings.fault_fail_batch_put_every:
        batches = FaultyBatchStore(batches, settings.fault_fail_batch_put_every)
    ports = IngestPorts(
        jobs=jobs,
        batches=batches,
        limiter=DynamoRequestLimiter(
            settings.rate_limit_table,
            RateLimit(requests=settings.rate_limit_requests, window_s=settings.rate_limit_window_seconds),
        ),
        idempotency=idempotency,
    )
    policy = IngestPolicy(
        max_body_bytes=settings.max_body_bytes, job_retention=timedelta(days=settings.job_retention_days)
    )
    return IngestService(ports=ports, policy=policy, tenant_claim=settings.tenant_claim, idempotency=idempotency)
