"""IngestApiFunction: POST /api/v1/data/ingest accepts a batch of readings and answers 202 with its job; POST
/api/v1/uploads records a job awaiting a file and answers 201 with a form to POST that file straight to S3."""

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sluice.adapters.http import (
    absolute_url,
    body_of,
    caller_of,
    is_gzip_encoded,
    json_response,
    register_error_responses,
    request_body,
    require_json,
)
from sluice.domain.ingest import IngestCall, accept_batch
from sluice.domain.uploads import UploadCall, create_upload
from sluice.models.api import JobAccepted, UploadCreated, UploadForm, UploadRequest
from sluice.services import per_environment
from sluice.services.ingest_api import IngestService, wire_ingest_service

logger = Logger()
# Traces keep timings and annotations, never return values: a response body holds tenant data, and X-Ray is
# readable by whoever may debug the account.
tracer = Tracer()
metrics = Metrics()
app = APIGatewayHttpResolver()
register_error_responses(app, logger, metrics)


# Clients and settings: built once per execution environment (at init in Lambda).
get_service = per_environment(wire_ingest_service)


@app.post("/api/v1/data/ingest")
@tracer.capture_method(capture_response=False)
def ingest() -> Response[str]:
    event = app.current_event
    service: IngestService = app.context["service"]
    caller = caller_of(event, service.tenant_claim, "ingest:write")
    require_json(event, "the batch")
    call = IngestCall(
        tenant_id=caller.tenant_id,
        principal=caller.principal,
        body=request_body(event),
        gzipped=is_gzip_encoded(event),
        idempotency_key=event.headers.get("idempotency-key"),
    )
    accepted = accept_batch(call, service.ports, service.policy, now=datetime.now(UTC))
    job_id = str(accepted.job_id)
    logger.set_correlation_id(job_id)
    tracer.put_annotation("job_id", job_id)
    logger.info("batch accepted", job_id=job_id, readings=accepted.total_readings, replayed=accepted.replayed)
    metrics.add_metric(name="AcceptedReadings", unit=MetricUnit.Count, value=accepted.total_readings)
    if not accepted.replayed:  # one data point per new batch: its statistics are the batch sizes
        metrics.add_metric(name="ReadingsPerBatch", unit=MetricUnit.Count, value=accepted.total_readings)
    status_url = absolute_url(event, f"/api/v1/jobs/{accepted.job_id}")
    headers = {"Location": status_url, "Idempotent-Replayed": str(accepted.replayed).lower()}
    return json_response(202, JobAccepted(job_id=accepted.job_id, status_url=status_url), headers)


@app.post("/api/v1/uploads")
@tracer.capture_method(capture_response=False)
def upload() -> Response[str]:
    event = app.current_event
    service: IngestService = app.context["service"]
    caller = caller_of(event, service.tenant_claim, "ingest:write")
    call = UploadCall(
        tenant_id=caller.tenant_id,
        principal=caller.principal,
        request=body_of(event, UploadRequest),
        idempotency_key=event.headers.get("idempotency-key"),
    )
    created = create_upload(call, service.upload_ports, service.upload_policy, now=datetime.now(UTC))
    job_id = str(created.job_id)
    logger.set_correlation_id(job_id)
    tracer.put_annotation("job_id", job_id)
    logger.info("upload created", job_id=job_id, size=call.request.size, replayed=created.replayed)
    # A replay counts 0 rather than nothing: its Sum stays the uploads created, and the invocation still has a metric.
    metrics.add_metric(name="UploadsCreated", unit=MetricUnit.Count, value=0 if created.replayed else 1)
    status_url = absolute_url(event, f"/api/v1/jobs/{created.job_id}")
    answer = UploadCreated(
        job_id=created.job_id,
        upload=UploadForm(url=created.form.url, fields=created.form.fields),
        expires_at=created.expires_at,
        status_url=status_url,
    )
    headers = {"Location": status_url, "Idempotent-Replayed": str(created.replayed).lower()}
    return json_response(201, answer, headers)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, service: IngestService | None = None
) -> dict[str, Any]:
    service = service or get_service()
    service.idempotency.register_lambda_context(context)
    app.context["service"] = service
    return app.resolve(event, context)
