"""IngestApiFunction's wiring: settings -> S3 and DynamoDB clients -> the ingest ports and limits."""

from dataclasses import dataclass
from datetime import timedelta

from sluice.adapters.dynamodb import DynamoJobStore
from sluice.adapters.idempotency import PowertoolsIdempotencyGuard
from sluice.adapters.s3 import S3BatchStore, S3FormSigner
from sluice.domain.ingest import IngestPolicy, IngestPorts
from sluice.domain.uploads import UploadPolicy, UploadPorts
from sluice.services.limits import ingest_budget
from sluice.settings import IngestApiSettings, get_ingest_api_settings


@dataclass(frozen=True, slots=True)
class IngestService:
    """What the ingest handler needs, built once per execution environment."""

    ports: IngestPorts
    policy: IngestPolicy
    tenant_claim: str
    idempotency: PowertoolsIdempotencyGuard
    upload_ports: UploadPorts
    upload_policy: UploadPolicy


def build_ingest_service(settings: IngestApiSettings) -> IngestService:
    """The AWS-backed ports and the limits of IngestApiFunction."""
    idempotency = PowertoolsIdempotencyGuard(settings.idempotency_table, settings.idempotency_ttl_seconds)
    jobs = DynamoJobStore(settings.jobs_table)
    # One budget for batches and uploads: an upload is an ingest request like a batch.
    limiter = ingest_budget(settings)
    ports = IngestPorts(
        jobs=jobs, batches=S3BatchStore(settings.batch_bucket), limiter=limiter, idempotency=idempotency
    )
    retention = timedelta(days=settings.job_retention_days)
    policy = IngestPolicy(max_body_bytes=settings.max_body_bytes, job_retention=retention)
    upload_ports = UploadPorts(
        jobs=jobs,
        signer=S3FormSigner(settings.batch_bucket),
        bucket=settings.batch_bucket,
        limiter=limiter,
        idempotency=idempotency,
    )
    upload_policy = UploadPolicy(
        max_bytes=settings.upload_max_bytes,
        expiry=timedelta(seconds=settings.upload_expiry_seconds),
        job_retention=retention,
    )
    return IngestService(
        ports=ports,
        policy=policy,
        tenant_claim=settings.tenant_claim,
        idempotency=idempotency,
        upload_ports=upload_ports,
        upload_policy=upload_policy,
    )


def wire_ingest_service() -> IngestService:
    """The service from the function's environment; each execution environment builds it once."""
    return build_ingest_service(get_ingest_api_settings())
