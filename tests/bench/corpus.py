"""A deterministic corpus of hydraulic sensor readings for the load-worker benchmark, and its renderings.

``make_corpus`` lets 100 systems x 20 sensors sample once per second: one tick emits the 20 readings of one system
for one second, and the systems take turns. About 1% of the rows are then replaced, at random positions, by invalid
ones spread evenly over the seven quarantine reasons; each breaks only the rule its reason names, so
``Corpus.expected`` says exactly how every row must end. The writers render the corpus as the worker's inputs (API
batches, CSV and NDJSON drops) and its valid rows as the CSV that ``\\copy readings FROM ... WITH (FORMAT csv)``
loads, the reference the worker is measured against.
"""

import csv
import io
import json
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import cycle
from math import isfinite
from uuid import UUID

from sluice.domain.validation import years_before
from sluice.models.readings import QuarantineReason

REASONS: tuple[str, ...] = tuple(reason.value for reason in QuarantineReason)

SYSTEMS = 100
SENSORS_PER_SYSTEM = 20
UNKNOWN_SYSTEMS = 2
INVALID_SHARE = 0.01
#: A duplicate repeats a valid row at most this many rows earlier, so it lands in the same API batch.
DUPLICATE_WINDOW = 50
CSV_HEADER = ("system_id", "sensor_id", "timestamp", "value", "unit", "quality")
READING_FIELDS = CSV_HEADER[1:]
COPY_COLUMNS = ("time", "system_id", "sensor_id", "value", "unit", "quality", "job_id")

#: Where each unit's readings sit in normal operation, well inside the accepted ranges of ``sluice.domain.rules``.
BANDS = {"bar": (150.0, 350.0), "celsius": (30.0, 80.0), "lpm": (50.0, 400.0), "rpm": (800.0, 3000.0)}
# A hydraulic unit has more pressure and temperature points than flow meters and pump speed sensors.
_UNIT_WEIGHTS = (8, 6, 4, 2)
# A sensor wanders by this share of its band around its own operating point.
_JITTER = 0.05
# Share of systems whose clocks stamp a fractional second (the rest sample on the whole second).
_FRACTIONAL_CLOCKS = 0.3
# The newest reading is this old: the worker's clock (``now`` or later) never sees one from the future.
_LAG = timedelta(minutes=1)
_DAY = timedelta(days=1)
# Quality by table lookup on one random draw: 90% good (90..100), 10% acceptable (70..89).
_QUALITIES = tuple([90 + i * 11 // 900 for i in range(900)] + [70 + i * 20 // 100 for i in range(100)])

_WRONG_UNITS = {
    "bar": ("psi", "Bar"),
    "celsius": ("fahrenheit", "Celsius"),
    "lpm": ("gpm", "LPM"),
    "rpm": ("rps", "RPM"),
}
_OUT_OF_RANGE = {"bar": (950.0, -3.5), "celsius": (180.0, -80.0), "lpm": (1250.0, -12.0), "rpm": (7500.0, -40.0)}
_FUTURE = timedelta(minutes=10)
_TOO_OLD_YEARS = 6
_NOT_A_READING = "not a reading"
_PARSE_ERROR = QuarantineReason.PARSE_ERROR.value
_COMPACT = json.JSONEncoder(separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Row:
    """One reading as it arrives: its system, its fields (or a raw text line) and the reason it must end with."""

    system_id: UUID
    fields: dict[str, object] | str
    reason: str | None


@dataclass(frozen=True)
class Corpus:
    """The rows of one benchmark run, the systems they name, and how many must end with each reason."""

    tenant: str
    systems: list[UUID]
    unknown_systems: list[UUID]
    rows: list[Row]
    expected: Counter[str]


# A sensor as the generator needs it: its id text, unit, and the low end and width of its values.
_Sensor = tuple[str, str, float, float]


def make_corpus(total: int, *, tenant: str = "bench", now: datetime, seed: int = 7) -> Corpus:
    """``total`` rows in arrival order, all stamped in the day before ``now``; the same arguments give the same rows."""
    if total < 1:
        raise ValueError(f"total must be at least 1, got {total}")
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    rng = random.Random(seed)
    # Ids and sensors come first from the generator, so they are the same for every total.
    systems = [_uuid(rng) for _ in range(SYSTEMS)]
    unknown_systems = [_uuid(rng) for _ in range(UNKNOWN_SYSTEMS)]
    sensors = [[_sensor(rng) for _ in range(SENSORS_PER_SYSTEM)] for _ in systems]
    unknown_sensors = [[_sensor(rng) for _ in range(SENSORS_PER_SYSTEM)] for _ in unknown_systems]
    suffixes = ["Z" if rng.random() >= _FRACTIONAL_CLOCKS else f".{rng.randrange(1, 1000):03d}Z" for _ in systems]

    now = now.astimezone(UTC)
    seconds = -(-total // (SYSTEMS * SENSORS_PER_SYSTEM))
    end = now.replace(microsecond=0) - _LAG
    start = end - timedelta(seconds=seconds - 1)
    if now - start >= _DAY:
        raise ValueError(f"{total} readings do not fit in a day at one reading per sensor and second")

    rows = _valid_rows(total, rng, list(zip(systems, suffixes, sensors, strict=True)), start)
    spoiler = _Spoiler(rng, now, unknown_systems, unknown_sensors)
    count = round(total * INVALID_SHARE)
    reasons = [REASONS[i % len(REASONS)] for i in range(count)]
    rng.shuffle(reasons)
    # Row 0 stays valid, so every duplicate has an earlier valid row to repeat.
    for position, reason in zip(sorted(rng.sample(range(1, total), count)), reasons, strict=True):
        rows[position] = spoiler.spoil(rows, position, reason)
    expected = Counter(row.reason or "valid" for row in rows)
    return Corpus(tenant, systems, unknown_systems, rows, expected)


def _valid_rows(
    total: int, rng: random.Random, fleet: list[tuple[UUID, str, list[_Sensor]]], start: datetime
) -> list[Row]:
    """``total`` valid rows, tick by tick: the 20 readings of one system for one second, systems in turn."""
    rows: list[Row] = []
    append = rows.append
    draw = rng.random
    qualities = _QUALITIES
    scale = len(qualities)
    second = ""
    for tick in range(-(-total // SENSORS_PER_SYSTEM)):
        index = tick % SYSTEMS
        if index == 0:
            second = _rfc3339(start + timedelta(seconds=tick // SYSTEMS)).removesuffix("Z")
        system_id, suffix, sensors = fleet[index]
        timestamp = second + suffix
        for sensor_id, unit, low, width in sensors:
            reading: dict[str, object] = {
                "sensor_id": sensor_id,
                "timestamp": timestamp,
                "value": round(low + width * draw(), 1),
                "unit": unit,
                "quality": qualities[int(draw() * scale)],
            }
            append(Row(system_id, reading, None))
    del rows[total:]
    return rows


class _Spoiler:
    """Turns a valid row into one that breaks exactly one rule, cycling through each reason's variants."""

    def __init__(
        self, rng: random.Random, now: datetime, unknown_systems: list[UUID], unknown_sensors: list[list[_Sensor]]
    ) -> None:
        self._rng = rng
        self._variants: Counter[str] = Counter()
        self._future = _rfc3339(now.replace(microsecond=0) + _FUTURE)
        self._too_old = _rfc3339(years_before(now.replace(microsecond=0), _TOO_OLD_YEARS))
        # Every sensor of the unknown systems in turn: an unknown system's rows never repeat a (sensor, instant).
        self._unknown = cycle(
            [
                (system_id, sensor)
                for system_id, own in zip(unknown_systems, unknown_sensors, strict=True)
                for sensor in own
            ]
        )
        self._unknown_seen: set[tuple[str, str]] = set()

    def spoil(self, rows: list[Row], position: int, reason: str) -> Row:
        """The row that replaces ``rows[position]`` (a valid row) and must end with ``reason``."""
        row = rows[position]
        fields = dict(_reading(row))
        variant = self._variants[reason]
        self._variants[reason] += 1
        unit = str(fields["unit"])
        match reason:
            case QuarantineReason.INVALID_UNIT:
                fields["unit"] = _WRONG_UNITS[unit][variant % 2]
            case QuarantineReason.OUT_OF_RANGE:
                fields["value"] = _OUT_OF_RANGE[unit][variant % 2]
            case QuarantineReason.LOW_QUALITY:
                fields["quality"] = self._rng.randint(10, 49)
            case QuarantineReason.INVALID_TIMESTAMP:
                timestamp = str(fields["timestamp"])
                fields["timestamp"] = (timestamp.removesuffix("Z"), self._future, self._too_old)[variant % 3]
            case QuarantineReason.SYSTEM_NOT_FOUND:
                return self._unknown_system(str(fields["timestamp"]))
            case QuarantineReason.DUPLICATE:
                return self._duplicate(rows, position)
            case QuarantineReason.PARSE_ERROR:
                if variant % 3 == 2:
                    return Row(row.system_id, _NOT_A_READING, reason)
                if variant % 3 == 0:
                    del fields["quality"]
                else:
                    fields["value"] = "high"
            case _:
                raise ValueError(f"unknown reason {reason!r}")
        return Row(row.system_id, fields, reason)

    def _unknown_system(self, timestamp: str) -> Row:
        """A valid reading, at the replaced row's instant, from a sensor of a system registered nowhere."""
        system_id, (sensor_id, unit, low, width) = next(self._unknown)
        while (sensor_id, timestamp) in self._unknown_seen:
            system_id, (sensor_id, unit, low, width) = next(self._unknown)
        self._unknown_seen.add((sensor_id, timestamp))
        value = round(low + width * self._rng.random(), 1)
        quality = _QUALITIES[self._rng.randrange(len(_QUALITIES))]
        reading: dict[str, object] = {
            "sensor_id": sensor_id,
            "timestamp": timestamp,
            "value": value,
            "unit": unit,
            "quality": quality,
        }
        return Row(system_id, reading, QuarantineReason.SYSTEM_NOT_FOUND.value)

    def _duplicate(self, rows: list[Row], position: int) -> Row:
        """An exact repeat of a valid row a few rows earlier (the nearest valid one before, if that one is not)."""
        source = position - self._rng.randint(1, min(DUPLICATE_WINDOW, position))
        while rows[source].reason is not None:
            source -= 1
        original = rows[source]
        return Row(original.system_id, dict(_reading(original)), QuarantineReason.DUPLICATE.value)


def api_batches(corpus: Corpus, size: int) -> Iterator[tuple[UUID, bytes]]:
    """API request bodies of at most ``size`` readings of one system each, in arrival order within each system."""
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    system_texts = _UuidTexts()
    # Keyed by the UUID's integer: hashing a UUID is Python code, an int's is not.
    buffers: dict[int, list[object]] = {}
    for row in corpus.rows:
        key = row.system_id.int
        buffer = buffers.get(key)
        if buffer is None:
            buffer = buffers[key] = []
        buffer.append(row.fields)
        if len(buffer) == size:
            yield row.system_id, _batch_body(system_texts[key], buffer)
            buffers[key] = []
    for key, buffer in buffers.items():
        if buffer:
            yield UUID(int=key), _batch_body(system_texts[key], buffer)


def drop_csv(corpus: Corpus) -> bytes:
    """The corpus as a CSV drop (header, LF line ends, not compressed); broken rows as a sender would break them."""
    system_texts = _UuidTexts()
    cell = _CsvCells()
    lines = [",".join(CSV_HEADER)]
    append = lines.append
    for row in corpus.rows:
        fields = row.fields
        system_id = system_texts[row.system_id.int]
        if type(fields) is dict and row.reason != _PARSE_ERROR:
            # Half the time the csv module's writer takes: numbers never need quoting, and texts get cell's.
            append(
                f"{system_id},{cell[fields['sensor_id']]},{cell[fields['timestamp']]},{fields['value']!r},"
                f"{cell[fields['unit']]},{fields['quality']!r}"
            )
        else:
            append(_csv_line(_csv_record(system_id, fields)))
    append("")
    return "\n".join(lines).encode()


def drop_ndjson(corpus: Corpus) -> bytes:
    """The corpus as an NDJSON drop: one compact object per line with its system_id, raw text lines as they are."""
    system_texts = _UuidTexts()
    quoted = _JsonTexts()
    encode = _COMPACT.encode
    lines: list[str] = []
    append = lines.append
    for row in corpus.rows:
        fields = row.fields
        if isinstance(fields, str):
            append(fields)
            continue
        system_id = system_texts[row.system_id.int]
        value = fields["value"]
        if row.reason != _PARSE_ERROR and type(value) is float and isfinite(value):
            # What json would write, in half the time: each distinct text is encoded once.
            append(
                f'{{"system_id":"{system_id}","sensor_id":{quoted[fields["sensor_id"]]},'
                f'"timestamp":{quoted[fields["timestamp"]]},"value":{value!r},"unit":{quoted[fields["unit"]]},'
                f'"quality":{quoted[fields["quality"]]}}}'
            )
        else:
            append(encode({"system_id": system_id} | fields))
    append("")
    return "\n".join(lines).encode()


def copy_reference_csv(corpus: Corpus, job_id: UUID) -> bytes:
    """The valid rows as headerless CSV in the column order of ``readings`` (``COPY_COLUMNS``), for ``\\copy``."""
    system_texts = _UuidTexts()
    cell = _CsvCells()
    job = str(job_id)
    lines = [
        f"{cell[f['timestamp']]},{system_texts[row.system_id.int]},{cell[f['sensor_id']]},{f['value']!r},"
        f"{cell[f['unit']]},{f['quality']!r},{job}"
        for row in corpus.rows
        if row.reason is None
        for f in (_reading(row),)
    ]
    lines.append("")
    return "\n".join(lines).encode()


def _csv_record(system_id: str, fields: dict[str, object] | str) -> tuple[object, ...]:
    """One CSV record: the text alone for a raw line, and only the fields present for a reading."""
    if isinstance(fields, str):
        return (fields,)
    return (system_id, *(fields[name] for name in READING_FIELDS if name in fields))


def _csv_line(record: Iterable[object]) -> str:
    """One record as the csv module writes it (RFC 4180 quoting, floats as ``repr``), without its line end."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(record)
    return out.getvalue()[:-1]


def _batch_body(system_id: str, readings: list[object]) -> bytes:
    return _COMPACT.encode({"system_id": system_id, "readings": readings}).encode()


class _UuidTexts(dict[int, str]):
    """The text of each UUID, keyed by its integer: ``str`` and ``hash`` of a UUID are Python code, slow per row."""

    def __missing__(self, key: int) -> str:
        text = self[key] = str(UUID(int=key))
        return text


class _CsvCells(dict[object, str]):
    """Each distinct field as a CSV cell, quoted once when it needs quoting."""

    def __missing__(self, key: object) -> str:
        text = self[key] = _csv_line((key,))
        return text


class _JsonTexts(dict[object, str]):
    """Each distinct field as JSON, encoded once."""

    def __missing__(self, key: object) -> str:
        text = self[key] = _COMPACT.encode(key)
        return text


def _reading(row: Row) -> dict[str, object]:
    """The fields of a row known to hold a reading."""
    if isinstance(row.fields, str):
        raise TypeError(f"expected a reading, got the raw text {row.fields!r}")
    return row.fields


def _uuid(rng: random.Random) -> UUID:
    return UUID(int=rng.getrandbits(128), version=4)


def _sensor(rng: random.Random) -> _Sensor:
    """A new sensor: its unit, and an operating point inside the unit's band that it wanders around."""
    unit = rng.choices(tuple(BANDS), weights=_UNIT_WEIGHTS)[0]
    low, high = BANDS[unit]
    jitter = (high - low) * _JITTER
    centre = rng.uniform(low + jitter, high - jitter)
    return str(_uuid(rng)), unit, centre - jitter, 2 * jitter


def _rfc3339(moment: datetime) -> str:
    """``2026-11-20T08:00:05Z``, with the fraction only when there is one."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
