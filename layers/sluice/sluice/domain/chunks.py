"""The chunk loop: an object's records cut into chunks, each judged while the sink reads its valid rows, with
every reading that is not stored turned into a quarantine row.

This is the worker's hot loop (millions of readings per file): readings stay plain tuples and dicts here, and
each distinct system id is parsed and looked up once per object.
"""

import hashlib
import itertools
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, TypedDict
from uuid import UUID

from sluice.domain.formats import Record, Unparsable
from sluice.domain.validation import ReadingValidator, parse_uuid, show
from sluice.limits import MAX_RAW_BYTES
from sluice.models.jobs import Job
from sluice.models.readings import QuarantineReason, Rejection

_MAX_TEXT_CHARS = 256
_SMALLINT = (-32768, 32767)

_PARSE_ERROR = QuarantineReason.PARSE_ERROR
_SYSTEM_NOT_FOUND = QuarantineReason.SYSTEM_NOT_FOUND
_DUPLICATE = QuarantineReason.DUPLICATE


# Not frozen: a frozen dataclass sets each field through object.__setattr__, and an all-duplicate batch makes one
# row per reading.
@dataclass(slots=True)
class QuarantineRow:
    """A row of ``quarantined_readings``: the reading's fields as far as they could be read, and why."""

    position: int
    system_id: UUID | None
    sensor_id: UUID | None
    time: datetime | None
    value: float | None
    unit: str | None
    quality: int | None
    raw: str
    reason: QuarantineReason
    details: str
    # When ``raw`` holds only the start of what arrived (see raw_columns): the whole's UTF-8 size and SHA-256.
    raw_bytes: int | None = None
    raw_sha256: str | None = None


class SystemBook:
    """A tenant's systems as the readings of one object name them: the suffix of a valid reading's row
    (system_id, job_id), or the rejection every reading naming that system gets."""

    def __init__(self, job: Job, owned: set[UUID]) -> None:
        self._job = job
        self._owned = owned
        self._known: dict[object, tuple[UUID, UUID] | Rejection] = {}

    def suffix(self, text: object) -> tuple[UUID, UUID] | Rejection:
        """The verdict on a system id as read; each distinct id is parsed and looked up once."""
        if type(text) is not str and text is not None:  # an object or array: never a system id
            return _not_a_system_id(text)
        found = self._known.get(text)
        if found is None:
            system_id = _parse_system_id(text)
            if isinstance(system_id, Rejection):
                found = system_id
            elif system_id in self._owned:
                found = (system_id, self._job.job_id)
            else:
                expected = f"a system of tenant {self._job.tenant_id}"
                found = Rejection(_SYSTEM_NOT_FOUND, "system_id", expected, str(system_id))
            self._known[text] = found
        return found


class ChunkStream:
    """One chunk's records, judged while the sink reads its valid rows, so that the database ingests rows while
    the rest are still being parsed and judged. Valid rows are also kept (with the records they came from) for
    the sink's slower path, and the rest collected for quarantine; a repeat of an earlier (system, sensor,
    instant) in the chunk is a duplicate."""

    def __init__(
        self, chunk_no: int, records: Iterator[Record], validator: ReadingValidator, systems: SystemBook
    ) -> None:
        self.chunk_no = chunk_no
        self.total = 0
        self.rows: list[tuple[object, ...]] = []
        self.sources: list[Record] = []
        self.quarantine: list[QuarantineRow] = []
        self._records = records
        self._validator = validator
        self._systems = systems
        self._repeats = RepeatFinder()

    def valid_rows(self) -> Iterator[tuple[object, ...]]:
        """Judge the records not judged yet; yield each valid one as a row of ``readings`` (ValidReading's fields,
        then system_id and job_id)."""
        rows_append = self.rows.append
        sources_append = self.sources.append
        quarantine = self.quarantine
        judge = self._validator.judge
        judge_row = self._validator.judge_row
        suffix_of = self._systems.suffix
        repeat_of = self._repeats.repeat_of
        # The suffixes of the tenant's systems met so far, by their text: a reading naming one takes the short way.
        owned: dict[object, tuple[UUID, UUID]] = {}
        for record in self._records:
            self.total += 1
            position, system_text, raw = record
            if type(raw) is Unparsable:
                rejection = Rejection(_PARSE_ERROR, None, raw.expected, raw.got)
                quarantine.append(quarantine_row(position, raw, rejection, None))
                continue
            suffix = owned.get(system_text) if type(system_text) is str else None
            if suffix is None:
                found = suffix_of(system_text)
                if isinstance(found, Rejection):
                    if found.reason is _PARSE_ERROR:
                        quarantine.append(quarantine_row(position, raw, found, None))
                        continue
                    # The reading's own rejection comes first. An unknown system's id is kept too: a reviewer may
                    # register the system and approve.
                    verdict = judge(raw)
                    rejection = verdict if type(verdict) is Rejection else found
                    quarantine.append(quarantine_row(position, raw, rejection, _uuid_or_none(system_text)))
                    continue
                suffix = owned[system_text] = found  # a system's text is a string: SystemBook refuses the rest
            row = judge_row(raw, suffix)
            if type(row) is Rejection:
                quarantine.append(quarantine_row(position, raw, row, suffix[0]))
                continue
            repeat = repeat_of(suffix[0], row[1], row[0], position)  # type: ignore[arg-type]
            if repeat is not None:
                quarantine.append(quarantine_row(position, raw, repeat, suffix[0]))
                continue
            rows_append(row)
            sources_append(record)
            yield row

    def read_ahead(self) -> None:
        """Read the chunk's records now (parsing them: the object's text is read here) and judge them later. The
        worker calls it while the database commits the chunk before, so the two work at the same time."""
        self._records = iter(list(self._records))

    def finish(self) -> None:
        """Judge whatever the sink did not read (after a COPY the database refused)."""
        for _ in self.valid_rows():
            pass

    def skip(self) -> None:
        """Read past the chunk's records without judging them (the chunk is committed already)."""
        for _ in self._records:
            self.total += 1


# A chunk also ends once its reader has read this many heartbeats' worth of text (HEARTBEAT_CHARS each: 32 MiB),
# so what a chunk holds until it is written (its valid readings for the slower path, its quarantine rows) is bounded
# by the text it spans and not only by its count: 50,000 readings padded to just under 1 MiB each are 50 GB. A chunk
# of ordinary readings spans 5 to 15 MB and never meets it.
CHUNK_TEXT_BEATS: Final = 32


class ReadMeter:
    """An object reader's heartbeat (one per HEARTBEAT_CHARS of text read), counted, then passed on to ``then``.
    The count is a function of the object's bytes alone, so chunks cut by it are the same on every retry."""

    __slots__ = ("_then", "beats")

    def __init__(self, then: Callable[[], None]) -> None:
        self.beats = 0
        self._then = then

    def __call__(self) -> None:
        self.beats += 1
        self._then()


def chunk_streams(
    records: Iterator[Record],
    size: int,
    validator: ReadingValidator,
    systems: SystemBook,
    meter: ReadMeter | None = None,
) -> Iterator[ChunkStream]:
    """Cut records into chunks of ``size``, or of the records read within CHUNK_TEXT_BEATS of ``meter`` (the reader's
    heartbeat) when it is given; the same object always gives the same chunks. Each chunk must be read (or skipped)
    before the next is taken."""
    for chunk_no in itertools.count():
        first = next(records, None)
        if first is None:
            return
        counted = itertools.chain((first,), itertools.islice(records, size - 1))
        within = counted if meter is None else _within_text(counted, meter, meter.beats + CHUNK_TEXT_BEATS)
        yield ChunkStream(chunk_no, within, validator, systems)


def _within_text(records: Iterator[Record], meter: ReadMeter, last_beat: int) -> Iterator[Record]:
    """``records`` up to the one read when the meter reaches ``last_beat``: asked for the next, it stops before
    reading it (judging, finishing and skipping a chunk all stop at the same record)."""
    for record in records:
        yield record
        if meter.beats >= last_beat:
            return


# A reading is known by (system, sensor, instant): systems belong to one tenant, so no tenant's readings can
# collide with another's.
_ONE_READING: Final = "one reading per system, sensor and instant"
STORED_DUPLICATE: Final = Rejection(_DUPLICATE, "timestamp", _ONE_READING, "already stored")
_STORED_DUPLICATE_DETAILS: Final = json.dumps(STORED_DUPLICATE.as_details(), separators=(",", ":"))


def inserted_and_duplicates(
    judged: ChunkStream, inserted: set[tuple[int, int, datetime]]
) -> tuple[list[tuple[object, ...]], list[QuarantineRow]]:
    """The valid rows of a chunk split, in one pass, by whether the database inserted them (``inserted`` holds the
    keys it did): the rows it inserted (for the rollups), and the others as quarantine rows of stored duplicates.
    Their fields are known and valid, so only the raw reading is serialised."""
    stored: list[tuple[object, ...]] = []
    duplicates: list[QuarantineRow] = []
    for row, record in zip(judged.rows, judged.sources, strict=True):
        if (row[5].int, row[1].int, row[0]) in inserted:  # type: ignore[attr-defined, operator]
            stored.append(row)
            continue
        duplicates.append(
            QuarantineRow(
                position=record[0],
                system_id=row[5],  # type: ignore[arg-type]
                sensor_id=row[1],  # type: ignore[arg-type]
                time=row[0],  # type: ignore[arg-type]
                value=row[2],  # type: ignore[arg-type]
                unit=row[3],  # type: ignore[arg-type]
                quality=row[4],  # type: ignore[arg-type]
                **raw_columns(record[2]),
                reason=_DUPLICATE,
                details=_STORED_DUPLICATE_DETAILS,
            )
        )
    return stored, duplicates


class RepeatFinder:
    """The in-batch duplicate check, the one the worker runs: the first reading of a (system, sensor, instant) in a
    chunk is kept, each later one there is a repeat of it. One per chunk: a repeat in a later chunk meets the unique
    index instead, and is quarantined as a stored duplicate."""

    __slots__ = ("_first_seen",)

    def __init__(self) -> None:
        self._first_seen: dict[tuple[int, int, datetime], int] = {}

    def repeat_of(self, system_id: UUID, sensor_id: UUID, time: datetime, position: int) -> Rejection | None:
        """None for the first reading of this system's sensor at this instant; else the rejection naming the first
        one."""
        earlier = self._first_seen.setdefault((system_id.int, sensor_id.int, time), position)
        if earlier == position:
            return None
        return Rejection(_DUPLICATE, "timestamp", _ONE_READING, f"a repeat of #{earlier}")


def quarantine_row(position: int, raw: object, rejection: Rejection, system_id: UUID | None) -> QuarantineRow:
    """A quarantine row for ``raw`` (a reading as read, or an Unparsable), keeping every field that fits its column."""
    fields = raw if type(raw) is dict else {}
    return QuarantineRow(
        position=position,
        system_id=system_id if system_id is not None else _uuid_or_none(fields.get("system_id")),
        sensor_id=_uuid_or_none(fields.get("sensor_id")),
        time=_time_or_none(fields.get("timestamp")),
        value=_float_or_none(fields.get("value")),
        unit=_text_or_none(fields.get("unit")),
        quality=_smallint_or_none(fields.get("quality")),
        **raw_columns(raw),
        reason=rejection.reason,
        details=storable_json(rejection.as_details()),
    )


class RawColumns(TypedDict):
    """The raw reading as a quarantine row keeps it."""

    raw: str
    raw_bytes: int | None
    raw_sha256: str | None


def raw_columns(raw: object) -> RawColumns:
    """``raw`` as a quarantine row keeps it: its JSON text (``storable_json``) when that takes at most MAX_RAW_BYTES
    bytes. A longer one is cut: the row keeps a JSON string of its start, with the UTF-8 size and SHA-256 of the
    whole, so that no row is large to list or to hold while its chunk is written. The whole is the text itself for
    an Unparsable (a line as read, a CSV row re-rendered), and the JSON text for a reading."""
    if type(raw) is Unparsable:
        if raw.size is not None:  # a line too long to hold: the reader kept its start, size and hash
            return RawColumns(raw=_json_start(raw.text), raw_bytes=raw.size, raw_sha256=raw.sha256)
        whole = raw.text
        stored = storable_json(whole)
    else:
        whole = stored = storable_json(raw)
    # At most 4 bytes a character: most rows are measured without being encoded.
    if len(stored) <= MAX_RAW_BYTES // 4 or len(stored.encode()) <= MAX_RAW_BYTES:
        return RawColumns(raw=stored, raw_bytes=None, raw_sha256=None)
    data = whole.encode(errors="surrogatepass")  # a lone surrogate (escaped JSON keeps none) is hashed as it is
    return RawColumns(raw=_json_start(whole), raw_bytes=len(data), raw_sha256=hashlib.sha256(data).hexdigest())


def _json_start(text: str) -> str:
    """A start of ``text`` whose JSON (``storable_json``) takes at most MAX_RAW_BYTES bytes, and a few less at most."""
    start = text[:MAX_RAW_BYTES]
    while True:
        stored = storable_json(start)
        size = len(stored.encode())
        if size <= MAX_RAW_BYTES:
            return stored
        # Escapes (\n, \u0001) and multi-byte characters take more than a byte each: shrink in proportion.
        start = start[: len(start) * MAX_RAW_BYTES // size]


# Built once: json.dumps with options builds an encoder on every call, which costs more than encoding a reading.
_STORABLE_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def storable_json(value: object) -> str:
    """``value`` as JSON text that PostgreSQL's jsonb accepts. Values jsonb cannot hold (NaN, Infinity, NUL
    characters, lone surrogates) are kept whole as ``{"unstorable_json": "<ASCII JSON text>"}``, which
    ``json.loads`` turns back into exactly what arrived."""
    try:
        text = _STORABLE_ENCODER.encode(value)
        text.encode()
    except (ValueError, TypeError, RecursionError):
        return _escaped_json(value)
    if "\\u0000" in text:
        return _escaped_json(value)
    return text


def _escaped_json(value: object) -> str:
    try:
        escaped = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError, RecursionError):
        escaped = json.dumps(show(value), ensure_ascii=True)
    return json.dumps({"unstorable_json": escaped})


def _parse_system_id(text: object) -> UUID | Rejection:
    if text is None:
        return Rejection(_PARSE_ERROR, "system_id", "a value", "nothing (field missing)")
    # The sensor's rule: UUID() alone would take look-alikes ("+", "_", spaces, non-ASCII digits) as some id.
    system_id = parse_uuid(text)
    return _not_a_system_id(text) if system_id is None else system_id


def _not_a_system_id(text: object) -> Rejection:
    return Rejection(_PARSE_ERROR, "system_id", "a UUID string", show(text))


def _uuid_or_none(value: object) -> UUID | None:
    if type(value) is UUID:
        return value
    return parse_uuid(value)


def _time_or_none(value: object) -> datetime | None:
    if type(value) is not str or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value)
        return moment.astimezone(UTC) if moment.utcoffset() is not None else None
    except (ValueError, OverflowError):  # OverflowError: an instant near year 1 or 9999 has no UTC datetime
        return None


def _float_or_none(value: object) -> float | None:
    if type(value) is not int and type(value) is not float:
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if not math.isinf(number) or type(value) is float else None


def _text_or_none(value: object) -> str | None:
    if type(value) is not str or len(value) > _MAX_TEXT_CHARS or "\x00" in value:
        return None
    try:
        value.encode()
    except UnicodeEncodeError:
        return None
    return value


def _smallint_or_none(value: object) -> int | None:
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is not int or not _SMALLINT[0] <= value <= _SMALLINT[1]:
        return None
    return value
