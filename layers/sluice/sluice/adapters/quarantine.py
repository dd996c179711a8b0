"""TimescaleDB's quarantine: listing rows, and each review as one transaction with the reading it replays.

A review locks its row (``SELECT .. FOR UPDATE``), so of two reviewers of one row the second waits, then finds the
row reviewed. The replayed reading goes in with ``ON CONFLICT DO NOTHING``: a reading already stored (or replayed
by another review a moment earlier) inserts nothing, and the review is refused rather than recorded. A reading that
does go in is added to the rollups in the same transaction (sluice.adapters.rollups).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final, LiteralString, cast

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from sluice.adapters.rollups import add_to_rollups
from sluice.adapters.timescale import QUARANTINE_COLUMNS, DatabaseConnector
from sluice.domain.review import Decide, QuarantineStore, Reviewed
from sluice.domain.rollups import ReadingRow, minute_cells
from sluice.errors import DuplicateReadingError, NotFoundError, Problem, StorageUnavailableError
from sluice.limits import MAX_RAW_BYTES
from sluice.models.api import QuarantineQuery
from sluice.models.quarantine import JobReviewCounts, QuarantinedReading, ReviewStatus
from sluice.models.readings import QuarantineReason

# A row as the worker writes it (QUARANTINE_COLUMNS), with its id and its review.
ROW_COLUMNS: Final = (
    "id",
    *QUARANTINE_COLUMNS,
    "review_status",
    "reviewed_by",
    "reviewed_at",
    "review_notes",
    "review_correction",
    "quarantined_at",
)
# A row written before migration 0006 kept its raw reading whole, however large; one such row could take an answer
# past Lambda's 6 MB on its own. Every answer shows it cut as the worker now cuts: a JSON string of the start of its
# JSON text (at most 6 bytes a character as JSON, so within MAX_RAW_BYTES), with that text's UTF-8 size and SHA-256.
_WHOLE_AND_LARGE = sql.SQL("raw_bytes IS NULL AND octet_length(raw::text) > {}").format(sql.Literal(MAX_RAW_BYTES))
_SHOWN: Final = {
    "raw": sql.SQL("CASE WHEN {} THEN to_jsonb(left(raw::text, {})) ELSE raw END AS raw").format(
        _WHOLE_AND_LARGE, sql.Literal(MAX_RAW_BYTES // 6)
    ),
    "raw_bytes": sql.SQL("CASE WHEN {} THEN octet_length(raw::text) ELSE raw_bytes END AS raw_bytes").format(
        _WHOLE_AND_LARGE
    ),
    "raw_sha256": sql.SQL(
        "CASE WHEN {} THEN encode(sha256(convert_to(raw::text, 'UTF8')), 'hex') ELSE raw_sha256 END AS raw_sha256"
    ).format(_WHOLE_AND_LARGE),
}
_COLUMNS = sql.SQL(", ").join(_SHOWN.get(name, sql.Identifier(name)) for name in ROW_COLUMNS)
_FILTERS: Final = ("job_id", "reason", "review_status", "system_id", "sensor_id")
_SELECT_ONE = sql.SQL("SELECT {} FROM quarantined_readings WHERE id = %s AND tenant_id = %s").format(_COLUMNS)
# The row, locked, and whether its system is its tenant's: one round trip. FOR UPDATE OF locks the row alone.
_LOCK_ONE = sql.SQL(
    "SELECT {}, EXISTS (SELECT 1 FROM systems WHERE systems.id = q.system_id AND systems.tenant_id = q.tenant_id)"
    " AS system_known FROM quarantined_readings AS q WHERE q.id = %s AND q.tenant_id = %s FOR UPDATE OF q"
).format(sql.SQL(", ").join(sql.Identifier("q", name) for name in ROW_COLUMNS))
_RECORD_REVIEW = sql.SQL(
    "UPDATE quarantined_readings SET review_status = %s, reviewed_by = %s, reviewed_at = now(),"
    " review_notes = %s, review_correction = %s WHERE id = %s RETURNING {}"
).format(_COLUMNS)
_REPLAY: LiteralString = (
    "INSERT INTO readings (time, sensor_id, value, unit, quality, system_id, job_id)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1"
)
_COUNT_REVIEW: LiteralString = (
    "INSERT INTO job_reviews AS counts (job_id, tenant_id, reviewed_readings, replayed_readings)"
    " VALUES (%s, %s, 1, %s) ON CONFLICT (job_id) DO UPDATE"
    " SET reviewed_readings = counts.reviewed_readings + 1,"
    " replayed_readings = counts.replayed_readings + excluded.replayed_readings, updated_at = now()"
    " RETURNING reviewed_readings, replayed_readings"
)


class TimescaleQuarantineStore(QuarantineStore):
    """Quarantined readings of every tenant; each method is scoped to the tenant it is given."""

    def __init__(self, connector: DatabaseConnector) -> None:
        self._connector = connector

    def list_rows(
        self, tenant_id: str, selection: QuarantineQuery, limit: int, before_id: int | None
    ) -> list[QuarantinedReading]:
        """The tenant's rows matching ``selection``, highest id first (served by the (tenant_id, id DESC) index, or
        by (tenant_id, sensor_id, id DESC) for one sensor's)."""
        conditions, params = _matching(tenant_id, selection)
        if before_id is not None:
            conditions.append(sql.SQL("id < %s"))
            params.append(before_id)
        query = sql.SQL("SELECT {} FROM quarantined_readings WHERE {} ORDER BY id DESC LIMIT %s").format(
            _COLUMNS, sql.SQL(" AND ").join(conditions)
        )
        with database_faults("listing quarantined readings"), self._cursor() as cursor:
            return [quarantined_reading(row) for row in cursor.execute(query, [*params, limit])]

    def count_rows(self, tenant_id: str, selection: QuarantineQuery) -> int:
        """How many of the tenant's rows match ``selection``: one COUNT over them all, through the same indexes."""
        conditions, params = _matching(tenant_id, selection)
        query = sql.SQL("SELECT count(*) FROM quarantined_readings WHERE {}").format(sql.SQL(" AND ").join(conditions))
        with database_faults("counting quarantined readings"), self._cursor() as cursor:
            row = cursor.execute(query, params).fetchone()
        return 0 if row is None else int(row["count"])

    def get_row(self, tenant_id: str, row_id: int) -> QuarantinedReading | None:
        """One row of the tenant, or None."""
        with database_faults("reading a quarantined reading"), self._cursor() as cursor:
            row = cursor.execute(_SELECT_ONE, (row_id, tenant_id)).fetchone()
        return None if row is None else quarantined_reading(row)

    def review_row(self, tenant_id: str, row_id: int, reviewer: str, notes: str | None, decide: Decide) -> Reviewed:
        """Lock, decide, replay, record and count, in one transaction (see the module's docstring)."""
        with database_faults("reviewing a quarantined reading"):
            conn = self._connector.connection()
            with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
                locked = cursor.execute(_LOCK_ONE, (row_id, tenant_id)).fetchone()
                if locked is None:
                    raise NotFoundError(f"no quarantined reading {row_id} in this tenant")
                row = quarantined_reading(locked)
                decision = decide(row, bool(locked["system_known"]))
                reading = decision.reading
                if reading is not None:
                    # decide() replays only readings of a known system, so the row names one.
                    stored = cast(ReadingRow, (*reading, row.system_id, row.job_id))
                    replayed = conn.execute(_REPLAY, stored).fetchone()
                    if replayed is None:
                        raise DuplicateReadingError(
                            f"quarantined reading {row_id} is already stored; reject it instead",
                            [Problem(field="timestamp", reason="readings holds this system's sensor at this instant")],
                        )
                    add_to_rollups(conn, minute_cells([stored]))
                correction = None if decision.correction is None else Jsonb(decision.correction)
                updated = cursor.execute(
                    _RECORD_REVIEW, (decision.status.value, reviewer, notes, correction, row_id)
                ).fetchone()
                totals = conn.execute(_COUNT_REVIEW, (row.job_id, tenant_id, int(reading is not None))).fetchone()
        if updated is None or totals is None:  # the row is locked by this transaction; both statements return one
            raise StorageUnavailableError(f"reviewing quarantined reading {row_id} returned nothing")
        return Reviewed(
            row=quarantined_reading(updated),
            counts=JobReviewCounts(job_id=row.job_id, reviewed=totals[0], replayed=totals[1]),
        )

    @contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        with self._connector.connection().cursor(row_factory=dict_row) as cursor:
            yield cursor


def _matching(tenant_id: str, selection: QuarantineQuery) -> tuple[list[sql.Composable], list[Any]]:
    """The conditions (and their parameters) of the tenant's rows that ``selection`` keeps."""
    conditions: list[sql.Composable] = [sql.SQL("tenant_id = %s")]
    params: list[Any] = [tenant_id]
    for name in _FILTERS:
        wanted = getattr(selection, name)
        if wanted is not None:
            conditions.append(sql.SQL("{} = %s").format(sql.Identifier(name)))
            params.append(str(wanted))
    return conditions, params


def quarantined_reading(row: dict[str, Any]) -> QuarantinedReading:
    """A ``quarantined_readings`` row read with ``dict_row``."""
    return QuarantinedReading(
        **{name: row[name] for name in ROW_COLUMNS if name not in {"reason", "review_status"}},
        reason=QuarantineReason(row["reason"]),
        review_status=ReviewStatus(row["review_status"]),
    )


@contextmanager
def database_faults(doing: str) -> Iterator[None]:
    """The database unreachable, or a statement over its timeout: 503, and the client sends the request again."""
    try:
        yield
    except psycopg.OperationalError as exc:
        raise StorageUnavailableError(f"{doing} failed: {exc}") from exc
