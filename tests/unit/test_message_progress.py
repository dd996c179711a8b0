"""MessageProgress on a fake clock: the visibility heartbeat and the time check run while an object is read as they
do after each chunk, so a file of blank lines keeps its message and stops in time."""

from typing import Any

import pytest

from sluice.adapters.sqs import MessageProgress
from sluice.errors import OutOfTimeError


class RecordingSqs:
    """The one SQS call MessageProgress makes, recorded."""

    def __init__(self) -> None:
        self.visibility: list[int] = []

    def change_message_visibility(self, **request: Any) -> None:
        self.visibility.append(request["VisibilityTimeout"])


class Clocks:
    """The monotonic clock and the invocation's remaining time, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0
        self.remaining_ms = 300_000

    def monotonic(self) -> float:
        return self.now

    def remaining(self) -> int:
        return self.remaining_ms


def progress(clocks: Clocks, sqs: RecordingSqs) -> MessageProgress:
    return MessageProgress(
        "queue",
        "receipt",
        visibility_timeout_s=1800,
        heartbeat_s=60,
        remaining_ms=clocks.remaining,
        min_remaining_ms=20_000,
        client=sqs,  # type: ignore[arg-type]
        monotonic=clocks.monotonic,
    )


def test_reading_extends_the_messages_visibility_once_a_heartbeat_is_due() -> None:
    clocks, sqs = Clocks(), RecordingSqs()
    reading = progress(clocks, sqs)

    clocks.now = 59.0
    reading.still_reading()
    clocks.now = 61.0
    reading.still_reading()
    clocks.now = 100.0
    reading.still_reading()
    clocks.now = 122.0
    reading.still_reading()

    assert sqs.visibility == [1800, 1800]


def test_reading_with_too_little_time_left_releases_the_message_and_stops() -> None:
    clocks, sqs = Clocks(), RecordingSqs()
    reading = progress(clocks, sqs)
    clocks.remaining_ms = 19_999

    with pytest.raises(OutOfTimeError, match="19999 ms left while reading"):
        reading.still_reading()

    assert sqs.visibility == [0]


def test_a_committed_chunk_is_checked_the_same_way() -> None:
    clocks, sqs = Clocks(), RecordingSqs()
    committed = progress(clocks, sqs)
    clocks.now, clocks.remaining_ms = 60.0, 19_000

    with pytest.raises(
        OutOfTimeError, match="19000 ms left after chunk 3: the message is retried and resumes at chunk 4"
    ):
        committed.chunk_committed(3)

    assert sqs.visibility == [1800, 0]
