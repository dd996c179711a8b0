"""Planning a readings page: defaults, the bounds of each resolution, bucket alignment, the cursor and its checks,
the page's body and the sensors' status. Pure: no database (the adapter's SQL is tested in
tests/integration/test_readings_api.py)."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from sluice.domain.pages import answer_bytes, encode_cursor
from sluice.domain.readings import (
    DEFAULT_WINDOW,
    MAX_WINDOW,
    PageText,
    Position,
    ReadingsPlan,
    SensorRow,
    bucket_ceiling,
    find_system_silence,
    list_sensors,
    next_cursor,
    plan_page,
    read_page,
    sensor_status,
)
from sluice.errors import InvalidRequestError, NotFoundError
from sluice.limits import PAGE_BYTES_MAX
from sluice.models.readings_api import (
    READINGS_PAGE_MAX,
    RawPoint,
    ReadingsPage,
    ReadingsQuery,
    Resolution,
    RollupPoint,
)

SYSTEM = UUID("3f0c9a52-6a7e-4c43-9a55-2c8f1b7d9e01")
SENSOR = UUID("9b1d2c3e-4f50-4a61-8b72-c3d4e5f60718")
NOW = datetime(2026, 11, 20, 8, 0, 30, tzinfo=UTC)


def query(**fields: str) -> ReadingsQuery:
    return ReadingsQuery.model_validate(fields)


def refused(work: Any) -> list[tuple[str | None, str]]:
    with pytest.raises(InvalidRequestError) as raised:
        work()
    return [(problem.field, problem.reason) for problem in raised.value.details]


class FakeStore:
    """The store port with a fixed page and fixed sensors; it records the plans it was asked for."""

    def __init__(self, page: PageText | None = None, sensors: list[SensorRow] | None = None) -> None:
        self._page = page or PageText("[]", None)
        self._sensors = sensors or []
        self.systems: dict[tuple[str, UUID], int] = {("demo", SYSTEM): 600}
        self.asked: list[Any] = []

    def silent_after(self, tenant_id: str, system_id: UUID) -> int | None:
        return self.systems.get((tenant_id, system_id))

    def page(self, plan: ReadingsPlan) -> PageText:
        self.asked.append(plan)
        return self._page

    def sensors(self, system_id: UUID, hour_ago: datetime, day_ago: datetime) -> list[SensorRow]:
        self.asked.append((system_id, hour_ago, day_ago))
        return self._sensors


# --- defaults and bounds ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resolution", list(Resolution))
def test_without_from_and_to_a_window_is_the_resolutions_default_up_to_now(resolution: Resolution) -> None:
    plan = plan_page(SYSTEM, query(resolution=resolution.value), NOW)

    assert (plan.start, plan.end) == (NOW - DEFAULT_WINDOW[resolution], NOW)
    assert DEFAULT_WINDOW[resolution] <= MAX_WINDOW[resolution]


def test_the_default_resolution_is_a_minute_and_the_default_limit_a_thousand() -> None:
    plan = plan_page(SYSTEM, query(), NOW)

    assert (plan.resolution, plan.limit, plan.sensor_id, plan.after) == (Resolution.MINUTE, 1000, None, None)


@pytest.mark.parametrize("resolution", list(Resolution))
def test_the_longest_window_is_allowed_and_a_second_more_is_not(resolution: Resolution) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    longest = MAX_WINDOW[resolution]
    window = {"resolution": resolution.value, "from": start.isoformat()}

    plan_page(SYSTEM, query(**window, to=(start + longest).isoformat()), NOW)
    problems = refused(
        lambda: plan_page(SYSTEM, query(**window, to=(start + longest + timedelta(seconds=1)).isoformat()), NOW)
    )

    assert problems[0][0] == "to"
    assert problems[0][1].startswith(f"resolution {resolution} allows a window of at most ")


def test_the_refusal_says_the_bound_and_the_windows_length_in_words_and_numbers() -> None:
    problems = refused(
        lambda: plan_page(
            SYSTEM, query(resolution="1m", **{"from": "2026-11-01T00:00:00Z"}, to="2026-11-10T06:00:00Z"), NOW
        )
    )

    assert problems == [("to", "resolution 1m allows a window of at most 7 days; this one spans 9 days 6 hours")]


def test_a_raw_window_a_fraction_too_long_is_not_said_to_be_as_long_as_the_bound() -> None:
    problems = refused(
        lambda: plan_page(
            SYSTEM, query(resolution="raw", **{"from": "2026-11-01T00:00:00Z"}, to="2026-11-02T00:00:00.5Z"), NOW
        )
    )

    assert problems == [("to", "resolution raw allows a window of at most 1 day; this one spans 1 day 1 second")]


def test_from_alone_names_from_when_the_window_to_now_is_too_long_or_empty() -> None:
    too_long = refused(lambda: plan_page(SYSTEM, query(**{"from": "2020-01-01T00:00:00Z"}), NOW))
    empty = refused(lambda: plan_page(SYSTEM, query(**{"from": "2026-11-21T00:00:00Z"}), NOW))

    assert [field for field, _ in too_long + empty] == ["from", "from"]


def test_to_at_or_before_from_is_refused_naming_to() -> None:
    problems = refused(
        lambda: plan_page(SYSTEM, query(**{"from": "2026-11-20T08:00:00Z"}, to="2026-11-20T08:00:00Z"), NOW)
    )

    assert problems == [("to", "must be later than from (from is included, to is not)")]


def test_a_window_at_the_calendars_edge_is_refused_not_crashed() -> None:
    early = refused(lambda: plan_page(SYSTEM, query(to="0001-01-01T00:00:00Z"), NOW))
    late = refused(
        lambda: plan_page(
            SYSTEM, query(resolution="1d", **{"from": "9999-12-30T00:00:00Z"}, to="9999-12-31T12:00:00Z"), NOW
        )
    )

    assert [field for field, _ in early + late] == ["to", "to"]


# --- buckets ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "resolution", "ceiling"),
    [
        ("2026-11-20T08:02:30Z", Resolution.MINUTE, "2026-11-20T08:03:00Z"),
        ("2026-11-20T08:02:00Z", Resolution.MINUTE, "2026-11-20T08:02:00Z"),
        ("2026-11-20T08:02:30Z", Resolution.FIVE_MINUTES, "2026-11-20T08:05:00Z"),
        ("2026-11-20T08:00:00.000001Z", Resolution.HOUR, "2026-11-20T09:00:00Z"),
        ("2026-11-20T08:00:00+02:00", Resolution.DAY, "2026-11-21T00:00:00Z"),
        ("2026-11-20T08:02:30.5Z", Resolution.RAW, "2026-11-20T08:02:30.5Z"),
    ],
)
def test_a_bound_rounds_up_to_a_bucket_start_aligned_on_utc(moment: str, resolution: Resolution, ceiling: str) -> None:
    assert bucket_ceiling(datetime.fromisoformat(moment), resolution) == datetime.fromisoformat(ceiling)


def test_a_plans_bucket_range_holds_the_buckets_that_start_in_the_window() -> None:
    plan = plan_page(SYSTEM, query(resolution="5m", **{"from": "2026-11-20T08:02:30Z"}, to="2026-11-20T08:21:01Z"), NOW)

    assert (plan.bucket_start, plan.bucket_end) == (
        datetime(2026, 11, 20, 8, 5, tzinfo=UTC),
        datetime(2026, 11, 20, 8, 25, tzinfo=UTC),
    )


# --- cursors ----------------------------------------------------------------------------------------------------------


def first_plan(**fields: str) -> ReadingsPlan:
    return plan_page(SYSTEM, query(**({"resolution": "1h", "from": "2026-11-01T00:00:00Z"} | fields)), NOW)


def test_a_cursor_continues_its_query_after_its_position() -> None:
    plan = first_plan(sensor_id=str(SENSOR), limit="10")
    after = Position(SENSOR, datetime(2026, 11, 3, 5, tzinfo=UTC), "bar")
    cursor = next_cursor(plan, after)
    assert cursor is not None

    following = plan_page(SYSTEM, query(cursor=cursor, limit="10"), NOW + timedelta(minutes=5))

    assert following == ReadingsPlan(SYSTEM, Resolution.HOUR, plan.start, NOW, SENSOR, 10, after)


def test_a_cursor_may_come_with_its_own_query_repeated() -> None:
    plan = first_plan()
    cursor = next_cursor(plan, Position(SENSOR, datetime(2026, 11, 3, tzinfo=UTC), "bar"))
    assert cursor is not None

    again = plan_page(
        SYSTEM, query(cursor=cursor, resolution="1h", **{"from": plan.start.isoformat()}, to=plan.end.isoformat()), NOW
    )

    assert again.after is not None


def test_no_cursor_after_the_last_page() -> None:
    assert next_cursor(first_plan(), None) is None


@pytest.mark.parametrize(
    "changed",
    [
        {"resolution": "1d"},
        {"sensor_id": str(uuid4())},
        {"from": "2026-11-02T00:00:00Z"},
        {"to": "2026-11-20T08:00:00Z"},
    ],
)
def test_a_cursor_sent_with_another_query_is_refused_naming_the_cursor(changed: dict[str, str]) -> None:
    cursor = next_cursor(first_plan(), Position(SENSOR, datetime(2026, 11, 3, tzinfo=UTC), "bar"))
    assert cursor is not None

    problems = refused(lambda: plan_page(SYSTEM, query(cursor=cursor, **changed), NOW))

    assert [field for field, _ in problems] == ["cursor"]


def test_a_cursor_of_another_system_is_refused() -> None:
    cursor = next_cursor(first_plan(), Position(SENSOR, datetime(2026, 11, 3, tzinfo=UTC), "bar"))
    assert cursor is not None

    assert [field for field, _ in refused(lambda: plan_page(uuid4(), query(cursor=cursor), NOW))] == ["cursor"]


def position(**changes: Any) -> dict[str, Any]:
    return {
        "system_id": str(SYSTEM),
        "resolution": "1h",
        "sensor_id": None,
        "from": "2026-11-01T00:00:00+00:00",
        "to": "2026-11-20T08:00:30+00:00",
        "after": [str(SENSOR), "2026-11-03T00:00:00+00:00", "bar"],
    } | changes


@pytest.mark.parametrize(
    "cursor",
    [
        "%%%",
        encode_cursor("systems", {"after_name": "press-17"}),
        encode_cursor("readings", position(after="nope")),
        encode_cursor("readings", position(after=[str(SENSOR), "2026-11-03T00:00:00", "bar"])),
        encode_cursor("readings", position(after=[str(SENSOR), "2026-11-03T00:00:00Z", 7])),
        encode_cursor("readings", position(after=[str(SENSOR), "2026-11-03T00:00:00Z", "x" * 17])),
        encode_cursor("readings", position(resolution="2h")),
        encode_cursor("readings", position(system_id="press-17")),
        encode_cursor("readings", position(sensor_id=12)),
        # Edited to point outside its own window, or to a raw position for a rollup.
        encode_cursor("readings", position(after=[str(SENSOR), "2025-01-01T00:00:00Z", "bar"])),
        encode_cursor("readings", position(after=[str(SENSOR), "2026-11-03T00:00:00Z", ""])),
        # Edited into a window its resolution does not allow.
        encode_cursor("readings", position(**{"from": "2020-01-01T00:00:00+00:00"})),
    ],
)
def test_a_cursor_this_api_did_not_hand_out_is_refused_naming_the_cursor(cursor: str) -> None:
    problems = refused(lambda: plan_page(SYSTEM, query(cursor=cursor), NOW))

    assert [field for field, _ in problems] == ["cursor"]


def test_the_longest_cursor_fits_the_parameters_bound() -> None:
    plan = plan_page(
        SYSTEM,
        query(
            resolution="1d",
            sensor_id=str(SENSOR),
            **{"from": "2026-11-01T00:00:00.123456+00:00"},
            to="2026-11-20T00:00:00.654321+00:00",
        ),
        NOW,
    )
    cursor = next_cursor(plan, Position(SENSOR, datetime(2026, 11, 3, 0, 0, 0, 999999, tzinfo=UTC), "celsius"))

    assert cursor is not None
    assert len(cursor) <= ReadingsQuery.model_fields["cursor"].metadata[0].max_length


# --- the page's body and its size -----------------------------------------------------------------------------------


def test_a_pages_body_is_the_envelope_with_the_stores_items() -> None:
    items = [
        {"sensor_id": str(SENSOR), "time": "2026-11-20T08:00:00+00:00", "unit": "bar", "count": 12, "min": 1.5,
         "max": 3.0, "avg": 2.25, "last": 3.0}
    ]  # fmt: skip
    following = Position(SENSOR, datetime(2026, 11, 20, 8, tzinfo=UTC), "bar")
    store = FakeStore(page=PageText(json.dumps(items), following))
    plan = first_plan()

    body = json.loads(read_page(store, plan))

    assert body == {
        "system_id": str(SYSTEM),
        "resolution": "1h",
        "from": "2026-11-01T00:00:00Z",
        "to": "2026-11-20T08:00:30Z",
        "next_cursor": next_cursor(plan, following),
        "items": items,
    }
    ReadingsPage.model_validate(body)
    assert store.asked == [plan]


def test_a_full_page_of_the_widest_points_fits_a_lambda_answer() -> None:
    # The widest values a point can hold: the longest float texts, the longest unit, quality 100.
    widest = -1.2345678901234567e-300
    raw = RawPoint(sensor_id=SENSOR, time=NOW, value=widest, unit="celsius", quality=100, job_id=SENSOR)
    rollup = RollupPoint(
        sensor_id=SENSOR, time=NOW, unit="celsius", count=2_147_483_647, min=widest, max=widest, avg=widest,
        last=widest,
    )  # fmt: skip

    for point in (raw, rollup):
        # The database's timestamps are "+00:00", 5 characters longer than pydantic's "Z".
        assert (answer_bytes(point) + 10) * READINGS_PAGE_MAX < PAGE_BYTES_MAX


# --- systems and sensors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("tenant", "system_id"), [("other", str(SYSTEM)), ("demo", str(uuid4())), ("demo", "x")])
def test_a_system_not_the_tenants_is_not_found_with_one_message(tenant: str, system_id: str) -> None:
    with pytest.raises(NotFoundError) as raised:
        find_system_silence(FakeStore(), tenant, system_id)

    assert raised.value.message == f"no system {system_id} in this tenant"


def test_the_tenants_system_has_its_silence_setting() -> None:
    assert find_system_silence(FakeStore(), "demo", str(SYSTEM)) == (SYSTEM, 600)


@pytest.mark.parametrize(("age_s", "status"), [(0, "live"), (600, "live"), (601, "silent"), (-30, "live")])
def test_a_sensor_is_silent_past_its_systems_setting(age_s: int, status: str) -> None:
    assert sensor_status(NOW - timedelta(seconds=age_s), 600, NOW) == status


def test_the_sensors_figures_are_read_from_an_hour_and_a_day_before_now() -> None:
    row = SensorRow(SENSOR, "bar", 212.5, NOW - timedelta(minutes=20), 0, 240)
    store = FakeStore(sensors=[row])

    listed = list_sensors(store, SYSTEM, 600, NOW)

    assert store.asked == [(SYSTEM, NOW - timedelta(hours=1), NOW - timedelta(days=1))]
    assert listed.model_dump(mode="json") == {
        "system_id": str(SYSTEM),
        "silent_after_seconds": 600,
        "items": [
            {
                "sensor_id": str(SENSOR),
                "unit": "bar",
                "last_value": 212.5,
                "last_time": "2026-11-20T07:40:30Z",
                "readings_last_hour": 0,
                "readings_last_day": 240,
                "status": "silent",
            }
        ],
    }
