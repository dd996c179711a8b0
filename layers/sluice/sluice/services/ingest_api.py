"""IngestApiFunction's wiring: settings -> S3 and DynamoDB clients -> the ingest ports and limits."""

from dataclasses import dataclass
from datetime import timedelta

from sluice.adapters.dynamodb import DynamoJobStore
from sluice.adapters.idempotency import PowertoolsIdempotencyGuard
from sluice.adapters.s3 import S3BatchStore
from sluice.domain.ingest import IngestPolicy, IngestPorts
from sluice.services.limits import ingest_budget
from sluice.settings import IngestApiSettings, get_ingest_api_settings


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
    ports = IngestPorts(
        jobs=DynamoJobStore(settings.jobs_table),
        batches=S3BatchStore(settings.batch_bucket),
        limiter=ingest_budget(settings),
        idempotency=idempotency,
    )
    policy = IngestPolicy(
        max_body_bytes=settings.max_body_bytes, job_retention=timedelta(days=settings.job_retention_days)
    )
    return IngestService(ports=ports, policy=policy, tenant_claim=settings.tenant_claim, idempotency=idempotency)


def wire_ingest_service() -> IngestService:
    """The service from the function's environment; each execution environment builds it once."""
    return build_ingest_service(get_ingest_api_settings())
