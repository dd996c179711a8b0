"""ReadingsFunction against the real TimescaleDB, connected as a login user of sluice_reader through a Secrets
Manager secret (moto), as in AWS: every resolution against a GROUP BY over ``readings``, paging walks, tenant
scoping, each bound's 400, and the sensors' figures and status."""

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from sluice.adapters.aws import secretsmanager_client
from sluice.domain.pages import encode_cursor
from sluice.domain.readings import bucket_ceiling
from sluice.models.readings_api import RawPoint, ReadingsPage, Resolution, RollupPoint, SensorList
from sluice.settings import get_readings_settings
from sluice_tools.local.stack import secret_from_dsn
from sluice_tools.local.template import StackContext, function_environment

from ..api_client import OTHER_TENANT, TENANT, Answer, call, claims
from ..lambdas import handler_module
from ..logins import group_login
from ..rollups import rebuild_rollups

pytestmark = pytest.mark.db

READER = claims("readings:read", sub="analyst-cleo")
THEIRS = claims("readings:read", tenant=OTHER_TENANT, sub="mallory")
# A fixed day for the series: midnight, so every resolution's buckets start on it.
DAY = datetime(2026, 11, 2, tzinfo=UTC)
WIDTHS = {"1m": "1 minute", "5m": "5 minutes", "1h": "1 hour", "1d": "1 day"}


@dataclass
class Readings:
    """ReadingsFunction as its login, the owner's DSN, and the system the series belongs to."""

    module: ModuleType
    owner_dsn: str
    system_id: UUID
    sensors: list[UUID]

    def get(self, suffix: str, query: dict[str, str] | None = None, verified: dict[str, str] = READER) -> Answer:
        return call(self.module, "GET", f"/api/v1/systems/{self.system_id}/{suffix}", verified=verified, query=query)

    def owner(self, query: Any, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.owner_dsn, autocommit=True) as conn:
            cursor = conn.execute(query, params or None)
            return cursor.fetchall() if cursor.description else []

    def walk(self, query: dict[str, str], verified: dict[str, str] = READER) -> tuple[list[dict[str, Any]], int]:
        """Every point of a query, page after page; and how many pages it took."""
        points: list[dict[str, Any]] = []
        pages, cursor = 0, None
        while True:
            answer = self.get("readings", query | ({"cursor": cursor} if cursor else {}), verified)
            assert answer.status == 200, answer.body
            ReadingsPage.model_validate(answer.body)
            points += answer.body["items"]
            pages += 1
            cursor = answer.body["next_cursor"]
            if cursor is None:
                return points, pages


@pytest.fixture
def reader_dsn(migrated_db: str) -> Iterator[str]:
    """A login user of sluice_reader, as ReadingsFunction logs in."""
    with group_login(migrated_db, "ReadingsDatabaseSecretArn", "sluice_reader", "readings") as dsn:
        yield dsn


@pytest.fixture
def readings(
    aws_stack: StackContext, migrated_db: str, reader_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Readings]:
    """ReadingsFunction, imported cold with the template's environment, and a system of three sensors: two every
    7 s over 3 hours of DAY, one of which changes units for an hour; a third with a reading every 6 hours over
    3 days. The rollups are rebuilt from readings, as the loaders would have kept them."""
    for name, value in function_environment(aws_stack, "ReadingsFunction").items():
        monkeypatch.setenv(name, value)
    secret = secretsmanager_client().create_secret(
        Name=f"sluice-readings-{uuid4().hex[:8]}", SecretString=json.dumps(secret_from_dsn(reader_dsn))
    )
    monkeypatch.setenv("SLUICE_DB_SECRET_ARN", secret["ARN"])
    get_readings_settings.cache_clear()
    system_id, sensors = uuid4(), sorted(uuid4() for _ in range(3))
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("INSERT INTO systems (id, tenant_id, name) VALUES (%s, %s, 'press-17')", (system_id, TENANT))
        conn.execute(
            "INSERT INTO readings (time, system_id, sensor_id, value, unit, quality, job_id)"
            " SELECT %(day)s + n * interval '7 seconds', %(system)s, s.id, (n * 37 %% 500) / 3.0,"
            "  CASE WHEN s.id = %(changer)s AND n BETWEEN 600 AND 1100 THEN 'celsius' ELSE 'bar' END, 90, %(job)s"
            " FROM unnest(%(two)s::uuid[]) AS s(id), generate_series(0, 3 * 3600 / 7) AS n",
            {"day": DAY, "system": system_id, "changer": sensors[1], "two": sensors[:2], "job": uuid4()},
        )
        conn.execute(
            "INSERT INTO readings (time, system_id, sensor_id, value, unit, quality, job_id)"
            " SELECT %s + n * interval '6 hours' + interval '13 seconds', %s, %s, n * 1.5, 'lpm', 95, %s"
            " FROM generate_series(0, 11) AS n",
            (DAY, system_id, sensors[2], uuid4()),
        )
        rebuild_rollups(conn)
    harness = Readings(handler_module("ReadingsFunction"), migrated_db, system_id, sensors)
    yield harness
    harness.module.get_service().connector.close()
    get_readings_settings.cache_clear()


def window(start: datetime, end: datetime, resolution: str, **more: str) -> dict[str, str]:
    return {"from": start.isoformat(), "to": end.isoformat(), "resolution": resolution} | more


def expected_rollup(harness: Readings, width: str, start: datetime, end: datetime) -> list[tuple[Any, ...]]:
    """The points of a resolution straight from ``readings`` (bounds on whole buckets)."""
    return harness.owner(
        "SELECT sensor_id, time_bucket(%s::interval, time) AS b, unit, count(*), min(value), max(value),"
        " avg(value), last(value, time) FROM readings WHERE system_id = %s AND time >= %s AND time < %s"
        " GROUP BY sensor_id, b, unit ORDER BY sensor_id, b, unit",
        width,
        harness.system_id,
        start,
        end,
    )


def as_rows(points: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            UUID(point["sensor_id"]),
            datetime.fromisoformat(point["time"]),
            point["unit"],
            point["count"],
            point["min"],
            point["max"],
            point["avg"],
            point["last"],
        )
        for point in points
    ]


def assert_same_points(got: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> None:
    assert [row[:6] + row[7:] for row in got] == [row[:6] + row[7:] for row in expected]
    # Averages are sums over counts added in another order: equal to the last bits.
    assert all(math.isclose(a[6], b[6], rel_tol=1e-12) for a, b in zip(got, expected, strict=True))


# --- every resolution is the GROUP BY over readings ------------------------------------------------------------------


@pytest.mark.parametrize("resolution", ["1m", "5m", "1h", "1d"])
def test_each_resolution_is_the_group_by_over_readings(readings: Readings, resolution: str) -> None:
    start, end = (DAY, DAY + timedelta(days=3)) if resolution in {"1h", "1d"} else (DAY, DAY + timedelta(hours=4))

    points, _ = readings.walk(window(start, end, resolution, limit="10000"))

    expected = expected_rollup(readings, WIDTHS[resolution], start, end)
    assert len(expected) > 3
    assert_same_points(as_rows(points), expected)
    for point in points:
        RollupPoint.model_validate(point)


def test_a_unit_change_makes_a_point_per_unit_in_one_bucket(readings: Readings) -> None:
    points, _ = readings.walk(window(DAY, DAY + timedelta(hours=3), "1h", sensor_id=str(readings.sensors[1])))

    units = [(point["time"], point["unit"]) for point in points]
    assert ("2026-11-02T01:00:00+00:00", "bar") in units
    assert ("2026-11-02T01:00:00+00:00", "celsius") in units
    assert (
        sum(point["count"] for point in points)
        == readings.owner("SELECT count(*) FROM readings WHERE sensor_id = %s", readings.sensors[1])[0][0]
    )


def test_raw_readings_are_the_stored_rows_in_order(readings: Readings) -> None:
    start, end = DAY + timedelta(minutes=30), DAY + timedelta(minutes=50)

    points, _ = readings.walk(window(start, end, "raw", limit="300"))

    expected = readings.owner(
        "SELECT sensor_id, time, value, unit, quality, job_id FROM readings"
        " WHERE system_id = %s AND time >= %s AND time < %s ORDER BY sensor_id, time",
        readings.system_id,
        start,
        end,
    )
    got = [RawPoint.model_validate(point) for point in points]
    assert [(p.sensor_id, p.time, p.value, p.unit, p.quality, p.job_id) for p in got] == expected


def test_a_window_off_the_buckets_holds_the_buckets_that_start_in_it(readings: Readings) -> None:
    start, end = DAY + timedelta(minutes=2, seconds=30), DAY + timedelta(minutes=21, seconds=1)

    points, _ = readings.walk(window(start, end, "5m"))

    # 00:05, 00:10, 00:15 and 00:20 start in [00:02:30, 00:21:01); each is whole.
    expected = expected_rollup(readings, "5 minutes", DAY + timedelta(minutes=5), DAY + timedelta(minutes=25))
    assert_same_points(as_rows(points), expected)


def test_one_sensor_alone(readings: Readings) -> None:
    points, _ = readings.walk(window(DAY, DAY + timedelta(days=3), "1d", sensor_id=str(readings.sensors[2])))

    assert {point["sensor_id"] for point in points} == {str(readings.sensors[2])}
    assert [point["count"] for point in points] == [4, 4, 4]


# --- paging -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("resolution", "limit"), [("raw", "997"), ("1m", "97"), ("5m", "13"), ("1h", "2")])
def test_a_paging_walk_returns_the_whole_set_once(readings: Readings, resolution: str, limit: str) -> None:
    start = DAY
    end = DAY + (timedelta(days=1) if resolution != "1m" else timedelta(hours=4))
    whole = readings.get("readings", window(start, end, resolution, limit="10000")).body

    points, pages = readings.walk(window(start, end, resolution, limit=limit))

    assert whole["next_cursor"] is None
    assert points == whole["items"]
    assert pages == -(-len(points) // int(limit))
    keys = [(p["sensor_id"], p["time"], p.get("unit") if resolution != "raw" else "") for p in points]
    assert len(set(keys)) == len(keys)


WALKS = st.fixed_dictionaries(
    {
        "resolution": st.sampled_from(["raw", "1m", "5m", "1h"]),
        "start_s": st.integers(min_value=-600, max_value=3 * 3600),
        "length_s": st.integers(min_value=1, max_value=3 * 3600),
        "limit": st.integers(min_value=1, max_value=400),
        "one_sensor": st.booleans(),
    }
)


@settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(walk=WALKS)
def test_any_walk_of_any_window_is_the_group_by_over_readings(readings: Readings, walk: dict[str, Any]) -> None:
    # Windows off every bucket boundary, walked in pages of any size, of one sensor (the one that changes units)
    # or all: the points, in order and once each, are the rollup of the readings whose bucket starts in the window.
    resolution = Resolution(walk["resolution"])
    start = DAY + timedelta(seconds=walk["start_s"], milliseconds=250)
    end = start + timedelta(seconds=walk["length_s"])
    sensor = readings.sensors[1] if walk["one_sensor"] else None
    on_sensor = sql.SQL("") if sensor is None else sql.SQL(" AND sensor_id = {}").format(sensor)
    if resolution is Resolution.RAW:
        expected = readings.owner(
            sql.SQL(
                "SELECT sensor_id, time, value, unit, quality, job_id FROM readings"
                " WHERE system_id = %s AND time >= %s AND time < %s{} ORDER BY sensor_id, time"
            ).format(on_sensor),
            readings.system_id,
            start,
            end,
        )
    else:
        expected = readings.owner(
            sql.SQL(
                "SELECT sensor_id, time_bucket(%s::interval, time) AS b, unit, count(*), min(value), max(value),"
                " avg(value), last(value, time) FROM readings WHERE system_id = %s AND time >= %s AND time < %s{}"
                " GROUP BY sensor_id, b, unit ORDER BY sensor_id, b, unit"
            ).format(on_sensor),
            WIDTHS[resolution.value],
            readings.system_id,
            bucket_ceiling(start, resolution),
            bucket_ceiling(end, resolution),
        )
    # At most about 25 pages a walk: the read limit (120 a minute) and the test's time stay in bounds.
    limit = max(walk["limit"], -(-len(expected) // 25))
    query = window(start, end, resolution.value, limit=str(limit)) | ({"sensor_id": str(sensor)} if sensor else {})
    walker = claims("readings:read", sub=f"walker-{uuid4().hex[:8]}")

    points, pages = readings.walk(query, walker)

    assert pages == max(1, -(-len(expected) // limit))
    if resolution is Resolution.RAW:
        got = [RawPoint.model_validate(point) for point in points]
        assert [(p.sensor_id, p.time, p.value, p.unit, p.quality, p.job_id) for p in got] == expected
    else:
        assert_same_points(as_rows(points), expected)


def test_a_cursor_keeps_its_window_when_the_query_leaves_it_out(readings: Readings) -> None:
    first = readings.get("readings", window(DAY, DAY + timedelta(hours=1), "1m", limit="10"))

    second = readings.get("readings", {"limit": "10", "cursor": first.body["next_cursor"]})

    assert second.status == 200, second.body
    assert (second.body["from"], second.body["to"], second.body["resolution"]) == (
        first.body["from"],
        first.body["to"],
        "1m",
    )
    assert second.body["items"][0]["time"] > first.body["items"][-1]["time"]


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        encode_cursor("systems", {"after_name": "x"}),
        encode_cursor("readings", {"after": "nonsense"}),
    ],
)
def test_a_bad_cursor_is_400_naming_the_cursor(readings: Readings, cursor: str) -> None:
    answer = readings.get("readings", {"cursor": cursor})

    assert answer.status == 400
    assert [detail["field"] for detail in answer.error["details"]] == ["cursor"]


def test_a_cursor_sent_with_another_query_is_400(readings: Readings) -> None:
    first = readings.get("readings", window(DAY, DAY + timedelta(hours=1), "1m", limit="10"))

    answer = readings.get("readings", {"resolution": "5m", "cursor": first.body["next_cursor"]})

    assert answer.status == 400
    assert answer.error["details"][0]["field"] == "cursor"


# --- tenants and bounds -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["readings", "sensors"])
def test_another_tenants_system_and_an_unknown_one_answer_the_same_404(readings: Readings, suffix: str) -> None:
    theirs = readings.get(suffix, verified=THEIRS)
    unknown = call(readings.module, "GET", f"/api/v1/systems/{uuid4()}/{suffix}", verified=READER)
    not_an_id = call(readings.module, "GET", f"/api/v1/systems/press-17/{suffix}", verified=READER)

    assert (theirs.status, unknown.status, not_an_id.status) == (404, 404, 404)
    assert theirs.body == {
        "error": {"code": "not_found", "message": f"no system {readings.system_id} in this tenant", "details": []}
    }
    assert unknown.error["code"] == not_an_id.error["code"] == "not_found"


def test_without_the_scope_it_is_403(readings: Readings) -> None:
    answer = readings.get("readings", verified=claims("systems:read"))

    assert answer.status == 403
    assert answer.error["details"][0]["reason"] == "readings:read is not among the token's scopes"


@pytest.mark.parametrize(
    ("resolution", "days", "reason"),
    [
        ("raw", 2, "resolution raw allows a window of at most 1 day; this one spans 2 days"),
        ("1m", 9, "resolution 1m allows a window of at most 7 days; this one spans 9 days"),
        ("5m", 32, "resolution 5m allows a window of at most 31 days; this one spans 32 days"),
        ("1h", 367, "resolution 1h allows a window of at most 366 days; this one spans 367 days"),
        ("1d", 3661, "resolution 1d allows a window of at most 3660 days; this one spans 3661 days"),
    ],
)
def test_a_window_longer_than_its_resolution_allows_is_400(
    readings: Readings, resolution: str, days: int, reason: str
) -> None:
    answer = readings.get("readings", window(DAY, DAY + timedelta(days=days), resolution))

    assert answer.status == 400
    assert answer.error["details"] == [{"field": "to", "index": None, "reason": reason}]


def test_the_longest_window_allowed_is_answered(readings: Readings) -> None:
    answer = readings.get("readings", window(DAY - timedelta(days=6), DAY + timedelta(days=1), "1m", limit="1"))

    assert answer.status == 200, answer.body


def test_a_from_alone_too_far_back_names_from(readings: Readings) -> None:
    answer = readings.get("readings", {"from": "2020-01-01T00:00:00Z", "resolution": "1h"})

    assert answer.status == 400
    assert answer.error["details"][0]["field"] == "from"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "10001"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"resolution": "2m"}, "resolution"),
        ({"from": "2026-11-02"}, "from"),
        ({"to": "2026-11-02T00:00:00"}, "to"),
        ({"sensor_id": "pump"}, "sensor_id"),
        ({"from": "2026-11-02T01:00:00Z", "to": "2026-11-02T01:00:00Z"}, "to"),
        ({"bucket": "1m"}, "bucket"),
    ],
)
def test_a_malformed_query_is_400_naming_the_parameter(readings: Readings, query: dict[str, str], field: str) -> None:
    answer = readings.get("readings", query)

    assert answer.status == 400, answer.body
    assert [detail["field"] for detail in answer.error["details"]] == [field]


def test_the_defaults_are_the_last_24_hours_at_1m(readings: Readings) -> None:
    answer = readings.get("readings")

    assert answer.status == 200, answer.body
    start, end = datetime.fromisoformat(answer.body["from"]), datetime.fromisoformat(answer.body["to"])
    assert (answer.body["resolution"], end - start, answer.body["items"]) == ("1m", timedelta(hours=24), [])
    assert abs(datetime.now(UTC) - end) < timedelta(minutes=1)


# --- sensors ----------------------------------------------------------------------------------------------------------


def test_sensors_are_live_or_silent_by_the_systems_own_setting(readings: Readings) -> None:
    now = datetime.now(UTC)
    live, silent = uuid4(), uuid4()
    system_id = readings.system_id
    readings.owner("UPDATE systems SET silent_after_seconds = 120 WHERE id = %s", system_id)
    readings.owner("DELETE FROM readings WHERE system_id = %s", system_id)
    # live: a reading every 10 s for the last 2 hours; silent: none in the last 5 minutes (over 120 s).
    readings.owner(
        "INSERT INTO readings (time, system_id, sensor_id, value, unit, quality, job_id)"
        " SELECT %s - n * interval '10 seconds', %s, %s, n, 'bar', 90, %s FROM generate_series(0, 719) AS n",
        now,
        system_id,
        live,
        uuid4(),
    )
    readings.owner(
        "INSERT INTO readings (time, system_id, sensor_id, value, unit, quality, job_id)"
        " SELECT %s - interval '5 minutes' - n * interval '1 hour', %s, %s, 3.5, 'rpm', 90, %s"
        " FROM generate_series(0, 29) AS n",
        now,
        system_id,
        silent,
        uuid4(),
    )
    with psycopg.connect(readings.owner_dsn, autocommit=True) as conn:
        rebuild_rollups(conn)

    answer = readings.get("sensors")

    assert answer.status == 200, answer.body
    listed = SensorList.model_validate(answer.body)
    assert listed.silent_after_seconds == 120
    by_id = {item.sensor_id: item for item in listed.items}
    assert [item.sensor_id for item in listed.items] == sorted(by_id)
    assert (by_id[live].status, by_id[silent].status) == ("live", "silent")
    assert (by_id[live].last_value, by_id[live].unit) == (0.0, "bar")
    assert (by_id[silent].last_value, by_id[silent].unit) == (3.5, "rpm")
    # 361 readings in the last hour to the second; whole minutes leave out the one that began before it (at most
    # 6 readings of 10 s), and the answer's own now is a moment later.
    assert 361 - 7 <= by_id[live].readings_last_hour <= 361
    assert by_id[live].readings_last_day == 720
    assert (by_id[silent].readings_last_hour, by_id[silent].readings_last_day) == (1, 24)


def test_a_system_without_readings_has_no_sensors(readings: Readings) -> None:
    system_id = uuid4()
    readings.owner("INSERT INTO systems (id, tenant_id, name) VALUES (%s, %s, 'idle')", system_id, TENANT)

    answer = call(readings.module, "GET", f"/api/v1/systems/{system_id}/sensors", verified=READER)

    assert answer.body == {"system_id": str(system_id), "silent_after_seconds": 600, "items": []}
