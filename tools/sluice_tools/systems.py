"""The systems register behind `sluice systems add|list|import`.

``add`` and ``list`` work on the database ``SLUICE_DB_DSN`` names (an operator's, or ``make run``'s), with the same
rules as the API (``sluice.domain.systems``): a name registered before keeps its id, and a wanted id that is taken is
an error, never silently another id. ``import`` goes through the API itself (``POST /api/v1/systems``), as a tenant
migrating hundreds of systems would, row by row, idempotently: a file imported twice creates nothing the second time.
"""

import csv
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, TextIO
from uuid import UUID

import psycopg
from pydantic import ValidationError

from sluice.adapters.systems import TimescaleSystemStore
from sluice.domain.systems import register_system
from sluice.errors import RequestError
from sluice.models.api import SystemCreate


@dataclass(frozen=True, slots=True)
class RegisteredSystem:
    """One row of ``systems``."""

    id: UUID
    tenant_id: str
    name: str
    created_at: datetime


class SystemRegistrationError(Exception):
    """A system that cannot be registered as asked (its id or name taken, its name unusable)."""


def add_system(
    conn: psycopg.Connection[Any], tenant_id: str, name: str, system_id: UUID | None = None
) -> tuple[RegisteredSystem, bool]:
    """Register ``name`` for the tenant, with ``system_id`` when given; a name registered before keeps its id. True
    when the system is new. SystemRegistrationError when the id is another system's or the name another id's."""
    if not tenant_id.strip() or not name.strip():
        raise ValueError("a system needs a tenant and a name")
    try:
        request = SystemCreate(name=name, id=system_id)
    except ValidationError as exc:
        reasons = "; ".join(error["msg"] for error in exc.errors(include_url=False))
        raise SystemRegistrationError(f"the name {name!r} cannot be used: {reasons}") from None
    try:
        registered = register_system(TimescaleSystemStore(lambda: conn), tenant_id, request)
    except RequestError as exc:
        reasons = "; ".join(detail.reason for detail in exc.details)
        raise SystemRegistrationError(f"{exc.code}: {exc.message}" + (f" ({reasons})" if reasons else "")) from None
    system = registered.system
    return RegisteredSystem(system.id, system.tenant_id, system.name, system.created_at), registered.created


def list_systems(conn: psycopg.Connection[Any], tenant_id: str) -> list[RegisteredSystem]:
    """The tenant's systems, oldest first."""
    rows = conn.execute(
        "SELECT id, tenant_id, name, created_at FROM systems WHERE tenant_id = %s ORDER BY created_at, name",
        (tenant_id,),
    ).fetchall()
    return [RegisteredSystem(*row) for row in rows]


# --- import through the API ---------------------------------------------------------------------------------------

CREATED, EXISTS, INVALID = "created", "exists", "invalid"
# The outcomes that leave a row unregistered: the import's exit status is 1 when any row has one.
FAILED: Final = frozenset({"name_taken", "system_id_taken", INVALID, "failed"})
# A 503 (the database briefly away) is sent again this many times, after its Retry-After.
UNAVAILABLE_ATTEMPTS = 5
COLUMNS: Final = ("id", "name")


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer: status, Retry-After (seconds, when given) and the JSON body (None when it is not JSON)."""

    status: int
    retry_after_s: int | None
    body: Any


@dataclass(frozen=True, slots=True)
class RowOutcome:
    """What became of one row of the file: its line, outcome, and the system id or the reason."""

    line: int
    outcome: str
    system_id: str | None
    name: str
    reason: str = ""

    def __str__(self) -> str:
        shown = f"line {self.line}: {self.outcome:<15} {self.system_id or '-':<36}  {self.name}"
        return f"{shown}  ({self.reason})" if self.reason else shown


class ImportAbortedError(Exception):
    """The API refused the caller itself (401, 403) or could not be reached: no further row would fare better."""


Send = Callable[[dict[str, Any]], Answer]


def api_sender(api: str, token: str, timeout_s: float = 30.0) -> Send:
    """POST a body to ``<api>/api/v1/systems`` with the bearer token; the answer, whatever its status."""
    url = f"{api.rstrip('/')}/api/v1/systems"

    def send(body: dict[str, Any]) -> Answer:
        request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")  # noqa: S310
        request.add_header("Authorization", f"Bearer {token}")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as answer:  # noqa: S310  # nosec B310
                return _answer(answer.status, answer.headers.get("Retry-After"), answer.read())
        except urllib.error.HTTPError as error:
            return _answer(error.code, error.headers.get("Retry-After"), error.read())
        except (urllib.error.URLError, OSError) as exc:
            raise ImportAbortedError(f"the API at {api} could not be reached: {exc}") from exc

    return send


def _answer(status: int, retry_after: str | None, raw: bytes) -> Answer:
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        body = None
    wait = int(retry_after) if retry_after and retry_after.isdigit() else None
    return Answer(status, wait, body)


def csv_rows(source: TextIO) -> Iterator[tuple[int, dict[str, str] | str]]:
    """Each data row of an ``id,name`` CSV with its line number: the row, or why it cannot be read. The header must
    name the columns ``id`` and ``name`` (in either order, nothing else); an empty ``id`` lets Sluice choose one."""
    reader = csv.reader(source)
    header = next(reader, None)
    if header is None or sorted(column.strip().lower() for column in header) != sorted(COLUMNS):
        raise ValueError(f"the first line must be the header id,name (got {','.join(header or [])!r})")
    columns = [column.strip().lower() for column in header]
    for values in reader:
        if not any(value.strip() for value in values):
            continue  # a blank line
        if len(values) != len(columns):
            yield reader.line_num, f"{len(values)} fields, expected 2 (id,name; quote a name holding a comma)"
            continue
        yield reader.line_num, dict(zip(columns, values, strict=True))


def register_row(send: Send, line: int, row: dict[str, str], sleep: Callable[[float], None]) -> RowOutcome:
    """Register one row through the API, waiting out rate limits and brief outages; its outcome."""
    body: dict[str, Any] = {"name": row["name"]}
    if row["id"].strip():
        body["id"] = row["id"].strip()
    unavailable = 0
    while True:
        answer = send(body)
        if answer.status == 429 or (answer.status == 503 and unavailable < UNAVAILABLE_ATTEMPTS):
            unavailable += answer.status == 503
            sleep(answer.retry_after_s or 1)
            continue
        break
    error = (answer.body or {}).get("error") if isinstance(answer.body, dict) else None
    if answer.status in {200, 201}:
        outcome = CREATED if answer.status == 201 else EXISTS
        return RowOutcome(line, outcome, answer.body["id"], answer.body["name"])
    reason = _reason(error) if error else f"HTTP {answer.status}"
    if answer.status in {401, 403}:
        raise ImportAbortedError(f"the API refused the token ({answer.status}): {reason}")
    if answer.status == 409 and error is not None:
        return RowOutcome(line, str(error["code"]), body.get("id"), row["name"], reason)
    if answer.status == 400:
        return RowOutcome(line, INVALID, body.get("id"), row["name"], reason)
    return RowOutcome(line, "failed", body.get("id"), row["name"], reason)


def _reason(error: dict[str, Any]) -> str:
    details = [f"{detail.get('field')}: {detail.get('reason')}" for detail in error.get("details") or []]
    return "; ".join(details) or str(error.get("message"))


def import_systems(
    path: Path, send: Send, out: Callable[[str], None], sleep: Callable[[float], None] = time.sleep
) -> list[RowOutcome]:
    """Register every row of the CSV at ``path`` through the API, printing each row's outcome as it is known."""
    outcomes: list[RowOutcome] = []
    with path.open(encoding="utf-8-sig", newline="") as source:
        for line, row in csv_rows(source):
            if isinstance(row, str):
                outcome = RowOutcome(line, INVALID, None, "", row)
            else:
                outcome = register_row(send, line, row, sleep)
            outcomes.append(outcome)
            out(str(outcome))
    return outcomes


def summary(outcomes: list[RowOutcome]) -> str:
    """One line: how many rows, and how many of each outcome."""
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
    shown = ", ".join(f"{count} {name}" for name, count in sorted(counts.items()))
    return f"{len(outcomes)} row(s): {shown or 'none'}"
