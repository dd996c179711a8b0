"""TimescaleDB's systems register, and the figures shown with each system.

Writes rely on the table's unique constraints (the id, and the name per tenant): ``INSERT .. ON CONFLICT DO
NOTHING`` waits for a concurrent insert of the same id or name to commit, then inserts nothing, and the domain reads
the winner's row. A rename meeting another system's name is refused by the constraint, not by a read before it.

Each figure is one statement per page, over the page's ids: the newest reading and the readings of the last 24 hours
from ``readings_system_time_idx`` (system_id, time DESC), the pending rows from the partial index migration 0007
adds. ``readings_since`` counts index entries, so its cost grows with the readings of the window; it is kept apart
so that a per-minute rollup can answer it instead.
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

_COLUMNS: Final = sql.SQL(", ").join(map(sql.Identifier, ("id", "tenant_id", "name", "created_at")))
_INSERT: Final = sql.SQL(
    "INSERT INTO systems (id, tenant_id, name) VALUES (COALESCE(%s, gen_random_uuid()), %s, %s)"
    " ON CONFLICT DO NOTHING RETURNING {}"
).format(_COLUMNS)
_BY_ID: Final = sql.SQL("SELECT {} FROM systems WHERE id = %s").format(_COLUMNS)
_BY_NAME: Final = sql.SQL("SELECT {} FROM systems WHERE tenant_id = %s AND name = %s").format(_COLUMNS)
_TENANT_SYSTEM: Final = sql.SQL("SELECT {} FROM systems WHERE tenant_id = %s AND id = %s").format(_COLUMNS)
# Served by the (tenant_id, name) unique index, in its order.
_PAGE: Final = sql.SQL("SELECT {} FROM systems WHERE tenant_id = %s AND name > %s ORDER BY name LIMIT %s").format(
    _COLUMNS
)
_FIRST_PAGE: Final = sql.SQL("SELECT {} FROM systems WHERE tenant_id = %s ORDER BY name LIMIT %s").format(_COLUMNS)
_RENAME: Final = sql.SQL("UPDATE systems SET name = %s WHERE tenant_id = %s AND id = %s RETURNING {}").format(_COLUMNS)
# ORDER BY .. LIMIT 1 rather than max(): TimescaleDB then walks the chunks newest first and stops at the first entry.
_LAST_READINGS: LiteralString = (
    "SELECT page.id, (SELECT time FROM readings WHERE system_id = page.id ORDER BY time DESC LIMIT 1)"
    " FROM unnest(%s::uuid[]) AS page(id)"
)
_READINGS_SINCE: LiteralString = (
    "SELECT page.id, (SELECT count(*) FROM readings WHERE system_id = page.id AND time >= %s)"
    " FROM unnest(%s::uuid[]) AS page(id)"
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

    def insert(self, tenant_id: str, name: str, system_id: UUID | None) -> SystemRow | None:
        """Insert the system; None when its id or name is taken (by a row committed before or during this insert)."""
        return self._one("registering a system", _INSERT, (system_id, tenant_id, name))

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

    def rename(self, tenant_id: str, system_id: UUID, name: str) -> SystemRow | None:
        """Rename the tenant's system; NameTakenError when another of its systems has the name."""
        try:
            return self._one("renaming a system", _RENAME, (name, tenant_id, system_id))
        except psycopg.errors.UniqueViolation:
            raise NameTakenError(
                f"the tenant has a system named {name!r} already",
                [Problem(field="name", reason="another system of this tenant has this name")],
            ) from None

    def figures(self, tenant_id: str, system_ids: Sequence[UUID], since: datetime) -> Mapping[UUID, SystemFigures]:
        """Each system's newest reading, readings since ``since`` and pending quarantined rows."""
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
        """Readings stored for each system with timestamps from ``since`` on (an index range count per system)."""
        with database_faults("counting the systems' readings"):
            return dict(self._connection().execute(_READINGS_SINCE, (since, system_ids)).fetchall())

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
    return SystemRow(id=row["id"], tenant_id=row["tenant_id"], name=row["name"], created_at=row["created_at"])
