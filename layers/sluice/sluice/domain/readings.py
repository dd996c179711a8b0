"""Reading a system's readings back: which window and resolution a request asks for, within which bounds, and where
its next page starts. Pure planning; the SQL is ``sluice.adapters.readings``.

A rollup point covers one sensor and unit over one bucket ``[time, time + width)``; a window ``[from, to)`` holds
the buckets whose start lies in it. Bounds are rounded up to the bucket width here, so a 5 minute or 1 day point is
always made of whole minutes or hours, and the adapter's range on the stored buckets is an index condition.

Every page is bounded twice: by ``limit`` (at most ``READINGS_PAGE_MAX`` points, about 2 MB of JSON, well under
Lambda's 6 MB answer), and by the window each resolution allows (``MAX_WINDOW``), which bounds what one query may
walk through however many pages it takes.

A cursor is the position of a page's last point and the query it belongs to (system, sensor, resolution, window):
a later page runs the same query after that position, so points stored meanwhile elsewhere in the window cannot
shift the pages still to come. A cursor sent with a different query, or edited into one that names no point of its
own window, is refused (400 naming ``cursor``); it carries no tenant, so at worst it positions the caller's own
system's listing.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, Protocol
from uuid import UUID

from sluice.domain.pages import bad_cursor, decode_cursor, encode_cursor
from sluice.errors import InvalidRequestError, NotFoundError, Problem
from sluice.models.readings_api import ReadingsPage, ReadingsQuery, Resolution, SensorList, SensorView

READINGS_CURSOR: Final = "readings"
DEFAULT_RESOLUTION: Final = Resolution.MINUTE
# The width of each rollup resolution's buckets.
BUCKET_WIDTH: Final[Mapping[Resolution, timedelta]] = {
    Resolution.MINUTE: timedelta(minutes=1),
    Resolution.FIVE_MINUTES: timedelta(minutes=5),
    Resolution.HOUR: timedelta(hours=1),
    Resolution.DAY: timedelta(days=1),
}
# The longest window one query may ask for: about 17,000 to 35,000 points per sensor at each resolution but raw,
# whose day of a sensor sending every 5 s is 17,280 readings.
MAX_WINDOW: Final[Mapping[Resolution, timedelta]] = {
    Resolution.RAW: timedelta(days=1),
    Resolution.MINUTE: timedelta(days=7),
    Resolution.FIVE_MINUTES: timedelta(days=31),
    Resolution.HOUR: timedelta(days=366),
    Resolution.DAY: timedelta(days=3660),
}
# The window when ``from`` is not sent: this long before ``to`` (itself the moment of the request by default).
DEFAULT_WINDOW: Final[Mapping[Resolution, timedelta]] = {
    Resolution.RAW: timedelta(hours=1),
    Resolution.MINUTE: timedelta(hours=24),
    Resolution.FIVE_MINUTES: timedelta(days=7),
    Resolution.HOUR: timedelta(days=30),
    Resolution.DAY: timedelta(days=365),
}
# A unit stored with a reading is one of the rules' short names: anything longer in a cursor was not handed out.
_UNIT_MAX = 16
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ended: its last point's sensor, time and unit (the unit is empty for raw readings, whose key is
    the sensor and time alone)."""

    sensor_id: UUID
    time: datetime
    unit: str = ""


@dataclass(frozen=True, slots=True)
class ReadingsPlan:
    """One page's query: the system's points at ``resolution`` whose time lies in ``[start, end)``, of one sensor or
    of all, after ``after``, at most ``limit`` of them. ``start`` and ``end`` are the window as asked (shown in the
    answer); ``bucket_start`` and ``bucket_end`` the same rounded up to whole buckets (what the SQL ranges over)."""

    system_id: UUID
    resolution: Resolution
    start: datetime
    end: datetime
    sensor_id: UUID | None
    limit: int
    after: Position | None = None

    @property
    def bucket_start(self) -> datetime:
        return bucket_ceiling(self.start, self.resolution)

    @property
    def bucket_end(self) -> datetime:
        return bucket_ceiling(self.end, self.resolution)


@dataclass(frozen=True, slots=True)
class PageText:
    """A page of points as the adapter returns it: the JSON array's text (built by the database), and the position
    of its last point when more points follow it."""

    items_json: str
    following: Position | None


@dataclass(frozen=True, slots=True)
class SensorRow:
    """One sensor of a system as ``sensor_latest`` and the minute rollups describe it."""

    sensor_id: UUID
    unit: str
    last_value: float
    last_time: datetime
    readings_last_hour: int
    readings_last_day: int


class ReadingsStore(Protocol):
    """Where a system's readings and rollups are read."""

    def silent_after(self, tenant_id: str, system_id: UUID) -> int | None:
        """The tenant's system's ``silent_after_seconds``; None when the tenant has no such system."""
        ...

    def page(self, plan: ReadingsPlan) -> PageText:
        """The points of one planned page."""
        ...

    def sensors(self, system_id: UUID, hour_ago: datetime, day_ago: datetime) -> list[SensorRow]:
        """Every sensor of the system with its newest reading and its readings since each moment, by sensor id."""
        ...


def bucket_ceiling(moment: datetime, resolution: Resolution) -> datetime:
    """The first bucket start at or after ``moment`` (``moment`` itself for raw readings). Buckets are aligned on
    the Unix epoch, as ``time_bucket`` aligns minutes, hours and days (its origin, 2000-01-03, is a midnight)."""
    width = BUCKET_WIDTH.get(resolution)
    if width is None:
        return moment
    # Whole microseconds: exact, where a float division would round a moment far from the epoch.
    micros = (moment - _EPOCH) // timedelta(microseconds=1)
    step = width // timedelta(microseconds=1)
    return _EPOCH + timedelta(microseconds=-(-micros // step) * step)


def find_system_silence(store: ReadingsStore, tenant_id: str, system_id: str) -> tuple[UUID, int]:
    """The tenant's system's id and ``silent_after_seconds``; 404 for an id of another tenant, an unknown one or
    one that is no UUID, all with the same answer."""
    try:
        parsed = UUID(system_id)
    except ValueError:
        raise system_not_found(system_id) from None
    silent_after = store.silent_after(tenant_id, parsed)
    if silent_after is None:
        raise system_not_found(system_id)
    return parsed, silent_after


def system_not_found(system_id: str) -> NotFoundError:
    """The one answer for a system the caller's tenant does not have (the systems API's words)."""
    return NotFoundError(f"no system {system_id} in this tenant")


def plan_page(system_id: UUID, query: ReadingsQuery, now: datetime) -> ReadingsPlan:
    """The page a query asks for, its defaults filled in (from its cursor, when it has one), within the bounds."""
    resolution, sensor_id, start, end, after = query.resolution, query.sensor_id, query.from_, query.to, None
    if query.cursor is not None:
        cursor = _decode(query.cursor)
        resolution = _same(resolution, cursor.resolution)
        sensor_id = _same(sensor_id, cursor.sensor_id)
        start, end = _same(start, cursor.start), _same(end, cursor.end)
        if cursor.system_id != system_id:
            raise _foreign_cursor()
        after = cursor.after
    chosen = resolution or DEFAULT_RESOLUTION
    end_at = end or now
    try:
        start_at = start or end_at - DEFAULT_WINDOW[chosen]
        # The buckets' bounds, computed now: a window at the calendar's edge would overflow them later.
        bucket_ceiling(end_at, chosen)
    except OverflowError:
        raise InvalidRequestError(
            "the window is out of range",
            [Problem(field="to", reason="the window and its buckets must lie within the years 1 to 9999")],
        ) from None
    try:
        check_window(chosen, start_at, end_at, to_sent=end is not None)
    except InvalidRequestError:
        # With a cursor the window is the cursor's (parameters sent beside it must equal it): one edited out of
        # its bounds is a cursor this API did not hand out.
        if query.cursor is None:
            raise
        raise bad_cursor() from None
    if after is not None and not (start_at <= after.time < end_at and (chosen is Resolution.RAW) == (not after.unit)):
        raise bad_cursor()
    return ReadingsPlan(system_id, chosen, start_at, end_at, sensor_id, query.limit, after)


def check_window(resolution: Resolution, start: datetime, end: datetime, to_sent: bool = True) -> None:
    """Refuse (400) a window that holds no instant or is longer than the resolution allows. The problem names
    ``to`` when it was sent (the end is what a client widening a window moves), else ``from``."""
    if end <= start:
        problem = (
            Problem(field="to", reason="must be later than from (from is included, to is not)")
            if to_sent
            else Problem(field="from", reason="must be earlier than to, which is the moment of the request by default")
        )
        raise InvalidRequestError("the window holds no instant", [problem])
    longest = MAX_WINDOW[resolution]
    if end - start > longest:
        raise InvalidRequestError(
            "the window is longer than the resolution allows",
            [
                Problem(
                    field="to" if to_sent else "from",
                    reason=f"resolution {resolution} allows a window of at most {_span(longest)};"
                    f" this one spans {_span(end - start)}",
                )
            ],
        )


def next_cursor(plan: ReadingsPlan, following: Position | None) -> str | None:
    """The cursor of the page after ``plan``'s, when points follow its last one."""
    if following is None:
        return None
    position = {
        "system_id": str(plan.system_id),
        "resolution": str(plan.resolution),
        "sensor_id": None if plan.sensor_id is None else str(plan.sensor_id),
        "from": plan.start.isoformat(),
        "to": plan.end.isoformat(),
        "after": [str(following.sensor_id), following.time.isoformat(), following.unit],
    }
    return encode_cursor(READINGS_CURSOR, position)


def sensor_status(last_time: datetime, silent_after_seconds: int, now: datetime) -> Literal["live", "silent"]:
    """``silent`` when the sensor's newest reading is more than ``silent_after_seconds`` before ``now``."""
    return "silent" if now - last_time > timedelta(seconds=silent_after_seconds) else "live"


@dataclass(frozen=True, slots=True)
class _Cursor:
    system_id: UUID
    resolution: Resolution
    sensor_id: UUID | None
    start: datetime
    end: datetime
    after: Position


def _decode(cursor: str) -> _Cursor:
    position = decode_cursor(READINGS_CURSOR, cursor)
    try:
        sensor_text, time_text, unit = position["after"]
        sensor_id = position["sensor_id"]
        decoded = _Cursor(
            system_id=UUID(position["system_id"]),
            resolution=Resolution(position["resolution"]),
            sensor_id=None if sensor_id is None else UUID(sensor_id),
            start=_instant(position["from"]),
            end=_instant(position["to"]),
            after=Position(UUID(sensor_text), _instant(time_text), unit),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        raise bad_cursor() from None
    if not isinstance(unit, str) or len(unit) > _UNIT_MAX:
        raise bad_cursor()
    return decoded


def _instant(text: object) -> datetime:
    if not isinstance(text, str):
        raise TypeError("not text")
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("no offset")
    return moment.astimezone(UTC)


def _same[Value](sent: Value | None, kept: Value) -> Value:
    """The cursor's value of a query parameter, which the request may repeat but not change."""
    if sent is not None and sent != kept:
        raise _foreign_cursor()
    return kept


def _foreign_cursor() -> InvalidRequestError:
    return InvalidRequestError(
        "the cursor belongs to another query",
        [
            Problem(
                field="cursor",
                reason="send next_cursor with the query it came from (same system, sensor_id, resolution, from and"
                " to), or leave those out",
            )
        ],
    )


def _span(length: timedelta) -> str:
    """A length in days, hours, minutes and seconds, the zero parts left out ("9 days", "1 day 6 hours")."""
    # Rounded up: a window a fraction of a second too long must not read as exactly the bound.
    seconds = -(-length // timedelta(seconds=1))
    parts = []
    for name, size in (("day", 86_400), ("hour", 3_600), ("minute", 60), ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {name}{'' if count == 1 else 's'}")
    return " ".join(parts) or "less than a second"


def read_page(store: ReadingsStore, plan: ReadingsPlan) -> str:
    """One page of points as the JSON body of the answer: the envelope from the model, the items as the database
    wrote them (the adapter's JSON text, passed through)."""
    page = store.page(plan)
    head = ReadingsPage.model_validate(
        {
            "system_id": plan.system_id,
            "resolution": plan.resolution,
            "from": plan.start,
            "to": plan.end,
            "items": [],
            "next_cursor": next_cursor(plan, page.following),
        }
    ).model_dump_json(by_alias=True, exclude={"items"})
    return f'{head[:-1]},"items":{page.items_json}}}'


def list_sensors(store: ReadingsStore, system_id: UUID, silent_after_seconds: int, now: datetime) -> SensorList:
    """Every sensor of the system with its figures and status at ``now``."""
    rows = store.sensors(system_id, now - timedelta(hours=1), now - timedelta(days=1))
    return SensorList(
        system_id=system_id,
        silent_after_seconds=silent_after_seconds,
        items=[
            SensorView(
                sensor_id=row.sensor_id,
                unit=row.unit,
                last_value=row.last_value,
                last_time=row.last_time,
                readings_last_hour=row.readings_last_hour,
                readings_last_day=row.readings_last_day,
                status=sensor_status(row.last_time, silent_after_seconds, now),
            )
            for row in rows
        ],
    )
