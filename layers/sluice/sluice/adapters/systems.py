"""TimescaleDB's systems register, and the figures shown with each system.

Writes rely on the table's unique constraints (the id, and the name per tenant): ``INSERT .. ON CONFLICT DO
NOTHING`` waits for a concurrent insert of the same id or name to commit, then inserts nothing, and the domain reads
the winner's row. A rename meeting another system's name is refused by the constraint, not by a read before it.

Each figure is one statement per page, over the page's ids, and none reads ``readings``: the newest reading is the
newest ``last_time`` of the system's sensors in ``sensor_latest`` (one row per sensor), the readings of the last 24
hours the sum of ``count`` over the system's minutes of ``readings_1m`` (a row per sensor and minute, whatever the
readings' rate), and the pending rows come from the partial index migration 0007 adds. The worker and the review
keep both tables in the transaction that stores the readings (migration 0009), so the figures are exact.
"""

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Final, LiteralString
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from sluice.adapters.quarantine import database_faults
from sluice.domain.systems import SystemFigures, SystemRow, SystemStore
from sluice.errors import NameTakenError, Problem

_COLUMNS: Final = sql.SQL(", ").join(
    map(sql.Identifier, ("id", "tenant_id", "name", "created_at", "silent_after_seconds"))
)
_INSERT: Final = sql.SQL(
    "INSERT INTO systems (id, tenant_id, name, silent_after_seconds)"
    " VALUES (COALESCE(%s, gen_random_uuid()), %s, %s, %s) ON CONFLICT DO NOTHING RETURNING {}"
).format(_COLUMNS)
_BY_ID: Final = sql.SQL("SELECT {} FROM systems WHERE id = %s").format(_COLUMNS)
_BY_NAME: Final = sql.SQL("SELECT {} FROM systems WHERE tenant_id = %s AND name = %s").format(_COLUMNS)
_TENANT_SYSTEM: Final = sql.SQL("SELECT {} FROM systems WHERE tenant_id = %s AND id = %s").format(_COLUMNS)
# Served by the (tenant_id, name) unique index, in its order.
_PAGE: Final = sql.SQL("SELECT {} FROM systems WHERE tenant_id = %s AND name > %s ORDER BY name LIMIT %s").format(
    _COLUMNS
)
_FIRST_PAGE: Final = sql.SQL("SELECT {} FROM systems WHERE tenant_id = %s ORDER BY name LIMIT %s").format(_COLUMNS)
# A column not sent keeps its value (the registrar may update both columns: migrations 0007 and 0009).
_UPDATE: Final = sql.SQL(
    "UPDATE systems SET name = COALESCE(%s, name), silent_after_seconds = COALESCE(%s, silent_after_seconds)"
    " WHERE tenant_id = %s AND id = %s RETURNING {}"
).format(_COLUMNS)
# By the primary key, which leads with system_id: a few rows per system, one per sensor.
_LAST_READINGS: LiteralString = (
    "SELECT system_id, max(last_time) FROM sensor_latest WHERE system_id = ANY(%s) GROUP BY system_id"
)
# One pass over the chunks (30 days each) that hold the window, for the whole page: a subquery per system fetches
# each system's rows from the heap apart (``count`` is not in the key's index), which measured 1.5-3x slower.
_READINGS_SINCE: LiteralString = (
    "SELECT system_id, sum(count) FROM readings_1m WHERE system_id = ANY(%s) AND bucket >= %s GROUP BY system_id"
)
# Only this tenant's rows: another tenant's readings naming the id (system_not_found there) are not this system's.
_PENDING: LiteralString = (
    "SELECT system_id, count(*) FROM quarantined_readings"
    " WHERE tenant_id = %s AND system_id = ANY(%s) AND review_status = 'pending' GROUP BY system_id"
)


class TimescaleSystemStore(SystemStore):
    """Systems of every tenant; each method is scoped as its name and arguments say."""

    def __init__(self, connection: Callable[[], psycopg.Connection[Any]]) -> None:
        # The connector's ``connection`` in a function; the CLI's own connection in tools.
        self._connection = connection

    def insert(self, tenant_id: str, name: str, system_id: UUID | None, silent_after_seconds: int) -> SystemRow | None:
        """Insert the system; None when its id or name is taken (by a row committed before or during this insert)."""
        return self._one("registering a system", _INSERT, (system_id, tenant_id, name, silent_after_seconds))

    def by_id(self, system_id: UUID) -> SystemRow | None:
        """The system with this id, whichever tenant's."""
        return self._one("reading a system", _BY_ID, (system_id,))

    def by_name(self, tenant_id: str, name: str) -> SystemRow | None:
        """The tenant's system of this name."""
        return self._one("reading a system", _BY_NAME, (tenant_id, name))

    def tenant_system(self, tenant_id: str, system_id: UUID) -> SystemRow | None:
        """The tenant's system with this id."""
        return self._one("reading a system", _TENANT_SYSTEM, (tenant_id, system_id))

    def list_rows(self, tenant_id: str, limit: int, after_name: str | None) -> list[SystemRow]:
        """The tenant's systems by name, after ``after_name``."""
        query, params = (
            (_FIRST_PAGE, (tenant_id, limit)) if after_name is None else (_PAGE, (tenant_id, after_name, limit))
        )
        with database_faults("listing systems"), self._cursor() as cursor:
            return [system_row(row) for row in cursor.execute(query, params)]

    def update(
        self, tenant_id: str, system_id: UUID, name: str | None, silent_after_seconds: int | None
    ) -> SystemRow | None:
        """Set the tenant's system's name and silence, each unless None; NameTakenError when another of its
        systems has the name."""
        try:
            return self._one("changing a system", _UPDATE, (name, silent_after_seconds, tenant_id, system_id))
        except psycopg.errors.UniqueViolation:
            raise NameTakenError(
                f"the tenant has a system named {name!r} already",
                [Problem(field="name", reason="another system of this tenant has this name")],
            ) from None

    def figures(self, tenant_id: str, system_ids: Sequence[UUID], since: datetime) -> Mapping[UUID, SystemFigures]:
        """Each system's newest reading, readings in the minutes from ``since`` on and pending quarantined rows."""
        if not system_ids:
            return {}
        ids = list(system_ids)
        with database_faults("reading the systems' figures"):
            conn = self._connection()
            last = dict(conn.execute(_LAST_READINGS, (ids,)).fetchall())
            recent = self.readings_since(ids, since)
            pending = dict(conn.execute(_PENDING, (tenant_id, ids)).fetchall())
        return {
            system_id: SystemFigures(
                last_reading_at=last.get(system_id),
                readings_24h=recent.get(system_id, 0),
                pending_quarantine=pending.get(system_id, 0),
            )
            for system_id in ids
        }

    def readings_since(self, system_ids: list[UUID], since: datetime) -> dict[UUID, int]:
        """Readings stored for each system in the minutes that begin at ``since`` or later (``readings_1m``)."""
        with database_faults("counting the systems' readings"):
            return dict(self._connection().execute(_READINGS_SINCE, (system_ids, since)).fetchall())

    def _one(self, doing: str, query: sql.Composed, params: tuple[Any, ...]) -> SystemRow | None:
        with database_faults(doing), self._cursor() as cursor:
            row = cursor.execute(query, params).fetchone()
        return None if row is None else system_row(row)

    @contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        with self._connection().cursor(row_factory=dict_row) as cursor:
            yield cursor


def system_row(row: dict[str, Any]) -> SystemRow:
    """A ``systems`` row read with ``dict_row``."""
    return SystemRow(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        created_at=row["created_at"],
        silent_after_seconds=row["silent_after_seconds"],
    )
