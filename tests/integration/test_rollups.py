"""The rollups against the readings they summarise, through the real worker and the real review path: whatever
mix of batches, duplicates (in one batch, or of readings stored earlier), redeliveries, crashes after a chunk and
reviews that replay readings, ``readings_1m``, ``readings_1h`` and ``sensor_latest`` equal a GROUP BY over
``readings``."""

import contextlib
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.adapters.aws import sqs_client
from sluice.settings import get_load_worker_settings

from ..api_client import TENANT
from ..rollups import EXPECTED_1H, EXPECTED_1M, EXPECTED_LATEST
from .test_quarantine import Review, review  # noqa: F401 - the fixture, shared with the review tests

# Readings within three minutes either side of an hour, so one batch falls into two hours and several minutes.
HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
SENSORS = ("6b1d2c3e-4f50-4a61-8b72-93a4b5c6d7e8", "0ea23cbb-e3e2-5a09-b1d1-4d3fbc283e42")
TABLES = "readings, readings_1m, readings_1h, sensor_latest, quarantined_readings, ingest_ledger, job_reviews"
ROLLUP_COLUMNS = "system_id, sensor_id, unit, bucket, count, sum, min, max, last_time, last_value"


def stamp(second: int) -> str:
    return (HOUR + timedelta(seconds=second)).isoformat().replace("+00:00", "Z")


# A reading from a small space, so that repeats (in-batch and stored duplicates) are common: two sensors, twelve
# instants 30 s apart around the hour, two units; values valid or out of range (quarantined, fixable), quality good
# or low (quarantined, and stays so).
readings = st.fixed_dictionaries(
    {
        "sensor_id": st.sampled_from(SENSORS),
        "timestamp": st.integers(-6, 5).map(lambda n: stamp(n * 30 + 7)),
        "value": st.one_of(st.floats(0, 400).map(lambda v: round(v, 3)), st.just(950.0)),
        "unit": st.sampled_from(["bar", "bar", "bar", "celsius"]),
        "quality": st.sampled_from([97, 97, 97, 20]),
    }
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("load"), st.lists(readings, min_size=1, max_size=12)),
        st.tuples(st.just("redeliver"), st.lists(readings, min_size=1, max_size=12)),
        st.tuples(st.just("crash"), st.lists(readings, min_size=1, max_size=12), st.integers(0, 2)),
        st.tuples(st.just("review"), st.integers(0, 50)),
    ),
    min_size=1,
    max_size=6,
)


@pytest.fixture
def loader(review: Review, monkeypatch: pytest.MonkeyPatch) -> Iterator[Review]:  # noqa: F811 - the fixture above
    # Chunks of 3 readings: a batch of up to 12 spans several, so a crash falls between committed chunks.
    monkeypatch.setenv("SLUICE_CHUNK_READINGS", "3")
    get_load_worker_settings.cache_clear()
    yield review
    get_load_worker_settings.cache_clear()


# A failing example is reported with the fixture's repr, which hypothesis finds large; the example itself is short.
@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@settings(
    max_examples=25,
    deadline=None,
    # The fixture is set up once for all examples; each example starts by emptying the tables.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=steps)
def test_the_rollups_equal_a_group_by_over_readings(loader: Review, plan: list[tuple[Any, ...]]) -> None:
    with psycopg.connect(loader.worker.dsn, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES}")
    for kind, *args in plan:
        if kind == "review":
            replay_one(loader, args[0])
        else:
            load(
                loader, args[0], crash_after=args[1] if kind == "crash" else None, times=2 if kind == "redeliver" else 1
            )

    assert_rollups_match(loader)


def load(loader: Review, body: list[dict[str, Any]], *, crash_after: int | None, times: int) -> None:
    """Post a batch and have the worker load it: after a crash following chunk ``crash_after`` (when the batch has
    that many chunks), and ``times`` times (SQS delivers at least once)."""
    worker = loader.worker
    data = json.dumps({"system_id": str(loader.system_id), "readings": body}).encode()
    worker.send_api_batch(TENANT, loader.system_id, data, len(body))
    messages = worker.receive()
    event = worker.event(messages)
    if crash_after is not None:
        worker.crash_after_chunk(crash_after)
        with contextlib.suppress(BatchProcessingError):  # no crash when the batch has fewer chunks
            worker.invoke(event)
        worker.crash_after_chunk(None)
    for _ in range(times):
        assert worker.invoke(event) == {"batchItemFailures": []}
    for message in messages:
        sqs_client().delete_message(QueueUrl=worker.queue_url, ReceiptHandle=message["ReceiptHandle"])


def replay_one(loader: Review, pick: int) -> None:
    """Fix the value of one pending out-of-range row of good quality, if there is one: the review replays its
    reading. (Low quality cannot be fixed: a reviewer only rejects it.)"""
    pending = loader.worker.query(
        "SELECT id FROM quarantined_readings WHERE review_status = 'pending'"
        " AND reason = 'out_of_range' AND quality >= 50 ORDER BY id"
    )
    if not pending:
        return
    (row_id,) = pending[pick % len(pending)]
    answer = loader.review(row_id, {"action": "fix", "value": 1.5})
    # 409: the sensor instant is stored already, so the replay would be a duplicate and nothing is added.
    assert answer.status in (200, 409), answer.body


def assert_rollups_match(loader: Review) -> None:
    for table, expected in (("readings_1m", EXPECTED_1M), ("readings_1h", EXPECTED_1H)):
        kept = sorted(loader.worker.query(f"SELECT {ROLLUP_COLUMNS} FROM {table}"))  # noqa: S608 - constants
        want = sorted(loader.worker.query(expected))
        assert [row[:5] for row in kept] == [row[:5] for row in want], table
        assert [row[6:] for row in kept] == [row[6:] for row in want], table
        # Sums are added in arrival order: equal to a fresh sum up to rounding; everything else exactly.
        for got, should in zip(kept, want, strict=True):
            assert math.isclose(got[5], should[5], rel_tol=1e-9, abs_tol=1e-9), (table, got, should)
    latest = loader.worker.query("SELECT system_id, sensor_id, unit, last_time, last_value FROM sensor_latest")
    assert sorted(latest) == sorted(loader.worker.query(EXPECTED_LATEST))
