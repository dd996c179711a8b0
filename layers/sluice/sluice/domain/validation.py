"""The reading rules: every reading gets exactly one verdict, a ``ValidReading`` or a ``Rejection``.

Readings arrive as plain decoded JSON values (dicts, strings, numbers), never one pydantic model each: this runs
in the worker's hot loop over millions of readings. The clock is passed in, so a verdict depends only on its
inputs.

When a reading breaks several rules it gets the first that applies, in this order: ``parse_error`` (not an
object, a field missing or of the wrong type), ``invalid_unit``, ``out_of_range`` (value, or quality outside
0..100), ``low_quality`` and ``invalid_timestamp``. ``duplicate`` (the same sensor and instant earlier in the
object: ``sluice.domain.chunks.RepeatFinder``, or already stored), and ``system_not_found`` are decided by the
worker's chunk loop, which knows the rest of the object and the database.
"""

import math
from datetime import UTC, datetime
from uuid import UUID

from sluice.domain.rules import DEFAULT_RULES, QUALITY_BOUNDS, ReadingRules
from sluice.models.readings import QuarantineReason, Rejection, ValidReading, Verdict

REQUIRED_FIELDS = ("sensor_id", "timestamp", "value", "unit", "quality")
_SHOWN_CHARS = 80
# The parse caches are dropped when they grow past this, so a long file cannot grow them without bound.
_CACHE_LIMIT = 65_536
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")

_PARSE_ERROR = QuarantineReason.PARSE_ERROR
_INVALID_UNIT = QuarantineReason.INVALID_UNIT
_OUT_OF_RANGE = QuarantineReason.OUT_OF_RANGE
_LOW_QUALITY = QuarantineReason.LOW_QUALITY
_INVALID_TIMESTAMP = QuarantineReason.INVALID_TIMESTAMP
_new_tuple = tuple.__new__


class ReadingValidator:
    """Judges readings against ``rules`` as of ``now``; reuse one instance for a whole batch or file."""

    __slots__ = (
        "_earliest",
        "_latest",
        "_lowest_valid_quality",
        "_min_quality",
        "_ranges",
        "_sensor_ids",
        "_timestamps",
    )

    def __init__(self, now: datetime, rules: ReadingRules = DEFAULT_RULES) -> None:
        if now.utcoffset() is None:
            raise ValueError("now must be timezone-aware")
        self._latest = now + rules.max_future_skew
        self._earliest = years_before(now, rules.max_age_years)
        self._ranges = dict(rules.unit_ranges)  # a plain dict: lookups on a mappingproxy cost more
        self._min_quality = rules.min_quality
        self._lowest_valid_quality = max(QUALITY_BOUNDS[0], rules.min_quality)
        # Batches repeat sensor ids (tens of sensors, thousands of readings) and timestamps (all sensors of a
        # machine sample together), so parsing each distinct string once pays for the dictionaries.
        self._sensor_ids: dict[str, UUID] = {}
        self._timestamps: dict[str, datetime | Rejection] = {}

    def judge(self, raw: object) -> Verdict:  # noqa: PLR0911, PLR0912 - one return per rule reads best
        """Return the verdict on one decoded reading."""
        if type(raw) is not dict:
            return Rejection(_PARSE_ERROR, None, "a JSON object", _type_name(raw))
        try:
            sensor_text = raw["sensor_id"]
            timestamp_text = raw["timestamp"]
            value = raw["value"]
            unit = raw["unit"]
            quality = raw["quality"]
        except KeyError:
            missing = next(name for name in REQUIRED_FIELDS if name not in raw)
            return Rejection(_PARSE_ERROR, missing, "a value", "nothing (field missing)")

        sensor_id = self._sensor_ids.get(sensor_text) if type(sensor_text) is str else None
        if sensor_id is None:
            sensor_id = parse_uuid(sensor_text)
            if sensor_id is None:
                return Rejection(_PARSE_ERROR, "sensor_id", "a UUID string", show(sensor_text))
            if len(self._sensor_ids) >= _CACHE_LIMIT:
                self._sensor_ids.clear()
            self._sensor_ids[sensor_text] = sensor_id
        if type(timestamp_text) is not str:
            return Rejection(_PARSE_ERROR, "timestamp", "an RFC 3339 string", show(timestamp_text))
        value_type = type(value)
        if value_type is not float and value_type is not int:
            return Rejection(_PARSE_ERROR, "value", "a number", show(value))
        if type(unit) is not str:
            return Rejection(_PARSE_ERROR, "unit", "a string", show(unit))
        if type(quality) is not int:
            if type(quality) is float and quality.is_integer():
                quality = int(quality)
            elif type(quality) is not float or math.isfinite(quality):
                return Rejection(_PARSE_ERROR, "quality", "an integer 0..100", show(quality))
            # NaN, Infinity and integers too long to read exactly (read as Infinity) are numbers outside 0..100:
            # the range check below calls them out_of_range, as it does for value.

        bounds = self._ranges.get(unit)
        if bounds is None:
            return Rejection(_INVALID_UNIT, "unit", "one of " + ", ".join(self._ranges), show(unit))
        low, high = bounds
        # Written so that NaN (every comparison false) fails too.
        if not low <= value <= high:
            return Rejection(_OUT_OF_RANGE, "value", f"{low:g}..{high:g} {unit}", show(value))
        if not QUALITY_BOUNDS[0] <= quality <= QUALITY_BOUNDS[1]:
            return Rejection(_OUT_OF_RANGE, "quality", "0..100", show(quality))
        if quality < self._min_quality:
            return Rejection(_LOW_QUALITY, "quality", f"at least {self._min_quality}", show(quality))

        time = self._timestamps.get(timestamp_text)
        if time is None:
            time = self._judge_timestamp(timestamp_text)
            if len(self._timestamps) >= _CACHE_LIMIT:
                self._timestamps.clear()
            self._timestamps[timestamp_text] = time
        if type(time) is Rejection:
            return time
        # tuple.__new__ skips NamedTuple's Python-level __new__: half the cost, on every valid reading.
        return _new_tuple(ValidReading, (time, sensor_id, float(value), unit, quality))

    def judge_row(self, raw: object, suffix: tuple[object, ...]) -> tuple[object, ...] | Rejection:
        """``judge``'s verdict, a valid reading given as its row: ValidReading's fields, then ``suffix``. A reading
        whose sensor id and timestamp the caches already hold as valid, with a float value and an integer quality
        within bounds, is accepted here without ``judge``; every other goes through it, so rejections are its own."""
        if type(raw) is dict:
            try:
                sensor_id = self._sensor_ids[raw["sensor_id"]]
                time = self._timestamps[raw["timestamp"]]
                value = raw["value"]
                unit = raw["unit"]
                low, high = self._ranges[unit]
                quality = raw["quality"]
            except (KeyError, TypeError):  # a field missing, not cached yet, or unhashable: judge says what it is
                pass
            else:
                if (
                    type(value) is float
                    and type(quality) is int
                    and type(time) is datetime
                    and low <= value <= high
                    and self._lowest_valid_quality <= quality <= QUALITY_BOUNDS[1]
                ):
                    return (time, sensor_id, value, unit, quality, suffix[0], suffix[1])
        verdict = self.judge(raw)
        return verdict if type(verdict) is Rejection else verdict + suffix

    def _judge_timestamp(self, text: str) -> datetime | Rejection:
        # CPython's fromisoformat stops reading the time at a NUL and ignores whatever follows it.
        if "\x00" in text:
            return Rejection(_INVALID_TIMESTAMP, "timestamp", "an RFC 3339 timestamp", show(text))
        try:
            time = datetime.fromisoformat(text)
        except ValueError:
            return Rejection(_INVALID_TIMESTAMP, "timestamp", "an RFC 3339 timestamp", show(text))
        offset = time.utcoffset()
        if offset is None:
            return Rejection(_INVALID_TIMESTAMP, "timestamp", "a UTC offset (Z or +hh:mm)", show(text))
        # Compared before converting: an instant near year 1 or 9999 with an offset has no UTC datetime
        # (astimezone raises OverflowError), and it is refused here anyway.
        if time > self._latest:
            return Rejection(_INVALID_TIMESTAMP, "timestamp", f"not after {_iso(self._latest)}", show(text))
        if time < self._earliest:
            return Rejection(_INVALID_TIMESTAMP, "timestamp", f"not before {_iso(self._earliest)}", show(text))
        return time.astimezone(UTC) if offset else time


def years_before(moment: datetime, years: int) -> datetime:
    """The same calendar instant ``years`` earlier (29 February becomes 28 February)."""
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:
        return moment.replace(year=moment.year - years, day=28)


def show(value: object) -> str:
    """A short, safe rendering of what arrived, for error details (hostile input can be huge)."""
    if type(value) is int and value.bit_length() > 256:
        return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    text = repr(value) if isinstance(value, str) else _json_like(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _json_like(value: object) -> str:
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return f"{_type_name(value)} of {len(value)}"
    return str(value)


def _type_name(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def parse_uuid(text: object) -> UUID | None:
    """A UUID from its text in any of UUID()'s spellings, but of hex digits only; None for anything else."""
    if type(text) is not str or len(text) > 45:
        return None
    # UUID() hands its hex digits to int(), which also takes a sign, white space, underscores and non-ASCII
    # digits ("٨" for "8"): those would name a sensor with text that is not a UUID. Only hex digits may remain.
    digits = text.replace("urn:", "").replace("uuid:", "").strip("{}").replace("-", "")
    if len(digits) != 32 or not _HEX_DIGITS.issuperset(digits):
        return None
    return UUID(digits)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
