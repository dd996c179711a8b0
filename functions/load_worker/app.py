"""LoadWorkerFunction: IngestQueue's S3 events -> each batch object's readings in TimescaleDB or quarantine."""

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from sluice.domain.load import LoadCounts, LoadOutcome, LoadReport, MessageOutcome
from sluice.domain.objects import IngestMessage, parse_message
from sluice.services import per_environment
from sluice.services.load_worker import LoadService, wire_load_service

logger = Logger()
# Traces keep timings and annotations, never return values: a response body holds tenant data, and X-Ray is
# readable by whoever may debug the account.
tracer = Tracer()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)
# The invocation's quarantined readings by reason, published when it ends (see publish_quarantine_reasons).
quarantined_by_reason: Counter[str] = Counter()


# Clients, the database connector and settings: built once per execution environment (at init in Lambda).
get_service = per_environment(wire_load_service)


@contextmanager
def job_context(message: IngestMessage) -> Iterator[None]:
    """While a message is handled, every log line carries its job id (as ``job_id`` and as ``correlation_id``, the
    key the API's lines carry it under) and its trace is annotated with it: both can be searched by job."""
    job_id = ",".join(str(job_id) for job_id in message.job_ids) or None
    if job_id is not None:
        logger.append_keys(job_id=job_id)
        logger.set_correlation_id(job_id)
        tracer.put_annotation("job_id", job_id)
    try:
        yield
    finally:
        logger.remove_keys(["job_id", "correlation_id"])


def report_outcome(service: LoadService, record: SQSRecord, message: IngestMessage, outcome: MessageOutcome) -> None:
    """Log and count what loading one message came to; raise its exception, so that only it is retried."""
    if isinstance(outcome, Exception):
        logger.error(
            "message failed: it is retried, and parked in the dead-letter queue after five receives", exc_info=outcome
        )
        receive_count = receive_count_of(record)
        if service.is_last_attempt(receive_count):
            park(service, message, outcome, receive_count)
        raise outcome
    for report in outcome:
        if report.outcome is LoadOutcome.UNCLAIMED:
            count_unclaimed(report)
            continue
        if report.outcome is LoadOutcome.OTHER_VERSION:
            count_other_version(report)
            continue
        logger.info(
            "object handled",
            outcome=report.outcome,
            job_id=report.job_id and str(report.job_id),
            chunks_written=report.chunks_written,
            detail=report.detail,
        )
        metrics.add_metric(name=f"Jobs{report.outcome.title().replace('_', '')}", unit=MetricUnit.Count, value=1)
        if report.outcome is LoadOutcome.COMPLETED and report.counts is not None and report.latency_ms is not None:
            count_completed(report, report.counts, report.latency_ms)


def receive_count_of(record: SQSRecord) -> int:
    return int(record.attributes.approximate_receive_count or 1)


@tracer.capture_method(capture_response=False)
def load_all(
    service: LoadService, records: list[SQSRecord], messages: list[IngestMessage], lambda_context: LambdaContext
) -> list[MessageOutcome]:
    """Load the invocation's messages together (see sluice.domain.load.load_messages); an unexpected fault fails
    them all, each reported as failed rather than the invocation crashing."""
    progress = [
        service.progress_for(
            record.receipt_handle, lambda_context.get_remaining_time_in_millis, receive_count_of(record)
        )
        for record in records
    ]
    try:
        return service.load(messages, progress)
    except Exception as exc:
        return [exc for _ in messages]


def count_unclaimed(report: LoadReport) -> None:
    """An object under incoming/ or a tenant's uploads/ folder that no job record of the API names: written around
    the API (only the ingest function and the forms it signs should write there), so it is not loaded, and whoever
    watches the warning and the metric finds out."""
    logger.warning(
        "object ignored: no job record of the API names it",
        job_id=report.job_id and str(report.job_id),
        object_key=report.object_key,
        detail=report.detail,
    )
    metrics.add_metric(name="IgnoredObjects", unit=MetricUnit.Count, value=1)


def count_other_version(report: LoadReport) -> None:
    """A second version of an upload's key (its form POSTed again before it expired): the job loads the first
    version it started on, and this one is left alone, with a warning and a metric."""
    logger.warning(
        "upload version ignored: its job loads another version",
        job_id=report.job_id and str(report.job_id),
        object_key=report.object_key,
        detail=report.detail,
    )
    metrics.add_metric(name="IgnoredUploadVersions", unit=MetricUnit.Count, value=1)


def count_completed(report: LoadReport, counts: LoadCounts, latency_ms: int) -> None:
    """A completed job's metrics: its counts from the ledger, its size and its latency."""
    metrics.add_metric(name="InsertedReadings", unit=MetricUnit.Count, value=counts.inserted)
    metrics.add_metric(name="QuarantinedReadings", unit=MetricUnit.Count, value=counts.quarantined)
    metrics.add_metric(name="DuplicateReadings", unit=MetricUnit.Count, value=counts.duplicates)
    metrics.add_metric(name="ReadingsPerObject", unit=MetricUnit.Count, value=counts.total)
    metrics.add_metric(name="JobLatencyMs", unit=MetricUnit.Milliseconds, value=latency_ms)
    quarantined_by_reason.update(report.quarantined_by_reason)


def publish_quarantine_reasons() -> None:
    """QuarantinedReadings per reason, each in a document of its own with a ``reason`` dimension: added to the
    function's shared metrics, that dimension would split every other metric of the invocation by it too."""
    for reason, count in sorted(quarantined_by_reason.items()):
        with single_metric(name="QuarantinedReadings", unit=MetricUnit.Count, value=count) as metric:
            metric.add_dimension(name="reason", value=reason)
    quarantined_by_reason.clear()


def park(service: LoadService, message: IngestMessage, error: Exception, receive_count: int) -> None:
    """The message goes to the dead-letter queue next: fail its jobs so their clients learn why."""
    try:
        failure, parked = service.park(message, error, receive_count)
    except Exception:  # the message is parked either way; a redrive finds its jobs unfinished
        logger.exception("could not mark the jobs of a message bound for the dead-letter queue failed")
        metrics.add_metric(name="JobParkFailures", unit=MetricUnit.Count, value=1)
        return
    # The jobs' error_message quotes the error id only: this line is where the id finds the error itself.
    logger.warning(
        "last attempt failed: jobs failed, message bound for the dead-letter queue",
        job_ids=parked,
        error_id=failure.error_id,
        error=failure.detail,
        exc_info=error,
    )
    metrics.add_metric(name="JobsParked", unit=MetricUnit.Count, value=len(parked))


def start_read_ahead(service: LoadService, messages: list[IngestMessage]) -> None:
    """Read-ahead only saves time: each object is opened when its message is loaded anyway. It runs before the
    per-message handling, where a fault would fail every message of the batch, so a fault here is logged instead."""
    try:
        service.read_ahead(messages)
    except Exception:
        logger.exception("read-ahead failed: each object is read when its message is loaded")
        metrics.add_metric(name="ReadAheadFailures", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, service: LoadService | None = None
) -> PartialItemFailureResponse:
    service = service or get_service()
    records = event.get("Records", [])
    metrics.add_metric(name="ReceivedMessages", unit=MetricUnit.Count, value=len(records))
    # Each body is parsed once, here; read-ahead, loading, logs and parking all take the parsed message.
    messages = [parse_message(record.get("body", "")) for record in records]
    start_read_ahead(service, messages)
    quarantined_by_reason.clear()
    outcomes = load_all(service, [SQSRecord(record) for record in records], messages, context)
    by_id = {
        record.get("messageId"): (message, outcome)
        for record, message, outcome in zip(records, messages, outcomes, strict=True)
    }

    def record_handler(record: SQSRecord) -> None:
        message, outcome = by_id[record.message_id]
        with job_context(message):
            report_outcome(service, record, message, outcome)

    try:
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    finally:
        service.objects.forget_read_ahead()
        publish_quarantine_reasons()
