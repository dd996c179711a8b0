"""JobStatusFunction's wiring: settings -> the jobs table and the read limit. No database: job status answers while
TimescaleDB is down or being upgraded."""

from dataclasses import dataclass

from sluice.adapters.dynamodb import DynamoJobStore
from sluice.domain.ratelimit import PrincipalBudget
from sluice.services.limits import read_budget
from sluice.settings import JobStatusSettings, get_job_status_settings


@dataclass(frozen=True, slots=True)
class JobStatusService:
    """What the job status handler needs, built once per execution environment."""

    jobs: DynamoJobStore
    tenant_claim: str
    reads: PrincipalBudget


def build_job_status_service(settings: JobStatusSettings) -> JobStatusService:
    """The DynamoDB-backed job store and read limit of JobStatusFunction."""
    return JobStatusService(
        jobs=DynamoJobStore(settings.jobs_table), tenant_claim=settings.tenant_claim, reads=read_budget(settings)
    )


def wire_job_status_service() -> JobStatusService:
    """The service from the function's environment; each execution environment builds it once."""
    return build_job_status_service(get_job_status_settings())
