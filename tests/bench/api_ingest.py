"""API batches sent through IngestApiFunction's real handler, for the benches that price or time the ingest side.

``measure_ingest`` hands each batch to the handler as the HTTP API would (a POST with a device's JWT claims) and
leaves what an accepted batch leaves in AWS: a queued job record and the object under ``incoming/``, whose S3 event
lands on IngestQueue, exactly as ``WorkerHarness.send_api_batch`` does. It counts the handler's billed time, each
request's body size and the AWS calls it made, for ``costs.Usage``.
"""

import contextlib
import io
import json
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from uuid import UUID

from sluice.adapters.aws import dynamodb_client, s3_client
from sluice.services.ingest_api import build_ingest_service
from sluice.settings import IngestApiSettings
from sluice_tools.local.template import StackContext, function_environment

from ..lambdas import FakeLambdaContext, handler_module, load_event
from .calls import CallMeter
from .costs import LambdaTally

# A bench sends far more than a device may in a window; the limiter still reads and writes its log on every call.
BENCH_RATE_LIMIT = "1000000"


@dataclass
class IngestMeasure:
    """What the handler did for the batches: its tally, each request's body bytes, its AWS calls, the jobs."""

    tally: LambdaTally = field(default_factory=lambda: LambdaTally("IngestApiFunction"))
    request_bytes: list[int] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    job_ids: list[UUID] = field(default_factory=list)


def measure_ingest(
    stack: StackContext,
    batches: Iterable[tuple[str, UUID, bytes]],
    *,
    module: ModuleType | None = None,
) -> IngestMeasure:
    """POST each ``(tenant, system_id, body)`` through IngestApiFunction's handler against ``stack``, and measure.

    The caller is a device of its system (``sub`` ``device-<system_id>``), as in production, so each principal's
    rate-limit log holds that device's requests only. The handler runs with the template's environment for the
    function, set while it runs (the process's is left as it was); a ``module`` passed in must have been imported
    with it, as Powertools reads its metrics namespace and log level at import."""
    measure = IngestMeasure()
    with environment_set(ingest_environment(stack)):
        module = module or handler_module("IngestApiFunction")
        service = build_ingest_service(IngestApiSettings())
        with CallMeter().attach(s3_client(), dynamodb_client()) as meter:
            for tenant, system_id, body in batches:
                event = api_event(tenant, f"device-{system_id}", body)
                started = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):  # the metrics' EMF lines
                    answer = module.lambda_handler(event, FakeLambdaContext(), service=service)
                measure.tally.add(time.perf_counter() - started)
                if answer["statusCode"] != 202:
                    raise AssertionError(f"the batch of {system_id} was refused: {answer}")
                measure.request_bytes.append(len(body))
                measure.job_ids.append(UUID(json.loads(answer["body"])["job_id"]))
    measure.calls = meter.calls
    return measure


def ingest_environment(stack: StackContext) -> dict[str, str]:
    """IngestApiFunction's environment from the template, with the bench's rate limit and its logs at the caller's
    level (WARNING unless set), like the benches' other handlers. The endpoint stays the caller's: locally the
    clients talk to the moto server that ``AWS_ENDPOINT_URL`` or ``SLUICE_AWS_ENDPOINT_URL`` names."""
    environment = function_environment(stack, "IngestApiFunction")
    environment.pop("SLUICE_AWS_ENDPOINT_URL", None)
    return environment | {
        "SLUICE_RATE_LIMIT_REQUESTS": BENCH_RATE_LIMIT,
        "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
    }


def api_event(tenant: str, principal: str, body: bytes) -> dict[str, object]:
    """The HTTP API's event for a POST of ``body`` to /api/v1/data/ingest by ``principal`` of ``tenant``."""
    event = load_event("ingest-api-post.json")
    event["body"] = body.decode()
    event["headers"]["content-length"] = str(len(body))
    jwt = event["requestContext"]["authorizer"]["jwt"]
    jwt["claims"].update(tenant_id=tenant, sub=principal)
    return event


@contextlib.contextmanager
def environment_set(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in os.environ for the block; what was there before afterwards."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
