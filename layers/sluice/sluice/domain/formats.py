"""Reading batch objects: JSON envelopes, NDJSON and CSV, plain or gzip, streamed record by record.

A record is ``(position, system_id as read, reading as read)``. What cannot be parsed into a reading becomes an
``Unparsable`` record that the worker quarantines as ``parse_error``; a file that cannot be read at all (not gzip,
not UTF-8, an unknown format, a broken envelope) raises ``UnreadableObjectError``, which fails its job.

Memory stays bounded by what the caller keeps, not by the file: drops are read block by block, and NDJSON and CSV
line by line with each line (or CSV row) bounded: a longer one is read past in pieces, never held whole. (CSV text
whose lines are whole rows, the common case, is read a block of lines at a time, with the same result.) API
batches (at most 5 MiB, already checked by the API) are parsed whole, with the API's own JSON reading, so the worker
sees exactly what the API counted.

A reader tells its caller that it is still reading (``heartbeat``) once for every ``HEARTBEAT_CHARS`` characters
it reads, whether they held readings or not: a file of blank lines yields nothing for a long time, and the worker
must still keep its message and watch its time meanwhile.
"""

import csv
import functools
import gzip
import hashlib
import io
import itertools
import json
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import IO, Any, Final, NamedTuple

from sluice.errors import UnreadableObjectError
from sluice.limits import MAX_RAW_BYTES

CSV_COLUMNS: Final = ("system_id", "sensor_id", "timestamp", "value", "unit", "quality")
GZIP_SUFFIX: Final = ".gz"
# A single JSON element, NDJSON line or CSV row larger than this (line ends included) is refused rather than
# buffered without bound.
MAX_ELEMENT_CHARS: Final = 1 << 20
# The reader calls its heartbeat at least this often, in characters read (blank lines and refused lines included).
HEARTBEAT_CHARS: Final = 1 << 20
_BLOCK_CHARS = 1 << 16
# CSV text is read in blocks of this many characters when its lines are whole rows (see _BoundedLines.plain_csv_rows);
# 0 reads it line by line. Kept under the csv module's default field limit (131,072), so a block's lines all fit it.
_PLAIN_BLOCK_CHARS = 1 << 16
# A refused line is read past in pieces of this many characters.
_PIECE_CHARS = 1 << 16
_WHITESPACE = frozenset(" \t\r\n")
_REPEATED_KEYS_EXPECTED: Final = "a JSON object naming each field once"
_JSON_TYPES: Final[dict[type, str]] = {str: "a string", list: "an array", bool: "a boolean", type(None): "null"}
_NAMES_SHOWN = 5
_NAME_CHARS = 80
_new_tuple = tuple.__new__


class RepeatedKeys(dict[str, Any]):
    """A JSON object that names a key more than once. As a dict it holds the last value of each key (what
    ``json.loads`` gives); ``pairs`` keeps every pair as it came, so quarantine can show what was really sent."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs

    def repeated(self) -> dict[str, int]:
        """The keys named more than once, in the order they first appear, with how often each came."""
        # Counted in one pass: a hostile object can hold a hundred thousand keys.
        return {name: count for name, count in Counter(name for name, _ in self.pairs).items() if count > 1}

    def described(self) -> str:
        """What a reader is told: which keys came more than once (the first few of them)."""
        repeated = self.repeated()
        shown = [
            f"{json.dumps(name)[:_NAME_CHARS]} {'twice' if count == 2 else f'{count} times'}"
            for name, count in itertools.islice(repeated.items(), _NAMES_SHOWN)
        ]
        more = len(repeated) - len(shown)
        return ", ".join(shown) + (f" and {more} more" if more else "")

    def as_text(self) -> str:
        """The object as JSON text with every pair kept, repeats included."""
        try:
            return "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in self.pairs) + "}"
        except (ValueError, RecursionError):  # a value nested too deeply to write out again
            return "{" + ", ".join(json.dumps(k) + ": ..." for k, _ in self.pairs) + "}"


def _object_from_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # RFC 8259 leaves repeated names to the parser ("last one wins" here); which value a device meant is
    # unknowable, so such an object is marked and judged instead of silently keeping one of them.
    found = dict(pairs)
    return found if len(found) == len(pairs) else RepeatedKeys(pairs)


_decoder = json.JSONDecoder(object_pairs_hook=_object_from_pairs)
_lenient_decoder = json.JSONDecoder(parse_int=float, object_pairs_hook=_object_from_pairs)


class ObjectFormat(StrEnum):
    """How the readings in an object are laid out."""

    JSON = "json"
    NDJSON = "ndjson"
    CSV = "csv"


_FORMAT_BY_EXTENSION: Final = {
    ".json": ObjectFormat.JSON,
    ".ndjson": ObjectFormat.NDJSON,
    ".jsonl": ObjectFormat.NDJSON,
    ".csv": ObjectFormat.CSV,
}


@dataclass(frozen=True, slots=True)
class Unparsable:
    """A line or element that is not a reading, kept as it arrived for quarantine. A line too long to hold keeps
    only its start in ``text``, with the size (UTF-8 bytes) and SHA-256 (hex) of the whole line, line end excluded."""

    text: str
    expected: str
    got: str
    size: int | None = None
    sha256: str | None = None


class Record(NamedTuple):
    """One reading as read: where it sat (array index or line number), its system id, and its fields."""

    position: int
    system_id: object
    raw: object


# A Record from a (position, system_id, raw) tuple, without NamedTuple's Python-level __new__.
_new_record = functools.partial(tuple.__new__, Record)


@dataclass(frozen=True, slots=True)
class Layout:
    """An object's format and whether its bytes are gzip-compressed."""

    format: ObjectFormat
    gzipped: bool


def layout_of(key: str, content_encoding: str | None) -> Layout:
    """The layout an object's key (extension, upper or lower case) and Content-Encoding give it."""
    name = key.rsplit("/", 1)[-1].lower()
    gzipped = (content_encoding or "").strip().lower() == "gzip"
    if name.endswith(GZIP_SUFFIX):
        name, gzipped = name.removesuffix(GZIP_SUFFIX), True
    extension = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    found = _FORMAT_BY_EXTENSION.get(extension)
    if found is None:
        known = ", ".join(sorted(_FORMAT_BY_EXTENSION))
        raise UnreadableObjectError(
            f"unknown file format {extension or '(no extension)'!r}: name the file with one of {known}, "
            "optionally followed by .gz"
        )
    return Layout(found, gzipped)


def read_records(
    body: IO[bytes], layout: Layout, *, whole_envelope: bool = False, heartbeat: Callable[[], None] | None = None
) -> Iterator[Record]:
    """The records of an object's body. ``whole_envelope`` parses a JSON envelope in one piece, as the API does;
    ``heartbeat`` is called at least every HEARTBEAT_CHARS characters read, and may raise to stop the reading."""
    stream: IO[bytes] = gzip.GzipFile(fileobj=body, mode="rb") if layout.gzipped else body  # type: ignore[assignment]
    beat = heartbeat or _no_heartbeat
    try:
        if layout.format is ObjectFormat.JSON and whole_envelope:
            yield from _whole_envelope_records(stream.read())
            return
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
        if layout.format is ObjectFormat.CSV:
            yield from _csv_records(_BoundedLines(text, _CharMeter(beat)))
        elif layout.format is ObjectFormat.NDJSON:
            yield from _ndjson_records(_BoundedLines(text, _CharMeter(beat)))
        else:
            yield from _envelope_records(_JsonStream(text, _CharMeter(beat)))
    except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise UnreadableObjectError(f"the object is not readable gzip: {exc}") from None
    except UnicodeDecodeError as exc:
        raise UnreadableObjectError(f"the object is not UTF-8: {exc.reason} near byte {exc.start}") from None


def loads_lenient(text: str) -> Any:
    """``json.loads``, except that an integer past Python's digit limit is read as a float, so one reading (not the
    whole batch) carries the problem, and an object that names a key twice is a ``RepeatedKeys``. NaN and Infinity
    are read as floats and judged out of range later."""
    try:
        return _decoder.decode(text)
    except json.JSONDecodeError:
        raise
    except ValueError:
        return _lenient_decoder.decode(text)


def _whole_envelope_records(data: bytes) -> Iterator[Record]:
    try:
        document = loads_lenient(data.decode("utf-8-sig"))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise UnreadableObjectError(f"the batch is not JSON: {exc}") from None
    if type(document) is RepeatedKeys:  # the API refuses these; an object put under incoming/ by hand may not be
        raise UnreadableObjectError(f"the batch envelope names {document.described()}")
    if type(document) is not dict or type(document.get("readings")) is not list:
        raise UnreadableObjectError('the batch is not a JSON object with a "readings" array')
    system_id = document.get("system_id")
    readings = document["readings"]
    if RepeatedKeys in set(map(type, readings)):
        for index, raw in enumerate(readings):
            yield Record(index, system_id, _unrepeated(raw))
        return
    # Records made by C-level calls alone: tens of thousands of readings a second arrive this way.
    yield from map(_new_record, zip(itertools.count(), itertools.repeat(system_id), readings))


def _unrepeated(raw: object) -> object:
    """A reading as read, or, when it names a field twice, an ``Unparsable`` keeping every pair it sent."""
    if type(raw) is RepeatedKeys:
        return Unparsable(raw.as_text(), _REPEATED_KEYS_EXPECTED, f"an object naming {raw.described()}")
    return raw


def _ndjson_records(lines: "_BoundedLines") -> Iterator[Record]:
    """NDJSON lines as records. A line over the bound ends ``_ndjson_lines``: it is one record, and reading goes on
    with the line after it."""
    while True:
        try:
            yield from _ndjson_lines(lines)
        except _OverlongError as exc:
            refused = Record(lines.number, None, exc.unparsable("a JSON object", f"a line of {exc.chars} characters"))
        else:
            return
        yield refused


def _ndjson_lines(lines: "_BoundedLines") -> Iterator[Record]:
    loads = _decoder.decode
    for line in lines:
        number = lines.number
        lines.row_chars = 0  # every line is a row of its own
        stripped = line.strip()
        if not stripped:
            continue
        try:
            raw = loads(stripped)
        except json.JSONDecodeError as exc:
            yield Record(number, None, Unparsable(stripped, "a JSON object", f"invalid JSON ({exc.msg})"))
            continue
        except ValueError:
            raw = loads_lenient(stripped)
        except RecursionError:
            yield Record(number, None, Unparsable(stripped, "a JSON object", "JSON nested too deeply"))
            continue
        if type(raw) is not dict:
            # Not an object: the line is the record (it has no system_id to speak of).
            if type(raw) is RepeatedKeys:
                unparsable = Unparsable(stripped, _REPEATED_KEYS_EXPECTED, f"an object naming {raw.described()}")
            else:
                unparsable = Unparsable(stripped, "a JSON object", _JSON_TYPES.get(type(raw), "a number"))
            yield Record(number, None, unparsable)
            continue
        yield Record(number, raw.get("system_id"), raw)


def _csv_records(lines: "_BoundedLines") -> Iterator[Record]:  # noqa: PLR0912, PLR0915 - both loops inlined
    """CSV rows as records, positioned by the line they end on (the header is line 1).

    Plain text (see ``_BoundedLines.plain_csv_rows``) is read a block of rows at a time; the rest goes through the
    csv module line by line. Both give the same rows, line numbers and heartbeats."""
    reader = csv.reader(lines)
    header = _csv_header(reader)
    lines.row_chars = 0
    width = len(CSV_COLUMNS)
    system_at, sensor_at, time_at, value_at, unit_at, quality_at = (header.index(name) for name in CSV_COLUMNS)
    while True:
        plain = lines.plain_csv_rows()
        if plain is not None:
            number = lines.number - len(plain)
            # The hot loop of a drop: conversions are inlined rather than called, records made without
            # NamedTuple's Python-level __new__.
            for row in plain:
                number += 1
                if len(row) != width:
                    if row:  # not a blank line
                        yield _new_tuple(Record, (number, None, _misshapen(row, width)))
                    continue
                value: object = row[value_at]
                # Text that is not a number stays text: the rules then say "value: expected a number, got 'high'".
                # (contextlib.suppress would cost a context manager per row.)
                try:  # noqa: SIM105
                    value = float(value)  # type: ignore[arg-type]
                except ValueError:
                    pass
                quality: object = row[quality_at]
                try:
                    quality = int(quality)  # type: ignore[call-overload]
                except ValueError:
                    quality = _csv_number(row[quality_at])
                yield _new_tuple(
                    Record,
                    (
                        number,
                        row[system_at],
                        {
                            "sensor_id": row[sensor_at],
                            "timestamp": row[time_at],
                            "value": value,
                            "unit": row[unit_at],
                            "quality": quality,
                        },
                    ),
                )
            continue
        try:
            for row in reader:
                lines.row_chars = 0  # the next row starts here: a row's lines count together toward the bound
                if len(row) != width:
                    if row:  # not a blank line
                        yield Record(lines.number, None, _misshapen(row, width))
                else:
                    value = row[value_at]
                    try:  # noqa: SIM105
                        value = float(value)
                    except ValueError:
                        pass
                    quality = row[quality_at]
                    try:
                        quality = int(quality)
                    except ValueError:
                        quality = _csv_number(row[quality_at])
                    yield Record(
                        lines.number,
                        row[system_at],
                        {
                            "sensor_id": row[sensor_at],
                            "timestamp": row[time_at],
                            "value": value,
                            "unit": row[unit_at],
                            "quality": quality,
                        },
                    )
                if lines.drained:  # nothing read ahead is left: plain text may follow
                    break
            else:
                return
        except csv.Error as exc:
            # The csv module cannot show the line it refused; the object itself stays in the bucket. It starts the
            # next row afresh.
            lines.row_chars = 0
            yield Record(lines.number, None, Unparsable("", "a CSV row", f"unreadable CSV ({exc})"))
        except _OverlongError as exc:
            # The row's rest on its line is read past; the csv reader starts its next row afresh on the next line.
            yield Record(lines.number, None, exc.unparsable("a CSV row", f"a row of {exc.chars} characters"))


def _misshapen(row: list[str], width: int) -> Unparsable:
    rendered = io.StringIO()
    csv.writer(rendered, lineterminator="").writerow(row)
    return Unparsable(rendered.getvalue(), f"{width} columns", f"{len(row)} column{'s' if len(row) != 1 else ''}")


def _csv_header(reader: "Iterator[list[str]]") -> list[str]:
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise UnreadableObjectError(f"the CSV file is empty: it needs the header {','.join(CSV_COLUMNS)}") from None
    except csv.Error as exc:
        raise UnreadableObjectError(f"the CSV header cannot be read: {exc}") from None
    except _OverlongError as exc:
        raise UnreadableObjectError(f"the CSV header cannot be read: a row of {exc.chars} characters") from None
    if sorted(header) != sorted(CSV_COLUMNS):
        raise UnreadableObjectError(
            f"the CSV header must name the columns {','.join(CSV_COLUMNS)} (in any order); got {','.join(header)[:200]}"
        )
    return header


def _csv_number(text: str) -> object:
    # Text that is not a number stays text: the rules then say "value: expected a number, got 'high'".
    try:
        return float(text)
    except ValueError:
        return text


def _envelope_records(reader: "_JsonStream") -> Iterator[Record]:
    """Stream ``{"system_id": ..., "readings": [...]}``; ``system_id`` must come first, since nothing is kept."""
    reader.expect("{")
    system_id: object = None
    seen: set[str] = set()
    while True:
        if reader.next_char() == "}" and not seen:
            break
        name = reader.value()
        if type(name) is not str:
            raise UnreadableObjectError("the JSON envelope is not an object with string keys")
        if name in seen:
            raise UnreadableObjectError(f'the JSON envelope names "{name}" twice')
        seen.add(name)
        reader.expect(":")
        if name == "readings":
            if "system_id" not in seen:
                raise UnreadableObjectError(
                    'in a JSON drop, "system_id" must come before "readings" (the file is streamed, not loaded)'
                )
            yield from _array_records(reader, system_id)
        elif name == "system_id":
            system_id = reader.value()
        else:
            raise UnreadableObjectError(f'the JSON envelope has an unknown field "{name[:100]}"')
        if reader.next_char() == "}":
            break
        reader.expect(",")
    reader.expect("}")
    if "readings" not in seen:
        raise UnreadableObjectError('the JSON envelope has no "readings" array')
    if reader.next_char() != "":
        raise UnreadableObjectError("there is more after the JSON envelope")


def _array_records(reader: "_JsonStream", system_id: object) -> Iterator[Record]:
    reader.expect("[")
    if reader.next_char() == "]":
        reader.expect("]")
        return
    index = 0
    while True:
        yield Record(index, system_id, _unrepeated(reader.value(index)))
        index += 1
        if reader.next_char() == "]":
            reader.expect("]")
            return
        reader.expect(",")


class _JsonStream:
    """A JSON text read block by block: whole values are decoded by the C decoder, structure by hand."""

    def __init__(self, text: IO[str], meter: "_CharMeter") -> None:
        self._text = text
        self._meter = meter
        self._buffer = ""
        self._at = 0
        self._eof = False

    def _fill(self) -> bool:
        if self._eof:
            return False
        block = self._text.read(_BLOCK_CHARS)
        self._meter.count(len(block))
        if not block:
            self._eof = True
            return False
        self._buffer = self._buffer[self._at :] + block
        self._at = 0
        return True

    def next_char(self) -> str:
        """The next character that is not white space ("" at the end), left unread."""
        while True:
            buffer, at = self._buffer, self._at
            while at < len(buffer) and buffer[at] in _WHITESPACE:
                at += 1
            self._at = at
            if at < len(buffer):
                return buffer[at]
            if not self._fill():
                return ""

    def expect(self, char: str) -> None:
        """Read ``char``, or fail the object."""
        found = self.next_char()
        if found != char:
            shown = repr(found) if found else "the end of the file"
            raise UnreadableObjectError(f"the JSON envelope is malformed: expected {char!r}, found {shown}")
        self._at += 1

    def value(self, index: int | None = None) -> object:
        """Decode the next whole value; an element that is too large or malformed fails the object."""
        self.next_char()
        while True:
            try:
                value, end = _decoder.raw_decode(self._buffer, self._at)
            except json.JSONDecodeError as exc:
                if len(self._buffer) - self._at <= MAX_ELEMENT_CHARS and self._fill():
                    continue
                where = f"reading #{index}" if index is not None else "the envelope"
                raise UnreadableObjectError(f"the JSON is malformed at {where}: {exc.msg}") from None
            except RecursionError:
                raise UnreadableObjectError("the JSON nests too deeply") from None
            except ValueError:
                # An integer past the digit limit (see loads_lenient).
                value, end = _lenient_decoder.raw_decode(self._buffer, self._at)
            # A number that ends the buffer may go on in the next block.
            if end == len(self._buffer) and self._fill():
                continue
            self._at = end
            return value


def _no_heartbeat() -> None:
    pass


class _CharMeter:
    """Counts the characters a reader reads, calling ``heartbeat`` once per HEARTBEAT_CHARS of them, exactly."""

    __slots__ = ("_heartbeat", "_unbeaten")

    def __init__(self, heartbeat: Callable[[], None]) -> None:
        self._heartbeat = heartbeat
        self._unbeaten = 0

    def to_beat(self) -> int:
        """How many characters more make the next heartbeat (at least 1)."""
        return HEARTBEAT_CHARS - self._unbeaten

    def count(self, chars: int) -> None:
        """Count ``chars`` more characters read."""
        self._unbeaten += chars
        while self._unbeaten >= HEARTBEAT_CHARS:
            self._unbeaten -= HEARTBEAT_CHARS
            self._heartbeat()


class _OverlongError(Exception):
    """A line (or CSV row) over MAX_ELEMENT_CHARS, already read past: its start, length, size and SHA-256."""

    def __init__(self, start: str, chars: int, size: int, sha256: str) -> None:
        super().__init__(f"a line of {chars} characters")
        self.start = start
        self.chars = chars
        self.size = size
        self.sha256 = sha256

    def unparsable(self, expected: str, got: str) -> Unparsable:
        """The quarantine record of the refused line."""
        return Unparsable(self.start, expected, got, self.size, self.sha256)


class _BoundedLines:
    """A text's lines, line ends kept, numbered from 1 (``number``: the line last returned). A row (one line, or the
    lines one CSV row spans: the caller sets ``row_chars`` to 0 where a row starts) of more than MAX_ELEMENT_CHARS
    characters is never held whole: the rest of its line is read past in pieces, keeping the line's start, and
    ``_OverlongError`` is raised with its length, size and SHA-256; the next line is read as usual after it.

    A CSV reader may also take whole blocks of plain rows at once (``plain_csv_rows``); text read ahead that is
    not plain is then handed back line by line, exactly as it would have been read."""

    __slots__ = (
        "_carry",
        "_count",
        "_meter",
        "_pending",
        "_plain",
        "_plain_rows",
        "_read_ahead",
        "_read_ahead_left",
        "_readline",
        "_text",
        "number",
        "row_chars",
    )

    def __init__(self, text: IO[str], meter: _CharMeter) -> None:
        self._text = text
        self._readline: Callable[[int], str] = text.readline
        self._meter = meter
        self._count = meter.count
        self._pending = ""
        # Text read ahead by plain_csv_rows: complete plain lines not handed out yet (and their rows, when the csv
        # module read them), and text that is not plain (with how many of its characters are left), read line by
        # line before the text itself.
        self._plain = ""
        self._plain_rows: list[list[str]] | None = None
        self._carry = ""
        self._read_ahead: io.StringIO | None = None
        self._read_ahead_left = 0
        self.number = 0
        self.row_chars = 0

    @property
    def drained(self) -> bool:
        """Whether nothing read ahead is waiting to be read line by line."""
        return self._read_ahead is None and not self._pending

    def plain_csv_rows(self) -> list[list[str]] | None:
        """The next rows, their lines counted and numbered as if read one by one, when the text that follows is a
        block of plain CSV: lines with no CR but in CRLF, each within both MAX_ELEMENT_CHARS and the csv module's
        field limit, and each one whole row (no quoted field spans lines). None when it is not (read it line by
        line, until ``drained``), or at the end of the text. Call it only where a row starts.

        Rows are handed out so that a heartbeat falls where line-by-line reading would have called it: before the
        row of the line that reaches it, after the rows before it."""
        if not self._plain:
            if not self.drained or _PLAIN_BLOCK_CHARS <= 0:
                return None
            self._plain, self._plain_rows = self._plain_block()
            if not self._plain:
                return None
        text = self._plain
        to_beat = self._meter.to_beat()
        if len(text) >= to_beat:
            # Up to the line that reaches the heartbeat; that line alone (the count beats first) on the next call.
            end = text.rfind("\n", 0, to_beat - 1) + 1 or text.index("\n") + 1
            text, self._plain = text[:end], text[end:]
        else:
            self._plain = ""
        self._count(len(text))
        rows = self._plain_rows
        if rows is None:
            # Without a quote, str.split reads a line as the csv module does, but for a blank one ([""], not []).
            lines = (text.replace("\r\n", "\n") if "\r" in text else text)[:-1].split("\n")
            rows = list(map(str.split, lines, itertools.repeat(",")))
            if "" in lines:
                rows = [row if line else [] for line, row in zip(lines, rows, strict=True)]
        elif self._plain:
            taken = text.count("\n")
            rows, self._plain_rows = rows[:taken], rows[taken:]
        self.number += len(rows)
        return rows

    def _plain_block(self) -> tuple[str, list[list[str]] | None]:
        """The complete lines of the next block when they are plain ("" else, with the block read ahead), and their
        rows when they hold a quote (None: str.split reads them); the partial line after them is kept for the next
        block."""
        block = self._text.read(_PLAIN_BLOCK_CHARS)
        if self._carry:
            block = self._carry + block
        cut = block.rfind("\n") + 1
        complete = block[:cut]
        bound = min(MAX_ELEMENT_CHARS, csv.field_size_limit())
        if (
            cut
            and ("\r" not in complete or complete.count("\r") == complete.count("\r\n"))
            and (cut <= bound or max(map(len, complete.split("\n"))) + 1 <= bound)
        ):
            rows = None if '"' not in complete else _whole_line_rows(complete)
            if rows is None or rows:
                self._carry = block[cut:]
                return complete, rows
        self._carry = ""
        if block:
            self._hand_back(block)
        return "", None

    def _hand_back(self, text: str) -> None:
        """Read ``text`` (read ahead from the text) line by line before the rest of the text."""
        self._read_ahead = io.StringIO(text, newline="")
        self._read_ahead_left = len(text)
        self._readline = self._readline_read_ahead

    def _readline_read_ahead(self, limit: int) -> str:
        """``readline(limit)`` of the text, the text read ahead first."""
        read_ahead = self._read_ahead
        assert read_ahead is not None  # noqa: S101 - only set as _readline while there is some  # nosec B101
        line = read_ahead.readline(limit)
        self._read_ahead_left -= len(line)
        if self._read_ahead_left:
            return line
        self._read_ahead = None
        self._readline = self._text.readline
        if len(line) == limit or line.endswith("\n"):
            return line
        if line.endswith("\r"):
            # The CR ended the text read ahead: what follows it decides whether it is half of a CRLF.
            after = self._text.read(1)
            if after == "\n":
                return line + after
            if after:
                self._hand_back(after)
            return line
        return line + self._text.readline(limit - len(line))

    def __iter__(self) -> "_BoundedLines":
        return self

    def __next__(self) -> str:
        room = MAX_ELEMENT_CHARS - self.row_chars
        if self._pending:
            line, self._pending = self._pending, ""
        else:
            # One character more than the row has room for: a longer line is cut there, and so recognised.
            line = self._readline(room + 1)
        if not line:
            raise StopIteration
        self.number += 1
        self._count(len(line))
        if len(line) > room:
            prior, self.row_chars = self.row_chars, 0
            raise self._read_past(line, prior)
        self.row_chars += len(line)
        return line

    def _read_past(self, piece: str, prior: int) -> _OverlongError:
        """Read to the end of the line ``piece`` (cut at ``prior``'s room + 1) starts, in bounded pieces, hashing
        the line (line end excluded) as it streams and keeping its first MAX_RAW_BYTES characters."""
        digest = hashlib.sha256()
        kept: list[str] = []
        kept_chars = size = 0
        chars = prior
        limit = len(piece)
        while True:
            chars += len(piece)
            # readline stops at a line end, at its limit, or at the end of the text.
            ended = piece.endswith(("\n", "\r")) or len(piece) < limit
            body = piece[: len(piece) - len(_line_end(piece))] if ended else piece
            data = body.encode()
            digest.update(data)
            size += len(data)
            if kept_chars < MAX_RAW_BYTES:
                kept.append(body[: MAX_RAW_BYTES - kept_chars])
                kept_chars += len(kept[-1])
            if ended:
                break
            limit = _PIECE_CHARS
            piece = self._readline(limit)
            self._count(len(piece))
        if piece.endswith("\r") and len(piece) == limit:
            # A CR where the limit cut the line may be the first half of a CRLF: its LF belongs to this line. Else
            # this is the next line, read as __next__ would read it (a new row has all the room).
            after = self._readline(MAX_ELEMENT_CHARS + 1)
            if after == "\n":
                chars += 1
            else:
                self._pending = after
        return _OverlongError("".join(kept), chars, size, digest.hexdigest())


def _whole_line_rows(complete: str) -> list[list[str]]:
    """The csv module's rows of ``complete`` (whole lines, no CR but in CRLF) when each line is one whole row; []
    when a quoted field spans lines or the csv module refuses a row (line-by-line reading then says what it makes
    of them)."""
    lines = (complete.replace("\r\n", "\n") if "\r" in complete else complete)[:-1].split("\n")
    # Every row takes at least a line, so one more row than lines (the empty line after them is one) means each
    # line was a row of its own, the last one included: a quote left open would have taken that empty line in.
    try:
        rows = list(csv.reader([*lines, ""]))
    except csv.Error:
        return []
    if len(rows) != len(lines) + 1:
        return []
    del rows[-1]
    return rows


def _line_end(line: str) -> str:
    if line.endswith("\r\n"):
        return "\r\n"
    return line[-1:] if line.endswith(("\n", "\r")) else ""
