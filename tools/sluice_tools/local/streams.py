"""A DynamoDB stream event source mapping, locally: reads a table's stream and invokes a function the way Lambda's
stream poller does.

What Lambda does and this does too: read each shard in order from StartingPosition, up to BatchSize records,
waiting at most MaximumBatchingWindowInSeconds to fill a batch; drop the records FilterCriteria does not match;
invoke the function with the ``aws:dynamodb`` event; on a function error invoke it again with the same batch (the
template asks for MaximumRetryAttempts -1: retried until it succeeds) before reading further. What it does not:
bisecting a failing batch (a batch is retried whole), records expiring after 24 hours, and filter patterns beyond
lists of exact values (which raise, so a template using more fails loudly rather than filtering differently).
"""

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sluice_tools.local.lambdas import Invocation
from sluice_tools.local.template import StackContext, TemplateError, created_resources_of_type

logger = logging.getLogger(__name__)
_DEFAULT_BATCH_SIZE = 100
_POLL_SECONDS = 0.5
_SHARDS_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class StreamEventSource:
    """One ``Type: DynamoDB`` event of a function in the template, resolved."""

    function: str
    name: str
    stream_arn: str
    batch_size: int
    batching_window_s: float
    starting_position: str
    patterns: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)
    enabled: bool = True

    def keeps(self, record: Mapping[str, Any]) -> bool:
        """Whether FilterCriteria lets ``record`` through (no patterns: every record)."""
        return not self.patterns or any(_matches(pattern, record) for pattern in self.patterns)


def dynamodb_event_sources(context: StackContext) -> list[StreamEventSource]:
    """Every ``Type: DynamoDB`` event of the template's functions (their tables must be created already)."""
    sources: list[StreamEventSource] = []
    for logical_id, function in created_resources_of_type(context, "AWS::Serverless::Function").items():
        for name, event in function["Properties"].get("Events", {}).items():
            if event["Type"] != "DynamoDB":
                continue
            properties = context.resolve(event["Properties"])
            filters = properties.get("FilterCriteria", {}).get("Filters", [])
            sources.append(
                StreamEventSource(
                    function=logical_id,
                    name=name,
                    stream_arn=str(properties["Stream"]),
                    batch_size=int(properties.get("BatchSize", _DEFAULT_BATCH_SIZE)),
                    batching_window_s=float(properties.get("MaximumBatchingWindowInSeconds", 0)),
                    starting_position=str(properties["StartingPosition"]),
                    patterns=tuple(checked_pattern(json.loads(f["Pattern"]), logical_id) for f in filters),
                    enabled=bool(properties.get("Enabled", True)),
                )
            )
    return sources


def checked_pattern(pattern: Any, function: str) -> Mapping[str, Any]:
    """A filter pattern this poller can apply: nested objects whose leaves are lists of exact values."""
    if not isinstance(pattern, dict):
        raise TemplateError(f"{function}: a filter pattern must be an object")
    for value in pattern.values():
        if isinstance(value, dict):
            checked_pattern(value, function)
        elif not isinstance(value, list) or any(isinstance(item, dict | list) for item in value):
            raise TemplateError(f"{function}: the local stream poller reads only lists of exact values in filters")
    return pattern


def _matches(pattern: Mapping[str, Any], record: Any) -> bool:
    if not isinstance(record, Mapping):
        return False
    for key, expected in pattern.items():
        if key not in record:
            return False
        if isinstance(expected, dict):
            if not _matches(expected, record[key]):
                return False
        elif record[key] not in expected:
            return False
    return True


def stream_record(record: Mapping[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """One stream record as Lambda hands it over (an ``aws:dynamodb`` record)."""
    change = dict(record["dynamodb"])
    if "ApproximateCreationDateTime" in change and not isinstance(change["ApproximateCreationDateTime"], int | float):
        change["ApproximateCreationDateTime"] = change["ApproximateCreationDateTime"].timestamp()
    return {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": change,
        "eventSourceARN": stream_arn,
    }


class StreamPoller:
    """Reads one event source's stream in a thread and invokes its function with each batch."""

    def __init__(
        self,
        source: StreamEventSource,
        streams: Any,  # a boto3 "dynamodbstreams" client (the project installs no stubs for it)
        invoke: Callable[[str, dict[str, Any]], Invocation],
        region: str,
    ) -> None:
        self.source = source
        self._streams = streams
        self._invoke = invoke
        self._region = region
        self._iterators: dict[str, str | None] = {}
        self._shard_ids: list[str] | None = None
        self._shards_until = 0.0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stream-{source.function}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10) -> None:
        self._stopping.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                if not self.poll_once():
                    self._stopping.wait(_POLL_SECONDS)
            except Exception as exc:  # the poller outlives any one failure, as Lambda's does
                if self._stopping.wait(1):
                    return
                logger.warning("reading the stream %s failed (%s); trying again", self.source.stream_arn, exc)

    def poll_once(self) -> bool:
        """Read one batch from each shard and hand it to the function; whether any record was read."""
        read = False
        for shard_id in self._shards():
            records = self._read(shard_id)
            read = read or bool(records)
            kept = [stream_record(r, self.source.stream_arn, self._region) for r in records if self.source.keeps(r)]
            if kept:
                self._deliver(kept)
        return read

    def _shards(self) -> list[str]:
        # Shards change rarely (moto keeps one per table): described again every 30 s, not on every poll, so the
        # poller adds one request per poll to the local AWS that every function shares.
        if self._shard_ids is None or time.monotonic() >= self._shards_until:
            description = self._streams.describe_stream(StreamArn=self.source.stream_arn)["StreamDescription"]
            self._shard_ids = [shard["ShardId"] for shard in description.get("Shards", [])]
            self._shards_until = time.monotonic() + _SHARDS_SECONDS
        return self._shard_ids

    def _read(self, shard_id: str) -> Sequence[Any]:
        if shard_id not in self._iterators:
            self._iterators[shard_id] = self._streams.get_shard_iterator(
                StreamArn=self.source.stream_arn, ShardId=shard_id, ShardIteratorType=self.source.starting_position
            )["ShardIterator"]
        records: list[Any] = []
        window_ends = time.monotonic() + self.source.batching_window_s
        while len(records) < self.source.batch_size:
            iterator = self._iterators[shard_id]
            if iterator is None:  # the shard is closed and read to its end
                break
            answer = self._streams.get_records(ShardIterator=iterator, Limit=self.source.batch_size - len(records))
            self._iterators[shard_id] = answer.get("NextShardIterator")
            records.extend(answer.get("Records", []))
            if not answer.get("Records") and (not records or time.monotonic() >= window_ends):
                break
        return records

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        # Retried until it succeeds, in order: the next batch waits, as a shard's does in AWS.
        while not self._stopping.is_set():
            invocation = self._invoke(self.source.function, {"Records": records})
            if not invocation.failed:
                return
            logger.warning("%s failed a stream batch of %d; retrying", self.source.function, len(records))
            self._stopping.wait(1)
