"""The hostile-input corpus: what a careless or malicious client can send to the HTTP API or drop into the bucket,
each with the outcome the contracts promise (docs/api.md, docs/drops.md, docs/architecture.md, The reading rules).

An API request is either refused (a 4xx naming field, index and reason, with nothing stored) or accepted (202),
after which every reading lands in ``readings`` or in quarantine with its reason. A drop becomes a completed job
(readings and quarantine), a failed job that stored nothing, or (under a key that names no tenant) no job at all.
Bodies are built when the corpus runs, so their timestamps are recent; every reading has a sensor of its own, so
no two cases can collide on ``(sensor_id, time)``.
"""

import base64
import gzip
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid5

from ..stack_harness import SYSTEM

MIB = 1024 * 1024
MAX_BODY = 5 * MIB  # SLUICE_MAX_BODY_BYTES's default
JSON = {"Content-Type": "application/json"}
GZIP_JSON = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
CSV_HEADER = "system_id,sensor_id,timestamp,value,unit,quality"
_SENSORS = UUID("0d3f6c1e-2a4b-4c5d-8e6f-7a8b9c0d1e2f")
UNKNOWN_SYSTEM = "00000000-0000-4000-8000-00000000dead"
# The job id of a batch put under incoming/ around the API: no job record of the API names it.
FORGED_JOB = UUID("6f0d2c4e-8a1b-4c3d-9e5f-0a1b2c3d4e5f")


@dataclass(frozen=True)
class Refused:
    """A 4xx whose error body has a detail naming ``field`` (and ``index``), its reason containing ``reason``."""

    status: int
    code: str
    field: str | None
    reason: str = ""
    index: int | None = None


@dataclass(frozen=True)
class Quarantined:
    """One reading bound for quarantine: its position, reason, the field its details name and what they say came."""

    position: int
    reason: str
    field: str | None
    got: str = ""


@dataclass(frozen=True)
class Landed:
    """Accepted, and the job completed: ``inserted`` rows in ``readings``, the rest exactly as ``quarantined``."""

    inserted: int
    quarantined: tuple[Quarantined, ...] = ()


@dataclass(frozen=True)
class FailedJob:
    """A drop that cannot be read: its job fails with ``message`` in ``error_message`` and nothing is stored."""

    message: str


@dataclass(frozen=True)
class GatewayRefused:
    """Answered by the gateway before any function runs: ``status`` and ``{"message": message}``, with no response
    header repeating anything the request sent."""

    status: int
    message: str


@dataclass(frozen=True)
class Ignored:
    """A key outside ``drops/<tenant>/``, or an ``incoming/`` object no job record names: no job at all."""


@dataclass(frozen=True)
class ApiCase:
    """One request to ``POST /api/v1/data/ingest``, sent with a token of its own (the rate limit is per principal)."""

    id: str
    body: Callable[[], bytes]
    expect: Refused | Landed | GatewayRefused
    headers: Mapping[str, str] = field(default_factory=lambda: JSON)
    tenant: str = "demo"
    # The token's header ``alg`` replaced by this (payload and signature kept).
    alg: str | None = None


@dataclass(frozen=True)
class DropCase:
    """One object put into the bucket: ``key`` under ``drops/demo/`` (or a whole key when it starts with ``drops/`` or
    ``incoming/``)."""

    id: str
    key: str
    body: Callable[[], bytes]
    expect: Landed | FailedJob | Ignored
    content_encoding: str | None = None


# --- readings ----------------------------------------------------------------------------------------------------


def sensor(case: str, n: int) -> str:
    """A sensor of this case's reading ``n`` and of no other."""
    return str(uuid5(_SENSORS, f"{case}/{n}"))


def instant(seconds_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def reading(case: str, n: int, **fields: Any) -> dict[str, Any]:
    """A valid reading (value in range, recent, good quality), with ``fields`` replaced or added."""
    base: dict[str, Any] = {
        "sensor_id": sensor(case, n),
        "timestamp": instant(600 + n),
        "value": 212.5,
        "unit": "bar",
        "quality": 97,
    }
    return base | fields


def reading_text(case: str, n: int, **raw: str) -> str:
    """A reading as JSON text, ``raw`` giving the text of some values verbatim (``NaN``, ``1e400``, 5,000 digits)."""
    fields = {name: json.dumps(value) for name, value in reading(case, n).items()} | raw
    return "{" + ", ".join(f"{json.dumps(name)}: {text}" for name, text in fields.items()) + "}"


def envelope(*readings: dict[str, Any] | str, system: str = SYSTEM) -> bytes:
    """A batch envelope; a reading given as text goes in verbatim."""
    texts = [item if isinstance(item, str) else json.dumps(item) for item in readings]
    return f'{{"system_id": {json.dumps(system)}, "readings": [{", ".join(texts)}]}}'.encode()


def with_alg(token: str, alg: str) -> str:
    """``token`` with its header's ``alg`` replaced, payload and signature kept."""
    header = base64.urlsafe_b64encode(json.dumps({"alg": alg, "typ": "JWT"}).encode()).decode().rstrip("=")
    return ".".join([header, *token.split(".")[1:]])


def padded(body: bytes, size: int) -> bytes:
    """``body`` followed by white space (valid after a JSON document) up to exactly ``size`` bytes."""
    assert len(body) <= size
    return body + b" " * (size - len(body))


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def ten_thousand_readings_just_under_the_limit() -> bytes:
    readings = [reading("max_readings_and_body_just_under_the_limits", n) for n in range(10_000)]
    return padded(envelope(*readings), MAX_BODY - 1)


def last_sunday(year: int, month: int) -> date:
    day = date(year, month + 1, 1) - timedelta(days=1)
    return day - timedelta(days=(day.weekday() - 6) % 7)


def dst_end() -> date:
    """The last end of summer time in the EU (last Sunday of October, 03:00 CEST -> 02:00 CET) before today."""
    today = datetime.now(UTC).date()
    this_year = last_sunday(today.year, 10)
    return this_year if this_year < today else last_sunday(today.year - 1, 10)


def dst_readings() -> bytes:
    case, day = "dst_ambiguous_timestamps", dst_end()
    one = sensor(case, 0)  # one sensor, so the two instants of 02:30 are seen as two and a repeat as a repeat
    spring = last_sunday(day.year, 3)
    return envelope(
        reading(case, 0, sensor_id=one, timestamp=f"{day}T02:30:00"),  # naive and ambiguous in Europe/Berlin
        reading(case, 1, sensor_id=one, timestamp=f"{day}T02:30:00+02:00"),  # 00:30Z, summer time
        reading(case, 2, sensor_id=one, timestamp=f"{day}T02:30:00+01:00"),  # 01:30Z, an hour later
        reading(case, 3, sensor_id=one, timestamp=f"{day}T01:30:00Z"),  # the instant of #2 again
        reading(case, 4, sensor_id=one, timestamp=f"{spring}T02:30:00"),  # naive and nonexistent in Berlin
        reading(case, 5, sensor_id=one, timestamp=f"{day}T02:30:00 Europe/Berlin"),
        reading(case, 6, sensor_id=one, timestamp=f"{day}T02:30:00+01:00[Europe/Berlin]"),
    )


def gzipped(body: bytes) -> bytes:
    return gzip.compress(body, mtime=0)


def truncated_gzip(body: bytes) -> bytes:
    whole = gzipped(body)
    return whole[: len(whole) // 2]


def lookalike_uuid(case: str, n: int, at: int, char: str) -> str:
    """This case's sensor ``n`` with character ``at`` replaced by ``char``."""
    text = sensor(case, n)
    return text[:at] + char + text[at + 1 :]


def csv(*rows: str, header: str = CSV_HEADER, newline: str = "\n") -> bytes:
    return newline.join((header, *rows, "")).encode()


def csv_row(case: str, n: int, **cells: str) -> str:
    """A valid CSV row, with ``cells`` replaced verbatim (already quoted where they need it)."""
    fields = {name: str(value) for name, value in reading(case, n).items()} | cells
    row = {"system_id": cells.get("system_id", SYSTEM)} | fields
    return ",".join(row[name] for name in CSV_HEADER.split(","))


def ndjson_line(case: str, n: int, **raw: str) -> str:
    return reading_text(case, n, **raw).replace("{", '{"system_id": ' + json.dumps(SYSTEM) + ", ", 1)


# --- the API corpus ------------------------------------------------------------------------------------------------


def _api_cases() -> list[ApiCase]:  # noqa: PLR0915 - a table of cases reads best as one list
    cases: list[ApiCase] = []

    def case(
        id: str,
        body: Callable[[str], bytes],
        expect: Refused | Landed | GatewayRefused,
        headers: Mapping[str, str] = JSON,
        tenant: str = "demo",
        *,
        alg: str | None = None,
    ) -> None:
        cases.append(ApiCase(id, lambda: body(id), expect, headers, tenant, alg))

    def q(position: int, reason: str, field: str | None, got: str = "") -> Quarantined:
        return Quarantined(position, reason, field, got)

    def bad_request(field: str | None, reason: str = "", index: int | None = None) -> Refused:
        return Refused(400, "invalid_request", field, reason, index)

    # Numbers JSON cannot carry, or Python cannot hold: each is its reading's out_of_range, never the batch's 400.
    case(
        "nan_token",
        lambda c: envelope(reading(c, 0), reading_text(c, 1, value="NaN")),
        Landed(1, (q(1, "out_of_range", "value", "nan"),)),
    )
    case(
        "infinity_tokens_in_value_and_quality",
        lambda c: envelope(
            reading_text(c, 0, value="Infinity"),
            reading_text(c, 1, value="-Infinity"),
            reading_text(c, 2, quality="Infinity"),
            reading_text(c, 3, quality="NaN"),
            reading(c, 4),
        ),
        Landed(
            1,
            (
                q(0, "out_of_range", "value"),
                q(1, "out_of_range", "value"),
                q(2, "out_of_range", "quality"),
                q(3, "out_of_range", "quality"),
            ),
        ),
    )
    case(
        "numbers_of_5000_digits",
        lambda c: envelope(
            reading_text(c, 0, value="1" * 5000),
            reading_text(c, 1, value="-" + "9" * 5000),
            reading_text(c, 2, quality="1" * 5000),
            reading(c, 3),
        ),
        Landed(1, (q(0, "out_of_range", "value"), q(1, "out_of_range", "value"), q(2, "out_of_range", "quality"))),
    )
    case(
        "exponents_past_a_double",
        lambda c: envelope(
            reading_text(c, 0, value="1e400"), reading_text(c, 1, value="-1e400"), reading_text(c, 2, value="1e-400")
        ),
        # 1e-400 is 0.0 bar, inside the range.
        Landed(1, (q(0, "out_of_range", "value"), q(1, "out_of_range", "value"))),
    )

    # Timestamps: an offset is required; wall-clock times are ambiguous, and some have no UTC time at all.
    case(
        "naive_timestamps",
        lambda c: envelope(
            reading(c, 0, timestamp=instant(600).removesuffix("Z")),
            reading(c, 1, timestamp=instant(600)[:10]),
            reading(c, 2, timestamp=instant(600).removesuffix("Z") + ".123456"),
            reading(c, 3),
        ),
        Landed(
            1,
            (
                q(0, "invalid_timestamp", "timestamp", instant(600)[:4]),
                q(1, "invalid_timestamp", "timestamp"),
                q(2, "invalid_timestamp", "timestamp"),
            ),
        ),
    )
    case(
        "dst_ambiguous_timestamps",
        lambda c: dst_readings(),
        Landed(
            2,
            (
                q(0, "invalid_timestamp", "timestamp"),
                q(3, "duplicate", "timestamp", "a repeat of #2"),
                q(4, "invalid_timestamp", "timestamp"),
                q(5, "invalid_timestamp", "timestamp"),
                q(6, "invalid_timestamp", "timestamp"),
            ),
        ),
    )
    case(
        "timestamps_at_the_ends_of_the_calendar",
        lambda c: envelope(
            reading(c, 0, timestamp="0001-01-01T00:00:00+01:00"),  # before year 1 in UTC
            reading(c, 1, timestamp="9999-12-31T23:59:59-01:00"),  # after year 9999 in UTC
            reading(c, 2, timestamp="9999-12-31T23:59:59Z"),
            reading(c, 3, timestamp="2026-02-30T00:00:00Z"),
            reading(c, 4, timestamp="+12026-01-01T00:00:00Z"),
            reading(c, 5),
        ),
        Landed(1, tuple(q(n, "invalid_timestamp", "timestamp") for n in range(5))),
    )

    # Nesting: a body deeper than the parser goes is the batch's 400; one just under it is a reading's parse_error.
    case("nesting_10000_deep", lambda c: envelope(nested(10_000)), bad_request("body", "nests too deeply"))
    case("nesting_100000_deep", lambda c: envelope(nested(100_000)), bad_request("body", "nests too deeply"))
    case(
        "nesting_9000_deep_in_readings",
        lambda c: envelope(
            nested(9000),
            reading_text(c, 1, note='{"a": ' * 5000 + "1" + "}" * 5000),  # deep, but in a field nobody reads
        ),
        Landed(1, (q(0, "parse_error", None, "an array"),)),
    )

    # Sizes: 10,000 readings and 5 MiB (as sent and decompressed) are the limits, inclusive.
    case(
        "a_million_readings",
        lambda c: envelope(*(["0"] * 1_000_000)),
        bad_request("readings", "at most 10000 items"),
    )
    case(
        "a_million_element_array_in_a_reading",
        lambda c: envelope(reading_text(c, 0, value="[" + ",".join(["0"] * 1_000_000) + "]"), reading(c, 1)),
        Landed(1, (q(0, "parse_error", "value", "an array of 1000000"),)),
    )
    case(
        "max_readings_and_body_just_under_the_limits",
        lambda c: ten_thousand_readings_just_under_the_limit(),
        Landed(10_000),
    )
    case(
        "one_reading_over_the_count_limit",
        lambda c: envelope(*(["{}"] * 10_001)),
        bad_request("readings", "at most 10000 items"),
    )
    case("no_readings", lambda c: envelope(), bad_request("readings", "at least 1 item"))
    case(
        "body_one_byte_over_the_limit",
        lambda c: padded(envelope(reading(c, 0)), MAX_BODY + 1),
        Refused(413, "payload_too_large", "body", f"the limit is {MAX_BODY}"),
    )
    case(
        "gzip_decompressing_to_just_under_the_limit",
        lambda c: gzipped(padded(envelope(reading(c, 0), reading(c, 1)), MAX_BODY - 1)),
        Landed(2),
        GZIP_JSON,
    )
    case(
        "gzip_decompressing_to_over_the_limit",
        lambda c: gzipped(padded(envelope(reading(c, 0)), MAX_BODY + 1)),
        Refused(413, "payload_too_large", "body", "decompressed"),
        GZIP_JSON,
    )
    case(
        "gzip_truncated",
        lambda c: truncated_gzip(envelope(*(reading(c, n) for n in range(50)))),
        bad_request("body", "truncated"),
        GZIP_JSON,
    )
    case(
        "gzip_with_bytes_after_its_end",
        lambda c: gzipped(envelope(reading(c, 0))) + b"\x00trailing",
        bad_request("body", "after the end of the gzip stream"),
        GZIP_JSON,
    )
    case(
        "gzip_declared_but_plain",
        lambda c: envelope(reading(c, 0)),
        bad_request("body", "not a gzip stream"),
        GZIP_JSON,
    )

    # Repeated keys: which value was meant is unknowable. The envelope's is the batch's 400, a reading's its own.
    case(
        "duplicate_envelope_keys",
        lambda c: envelope(reading(c, 0), system=UNKNOWN_SYSTEM).replace(
            b'"readings"', f'"system_id": "{SYSTEM}", "readings"'.encode(), 1
        ),
        bad_request("system_id", "more than once"),
    )
    case(
        "duplicate_keys_in_a_reading",
        lambda c: envelope(reading_text(c, 0, value='900.0, "value": 212.5'), reading(c, 1)),
        Landed(1, (q(0, "parse_error", None, '"value" twice'),)),
    )

    # NUL, lone surrogates, bidirectional and invisible characters: text the database and logs must survive.
    case(
        "nul_escapes_in_fields",
        lambda c: envelope(
            reading(c, 0, unit="bar\u0000"),
            reading(c, 1, sensor_id=sensor(c, 1) + "\u0000"),
            reading(c, 2, timestamp=instant(600) + "\u0000"),
            reading(c, 3, note="\u0000"),
            # CPython's fromisoformat reads this as +05:00, ignoring the NUL and what follows it.
            reading(c, 4, timestamp=instant(600)[:-1] + "\u0000+05:00; DROP TABLE readings"),
        ),
        Landed(
            1,
            (
                q(0, "invalid_unit", "unit"),
                q(1, "parse_error", "sensor_id"),
                q(2, "invalid_timestamp", "timestamp"),
                q(4, "invalid_timestamp", "timestamp"),
            ),
        ),
    )
    case(
        "raw_nul_byte_in_a_string",
        lambda c: envelope(reading(c, 0)).replace(b'"bar"', b'"b\x00ar"'),
        bad_request("body", "Invalid control character"),
    )
    case(
        "lone_surrogate_escapes",
        lambda c: envelope(
            reading(c, 0, unit="\ud800"),
            reading(c, 1, sensor_id="\udfff" + sensor(c, 1)[1:]),
            reading(c, 2, timestamp=instant(600)[:-1] + "\ud83d"),
            reading(c, 3, **{"\udc00": "a field nobody reads"}),
        ),
        Landed(
            1,
            (
                q(0, "invalid_unit", "unit", "\\ud800"),
                q(1, "parse_error", "sensor_id"),
                q(2, "invalid_timestamp", "timestamp"),
            ),
        ),
    )
    case(
        "lone_surrogate_as_raw_bytes",
        lambda c: envelope(reading(c, 0)).replace(b'"bar"', b'"\xed\xa0\x80"'),
        bad_request("body", "not UTF-8"),
    )
    case(
        "lone_surrogate_in_an_envelope_key",
        lambda c: envelope(reading(c, 0)).replace(b'{"system_id"', b'{"\\ud800": 1, "system_id"', 1),
        bad_request("\\ud800", "not a field of the batch envelope"),
    )
    case(
        "lookalike_sensor_ids",
        lambda c: envelope(
            reading(c, 0, sensor_id="\u202e" + sensor(c, 0)),  # right-to-left override
            reading(c, 1, sensor_id=lookalike_uuid(c, 1, 8, "\u200b")),  # zero-width space for a hyphen
            reading(c, 2, sensor_id=sensor(c, 2) + "\u200d"),  # zero-width joiner
            reading(c, 3, sensor_id="\ufeff" + sensor(c, 3)),  # zero-width no-break space
            reading(c, 4, sensor_id=lookalike_uuid(c, 4, 35, "\u0668")),  # ARABIC-INDIC DIGIT EIGHT
            reading(c, 5, sensor_id=lookalike_uuid(c, 5, 0, "+")),  # int() takes a sign
            reading(c, 6, sensor_id=lookalike_uuid(c, 6, 0, " ")),  # and white space
            reading(c, 7),
        ),
        Landed(1, tuple(q(n, "parse_error", "sensor_id") for n in range(7))),
    )
    case(
        "right_to_left_override_in_the_system_id",
        lambda c: envelope(reading(c, 0), system="\u202e" + SYSTEM),
        bad_request("system_id"),
    )
    case(
        "zero_width_space_in_the_system_id",
        lambda c: envelope(reading(c, 0), system=SYSTEM[:8] + "\u200b" + SYSTEM[9:]),
        bad_request("system_id"),
    )
    case(
        "invisible_characters_in_units",
        lambda c: envelope(reading(c, 0, unit="\u202ebar"), reading(c, 1, unit="ba\u200br"), reading(c, 2)),
        Landed(1, (q(0, "invalid_unit", "unit"), q(1, "invalid_unit", "unit"))),
    )

    # SQL in every field: data, never code.
    case(
        "sql_in_every_reading_field",
        lambda c: envelope(
            reading(c, 0, sensor_id="'; DROP TABLE readings; --"),
            reading(c, 1, timestamp=instant(600) + "'; DELETE FROM readings; --"),  # noqa: S608 - data, not a query
            reading(c, 2, value="0); DROP TABLE systems; --"),
            reading(c, 3, unit="bar'); TRUNCATE quarantined_readings; --"),
            reading(c, 4, quality="1 OR 1=1"),
            reading(c, 5, **{"tenant_id') --": "x'; DROP TABLE ingest_ledger; --"}),
        ),
        Landed(
            1,
            (
                q(0, "parse_error", "sensor_id"),
                q(1, "invalid_timestamp", "timestamp"),
                q(2, "parse_error", "value"),
                q(3, "invalid_unit", "unit"),
                q(4, "parse_error", "quality"),
            ),
        ),
    )
    case(
        "sql_in_the_system_id",
        lambda c: envelope(reading(c, 0), system=f"{SYSTEM}' OR '1'='1"),
        bad_request("system_id"),
    )
    case(
        "sql_in_the_idempotency_key",
        lambda c: envelope(reading(c, 0)),
        Landed(1),
        JSON | {"Idempotency-Key": "x';DROP/**/TABLE/**/readings;--"},
    )
    case(
        "sql_with_spaces_in_the_idempotency_key",
        lambda c: envelope(reading(c, 0)),
        bad_request("Idempotency-Key", "printable ASCII"),
        JSON | {"Idempotency-Key": "x'; DROP TABLE readings; --"},
    )
    case(
        "tenant_smuggled_into_the_envelope",
        lambda c: envelope(reading(c, 0)).replace(b'{"system_id"', b'{"tenant_id": "other", "system_id"', 1),
        bad_request("tenant_id", "Extra inputs are not permitted"),
    )
    case(
        "a_field_name_of_a_megabyte",
        lambda c: envelope(reading(c, 0)).replace(b'{"system_id"', b'{"' + b"k" * MIB + b'": 1, "system_id"', 1),
        # The detail names the field, shortened: a megabyte is not echoed back.
        bad_request("k" * 197 + "...", "Extra inputs are not permitted"),
    )
    case(
        "a_hundred_thousand_unknown_fields",
        lambda c: envelope(reading(c, 0)).replace(
            b'{"system_id"', b"{" + b", ".join(b'"x%d": 1' % n for n in range(100_000)) + b', "system_id"', 1
        ),
        # The first twenty are named, then how many more: the answer stays small.
        bad_request("x0", "Extra inputs are not permitted"),
    )
    case(
        "megabyte_strings_in_fields",
        lambda c: envelope(
            reading(c, 0, sensor_id="a" * MIB),
            reading(c, 1, timestamp="2" * MIB),
            reading(c, 2, unit="b" * MIB),
        ),
        Landed(
            0,
            (
                q(0, "parse_error", "sensor_id", "..."),
                q(1, "invalid_timestamp", "timestamp", "..."),
                q(2, "invalid_unit", "unit", "..."),
            ),
        ),
    )

    # Media types and encodings.
    unsupported = Refused(415, "unsupported_media_type", "Content-Type", "expected application/json")
    case("content_type_text_plain", lambda c: envelope(reading(c, 0)), unsupported, {"Content-Type": "text/plain"})
    case("content_type_missing", lambda c: envelope(reading(c, 0)), unsupported, {})
    case(
        "content_type_form",
        lambda c: envelope(reading(c, 0)),
        unsupported,
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    case(
        "content_type_json_in_latin1",
        lambda c: envelope(reading(c, 0)),
        unsupported,
        {"Content-Type": "application/json; charset=iso-8859-1"},
    )
    case(
        "content_type_merge_patch_json",
        lambda c: envelope(reading(c, 0)),
        unsupported,
        {"Content-Type": "application/merge-patch+json"},
    )
    case(
        "content_encoding_brotli",
        lambda c: envelope(reading(c, 0)),
        Refused(415, "unsupported_media_type", "Content-Encoding", "expected gzip or none"),
        {"Content-Type": "application/json", "Content-Encoding": "br"},
    )
    case(
        "content_type_in_capitals",
        lambda c: envelope(reading(c, 0)),
        Landed(1),
        {"Content-Type": "Application/JSON; Charset=UTF-8"},
    )
    case("utf8_byte_order_mark", lambda c: "\ufeff".encode() + envelope(reading(c, 0)), Landed(1))
    case("utf16_body", lambda c: envelope(reading(c, 0)).decode().encode("utf-16"), bad_request("body", "not UTF-8"))
    case(
        "trailing_garbage",
        lambda c: envelope(reading(c, 0)) + b" {}",
        bad_request("body", "Extra data"),
    )
    case("body_is_null", lambda c: b"null", bad_request(None, "valid dictionary"))
    case("body_is_an_array", lambda c: b"[" + envelope(reading(c, 0)) + b"]", bad_request(None, "valid dictionary"))
    case("empty_body", lambda c: b"", bad_request("body", "Expecting value"))

    # Envelope right, readings wrong: the batch lands, each bad reading in quarantine.
    case(
        "readings_that_are_not_objects",
        lambda c: envelope("1", '"a reading"', "null", "true", "[]", "{}"),
        Landed(
            0,
            (
                q(0, "parse_error", None, "a number"),
                q(1, "parse_error", None, "a string"),
                q(2, "parse_error", None, "null"),
                q(3, "parse_error", None, "a boolean"),
                q(4, "parse_error", None, "an array"),
                q(5, "parse_error", "sensor_id", "field missing"),
            ),
        ),
    )
    case(
        "unknown_system",
        lambda c: envelope(reading(c, 0), system=UNKNOWN_SYSTEM),
        Landed(0, (q(0, "system_not_found", "system_id"),)),
    )
    case(
        "tenant_claim_with_a_path",
        lambda c: envelope(reading(c, 0)),
        Refused(403, "forbidden", "tenant_id"),
        tenant="../demo",
    )

    # --- the gateway: what reaches no function -----------------------------------------------------------------
    # A token's alg is the sender's text: the twin once echoed it into WWW-Authenticate.
    case(
        "token_alg_with_crlf",
        lambda c: envelope(reading(c, 0)),
        GatewayRefused(401, "Unauthorized"),
        alg="RS256\r\nX-Injected: yes",
    )
    case(
        "token_alg_not_latin_1",
        lambda c: envelope(reading(c, 0)),
        GatewayRefused(401, "Unauthorized"),
        alg="RS256\u2603",
    )
    # Under API Gateway's 10 MB, but 6.4 MB as the event (a gzip body goes in base64): over Lambda's 6 MB.
    case(
        "event_over_lambdas_6_mb",
        lambda c: b"\x1f\x8b" + bytes(4_800_000),
        GatewayRefused(413, "Request Entity Too Large"),
        GZIP_JSON,
    )
    return cases


# --- the drop corpus -----------------------------------------------------------------------------------------------


def _drop_cases() -> list[DropCase]:
    cases: list[DropCase] = []

    def case(
        id: str,
        key: str,
        body: Callable[[str], bytes],
        expect: Landed | FailedJob | Ignored,
        content_encoding: str | None = None,
    ) -> None:
        cases.append(DropCase(id, key, lambda: body(id), expect, content_encoding))

    def q(position: int, reason: str, field: str | None, got: str = "") -> Quarantined:
        return Quarantined(position, reason, field, got)

    case("csv_with_a_bom", "bom.csv", lambda c: b"\xef\xbb\xbf" + csv(*(csv_row(c, n) for n in range(3))), Landed(3))
    case("csv_with_crlf", "crlf.csv", lambda c: csv(*(csv_row(c, n) for n in range(3)), newline="\r\n"), Landed(3))
    case(
        "csv_with_quoted_commas_and_newlines",
        "quoted.csv",
        lambda c: csv(
            csv_row(c, 0, timestamp=f'"{instant(600)}"'),
            csv_row(c, 1, unit='"bar,psi"'),
            csv_row(c, 2, value='"1,5"'),
            csv_row(c, 3, unit='"ba\nr"'),  # ends on line 6
            csv_row(c, 4),
        ),
        Landed(2, (q(3, "invalid_unit", "unit"), q(4, "parse_error", "value"), q(6, "invalid_unit", "unit"))),
    )
    case(
        "csv_with_missing_and_extra_columns",
        "columns.csv",
        lambda c: csv(
            csv_row(c, 0),
            csv_row(c, 1).rsplit(",", 1)[0],
            "",
            csv_row(c, 2) + ",extra",
            csv_row(c, 3),
        ),
        Landed(2, (q(3, "parse_error", None, "5 columns"), q(5, "parse_error", None, "7 columns"))),
    )
    case(
        "csv_header_missing_a_column",
        "header.csv",
        lambda c: csv(csv_row(c, 0).rsplit(",", 1)[0], header=CSV_HEADER.rsplit(",", 1)[0]),
        FailedJob("the CSV header must name the columns"),
    )
    case(
        "csv_gzip_truncated",
        "truncated.csv.gz",
        lambda c: truncated_gzip(csv(*(csv_row(c, n) for n in range(200)))),
        FailedJob("gzip"),
    )
    case(
        "csv_nan_infinity_and_huge_numbers",
        "numbers.csv",
        lambda c: csv(
            csv_row(c, 0, value="nan"),
            csv_row(c, 1, value="inf"),
            csv_row(c, 2, value="-Infinity"),
            csv_row(c, 3, value="1e400"),
            csv_row(c, 4, value="1" * 5000),
            csv_row(c, 5, quality="NaN"),
            csv_row(c, 6, quality="1" * 5000),
            csv_row(c, 7),
        ),
        Landed(
            1,
            (
                *(q(n, "out_of_range", "value") for n in range(2, 7)),
                q(7, "out_of_range", "quality"),
                q(8, "out_of_range", "quality"),
            ),
        ),
    )
    case(
        "csv_nul_bytes",
        "nul.csv",
        lambda c: csv(
            csv_row(c, 0, unit="bar\x00"),
            csv_row(c, 1, sensor_id=sensor(c, 1) + "\x00"),
            csv_row(c, 2, timestamp=instant(600)[:-1] + "\x00+05:00"),
            csv_row(c, 3),
        ),
        Landed(
            1, (q(2, "invalid_unit", "unit"), q(3, "parse_error", "sensor_id"), q(4, "invalid_timestamp", "timestamp"))
        ),
    )
    case(
        "csv_sql_in_every_field",
        "sql.csv",
        lambda c: csv(
            csv_row(c, 0, system_id="'; DROP TABLE systems; --"),
            csv_row(c, 1, sensor_id="'; DROP TABLE readings; --"),
            csv_row(c, 2, timestamp="'; DELETE FROM readings; --"),
            csv_row(c, 3, value="0); DROP TABLE ingest_ledger; --"),
            csv_row(c, 4, unit="bar'); TRUNCATE quarantined_readings; --"),
            csv_row(c, 5, quality="1 OR 1=1"),
            csv_row(c, 6),
        ),
        Landed(
            1,
            (
                q(2, "parse_error", "system_id"),
                q(3, "parse_error", "sensor_id"),
                q(4, "invalid_timestamp", "timestamp"),
                q(5, "parse_error", "value"),
                q(6, "invalid_unit", "unit"),
                q(7, "parse_error", "quality"),
            ),
        ),
    )
    case(
        "csv_lookalike_ids",
        "lookalike.csv",
        lambda c: csv(
            csv_row(c, 0, system_id="\u202e" + SYSTEM),
            csv_row(c, 1, sensor_id=lookalike_uuid(c, 1, 8, "\u200b")),
            csv_row(c, 2, sensor_id=lookalike_uuid(c, 2, 35, "\u0668")),
            csv_row(c, 3),
        ),
        Landed(
            1, (q(2, "parse_error", "system_id"), q(3, "parse_error", "sensor_id"), q(4, "parse_error", "sensor_id"))
        ),
    )
    case(
        "csv_field_over_the_csv_limit",
        "wide.csv",
        lambda c: csv(csv_row(c, 0, unit="x" * 131_073), csv_row(c, 1)),
        Landed(1, (q(2, "parse_error", None, "field larger than field limit"),)),
    )
    case(
        "csv_not_utf8",
        "latin1.csv",
        lambda c: csv(csv_row(c, 0, unit="b\xe4r")).decode().encode("latin-1"),
        FailedJob("not UTF-8"),
    )
    case(
        "csv_in_utf16",
        "utf16.csv",
        lambda c: csv(csv_row(c, 0)).decode().encode("utf-16"),
        FailedJob("not UTF-8"),
    )
    case(
        "csv_unterminated_quote",
        "unterminated.csv",
        lambda c: csv(csv_row(c, 0), csv_row(c, 1, unit='"bar'), csv_row(c, 2)),
        # The open quote runs to the end of the file: one row of five columns, ending on line 4.
        Landed(1, (q(4, "parse_error", None, "5 columns"),)),
    )
    case(
        "ndjson_variants",
        "variants.ndjson",
        lambda c: (
            "\ufeff".encode()
            + "\r\n".join(
                (
                    ndjson_line(c, 0),
                    '{"sensor_id": ',
                    '"a reading"',
                    "[1, 2]",
                    ndjson_line(c, 4, value="NaN"),
                    ndjson_line(c, 5, value="1e400"),
                    "",
                    ndjson_line(c, 7, unit='"bar\\u0000"'),
                    ndjson_line(c, 8, unit='"\\ud800"'),
                    ndjson_line(c, 9, value='900.0, "value": 212.5'),
                    nested(10_000),
                    ndjson_line(c, 11),
                    "",
                )
            ).encode()
        ),
        Landed(
            2,
            (
                q(2, "parse_error", None, "invalid JSON"),
                q(3, "parse_error", None, "a string"),
                q(4, "parse_error", None, "an array"),
                q(5, "out_of_range", "value"),
                q(6, "out_of_range", "value"),
                q(8, "invalid_unit", "unit"),
                q(9, "invalid_unit", "unit"),
                q(10, "parse_error", None, '"value" twice'),
                q(11, "parse_error", None, "nested too deeply"),
            ),
        ),
    )
    case(
        "ndjson_line_repeating_thirty_thousand_keys",
        "repeats.ndjson",
        lambda c: (
            ndjson_line(c, 0).removesuffix("}") + ", " + ", ".join([f'"k{n}": {n}' for n in range(30_000)] * 2) + "}\n"
        ).encode(),
        Landed(0, (q(1, "parse_error", None, '"k0" twice, "k1" twice, "k2" twice, "k3" twice, "k4" twice and 29995'),)),
    )
    case(
        "ndjson_gzip_truncated",
        "truncated.ndjson.gz",
        lambda c: truncated_gzip("\n".join(ndjson_line(c, n) for n in range(200)).encode()),
        FailedJob("gzip"),
    )
    case(
        "json_envelope_with_nan_and_non_objects",
        "variants.json",
        lambda c: envelope(
            reading(c, 0),
            reading_text(c, 1, value="NaN"),
            '"a reading"',
            "[]",
            reading_text(c, 4, unit='"bar", "unit": "psi"'),
            reading(c, 5),
        ),
        Landed(
            2,
            (
                q(1, "out_of_range", "value"),
                q(2, "parse_error", None, "a string"),
                q(3, "parse_error", None, "an array"),
                q(4, "parse_error", None, '"unit" twice'),
            ),
        ),
    )
    case(
        "json_envelope_naming_readings_twice",
        "twice.json",
        lambda c: envelope(reading(c, 0))[:-1] + b', "readings": []}',
        FailedJob('names "readings" twice'),
    )
    case(
        "json_envelope_with_system_id_after_readings",
        "order.json",
        lambda c: json.dumps({"readings": [reading(c, 0)], "system_id": SYSTEM}).encode(),
        FailedJob('"system_id" must come before "readings"'),
    )
    case(
        "json_envelope_with_trailing_data",
        "trailing.json",
        lambda c: envelope(reading(c, 0)) + b" {}",
        FailedJob("more after the JSON envelope"),
    )
    case(
        "json_envelope_nested_10000_deep",
        "deep.json",
        lambda c: envelope(nested(10_000)),
        FailedJob("nests too deeply"),
    )
    case("unknown_extension", "readings.xml", lambda c: b"<readings/>", FailedJob("unknown file format '.xml'"))
    case(
        "gz_extension_but_not_gzip",
        "plain.csv.gz",
        lambda c: csv(csv_row(c, 0)),
        FailedJob("not readable gzip"),
    )
    case("empty_csv", "empty.csv", lambda c: b"", FailedJob("the CSV file is empty"))
    case("empty_ndjson", "empty.ndjson", lambda c: b"", Landed(0))
    case("sql_in_the_object_key", "x'; DROP TABLE readings; --.csv", lambda c: csv(csv_row(c, 0)), Landed(1))
    case("sql_in_the_tenant_segment", "drops/demo';--/x.csv", lambda c: csv(csv_row(c, 0)), Ignored())
    # Only IngestApiFunction writes under incoming/, after the job record: a batch put there around it is not read.
    case(
        "batch_put_under_incoming_without_the_api",
        f"incoming/demo/2026/11/20/{FORGED_JOB}.json",
        lambda c: envelope(reading(c, 0)),
        Ignored(),
    )
    case(
        "content_encoding_gzip_on_a_csv",
        "encoded.csv",
        lambda c: gzipped(csv(csv_row(c, 0))),
        Landed(1),
        content_encoding="gzip",
    )
    case("upper_case_extension", "SHOUTING.CSV.GZ", lambda c: gzipped(csv(csv_row(c, 0))), Landed(1))
    # Bounded reading (docs/drops.md, Bounds): a line or row over 1 MiB is read past, never held, and quarantined
    # with its start; blank lines are read through, however many.
    case(
        "ndjson_line_of_32_mib_in_a_small_gz",
        "long-line.ndjson.gz",
        lambda c: gzipped(f'{ndjson_line(c, 0)}\n{{"pad": "{"p" * (32 * MIB)}"}}\n{ndjson_line(c, 2)}\n'.encode()),
        Landed(2, (q(2, "parse_error", None, f"a line of {32 * MIB + 12} characters"),)),
    )
    case(
        "csv_row_of_seven_million_empty_columns",
        "many-columns.csv.gz",
        lambda c: gzipped(csv(csv_row(c, 0), "," * 7_000_000, csv_row(c, 2))),
        Landed(2, (q(3, "parse_error", None, "a row of 7000001 characters"),)),
    )
    case(
        "ndjson_after_16_mib_of_blank_lines",
        "blank.ndjson.gz",
        lambda c: gzipped(ndjson_line(c, 0).encode() + b"\n" * (16 * MIB) + ndjson_line(c, 1).encode() + b"\n"),
        Landed(2),
    )
    return cases


API_CASES = _api_cases()
DROP_CASES = _drop_cases()
