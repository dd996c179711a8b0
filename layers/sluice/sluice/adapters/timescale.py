"""TimescaleDB: the worker's connection, the systems it checks, and the exactly-once write of its chunks.

One transaction writes one chunk of a large object, or a group of chunks (an invocation's small objects, one chunk
each, of several jobs): their ledger rows first (a redelivered chunk finds its row and is not written; a concurrent
twin waits on the row lock and then finds it), then the valid rows of all of them in one COPY straight into
``readings``, under a savepoint, then their quarantine rows, and last the rollups, the counts and the commit. The
unique index refuses that COPY only when a reading is stored already (duplicates inside a chunk were caught in
Python) or two chunks of the group share one. Then, and only then, the stored keys are looked up through the index
and the rest COPYed; the others are quarantined as duplicates. Only a concurrent loader storing one of those keys in
between sends the rows through a staging table and ``INSERT .. ON CONFLICT DO NOTHING``. The readings actually
inserted are folded into minute cells and added to the rollups (sluice.adapters.rollups) before the commit, so the
rollups hold each stored reading exactly once, as the ledger does.
"""

import json
import ssl
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, LiteralString, cast
from uuid import UUID

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

from sluice.adapters.aws import secretsmanager_client
from sluice.adapters.rollups import add_to_rollups
from sluice.domain.chunks import QuarantineRow, inserted_and_duplicates
from sluice.domain.load import ChunkWrite, LoadCounts
from sluice.domain.rollups import MinuteCells, ReadingRow, minute_cells
from sluice.errors import StorageUnavailableError
from sluice.models.jobs import Job
from sluice.models.readings import QuarantineReason
from sluice.settings import FunctionDatabaseSettings

Connection = psycopg.Connection[tuple[Any, ...]]

READING_COLUMNS: Final = ("time", "sensor_id", "value", "unit", "quality", "system_id", "job_id")
READING_TYPES: Final = ("timestamptz", "uuid", "float8", "text", "int2", "uuid", "uuid")
QUARANTINE_COLUMNS: Final = (
    "tenant_id",
    "job_id",
    "position",
    "system_id",
    "sensor_id",
    "time",
    "value",
    "unit",
    "quality",
    "raw",
    "raw_bytes",
    "raw_sha256",
    "reason",
    "reason_details",
)
QUARANTINE_TYPES: Final = (
    "text",
    "uuid",
    "int4",
    "uuid",
    "uuid",
    "timestamptz",
    "float8",
    "text",
    "int2",
    "jsonb",
    "int8",
    "text",
    "text",
    "jsonb",
)
STAGING_TABLE: Final = "sluice_staging"
# SLUICE_DB_SSLROOTCERT's value for the platform's trust store (see root_certificate_file).
SYSTEM_TRUST_STORE: Final = "system"
# The sslmodes in which libpq checks the server's certificate against sslrootcert.
_VERIFYING_SSLMODES: Final = frozenset({"verify-ca", "verify-full"})


def _columns(names: Iterable[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(name) for name in names)


_COPY_READINGS = sql.SQL("COPY readings ({}) FROM STDIN (FORMAT BINARY)").format(_columns(READING_COLUMNS))
_COPY_STAGING = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
    sql.Identifier(STAGING_TABLE), _columns(READING_COLUMNS)
)
_INSERT_FROM_STAGING = sql.SQL(
    "INSERT INTO readings ({cols}) SELECT {cols} FROM {staging} ON CONFLICT DO NOTHING"
    " RETURNING system_id, sensor_id, time"
).format(cols=_columns(READING_COLUMNS), staging=sql.Identifier(STAGING_TABLE))
_COPY_QUARANTINE = sql.SQL("COPY quarantined_readings ({}) FROM STDIN (FORMAT BINARY)").format(
    _columns(QUARANTINE_COLUMNS)
)
# ON COMMIT DELETE ROWS: the staging rows of one chunk never meet the next chunk's.
_CREATE_STAGING = sql.SQL(
    "CREATE TEMPORARY TABLE IF NOT EXISTS {} (LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
).format(sql.Identifier(STAGING_TABLE))
# Sorted, so that two loaders of overlapping chunks take the ledger's row locks in one order.
_CLAIM_CHUNKS: LiteralString = (
    "INSERT INTO ingest_ledger (job_id, chunk_no, tenant_id)"
    " SELECT * FROM unnest(%b::uuid[], %b::int4[], %b::text[]) ORDER BY 1, 2"
    " ON CONFLICT DO NOTHING RETURNING job_id, chunk_no"
)
_RECORD_COUNTS: LiteralString = (
    "UPDATE ingest_ledger AS l SET total_readings = c.total, inserted_readings = c.inserted,"
    " quarantined_readings = c.quarantined, duplicate_readings = c.duplicates, committed_at = now()"
    " FROM unnest(%b::uuid[], %b::int4[], %b::int4[], %b::int4[], %b::int4[], %b::int4[])"
    " AS c (job_id, chunk_no, total, inserted, quarantined, duplicates)"
    " WHERE l.job_id = c.job_id AND l.chunk_no = c.chunk_no"
)
# The keys of a write already in ``readings``, looked up one by one through the unique index: the lateral subquery
# (kept a subquery by OFFSET 0) makes the keys the outer side of a nested loop, whatever the statistics say. Joined
# plainly, a hypertable chunk just created (no statistics yet, so "one row" in the keys' time range) was put on the
# outer side, and every row in the range scanned all the keys: 30 s for 10,000 keys. The time range leaves out
# the hypertable chunks no key can be in.
_STORED_KEYS: LiteralString = (
    "SELECT k.system_id, k.sensor_id, k.time"
    " FROM unnest(%b::uuid[], %b::uuid[], %b::timestamptz[]) AS k (system_id, sensor_id, time)"
    " CROSS JOIN LATERAL (SELECT FROM readings AS r WHERE r.system_id = k.system_id AND r.sensor_id = k.sensor_id"
    " AND r.time = k.time AND r.time BETWEEN %b AND %b OFFSET 0) AS stored"
)
_DUPLICATE: Final = QuarantineReason.DUPLICATE
_NO_COUNTS: Final = LoadCounts(chunks=0, total=0, inserted=0, quarantined=0, duplicates=0)


def _identity(text: str) -> str:
    return text


@dataclass(frozen=True, slots=True)
class _Ending:
    """What a transaction writes last: the rollup cells and the ledger counts (as columns)."""

    cells: MinuteCells
    counts: list[list[object]]


def _roll_back(conn: Connection) -> None:
    """End a failed transaction, if the connection is still there to end it on."""
    if conn.closed or conn.broken:
        return
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.execute("ROLLBACK")


def _cells(rows: list[tuple[object, ...]]) -> MinuteCells:
    """The minute cells of inserted rows (ValidReading's fields, then the system and the job: READING_COLUMNS's
    order, ReadingRow's shape)."""
    return minute_cells(cast(list[ReadingRow], rows))


def _key(row: tuple[object, ...]) -> tuple[int, int, datetime]:
    """A row's identity in ``readings``: (system, sensor, time), as integers where they are UUIDs (they hash in C)."""
    return (row[5].int, row[1].int, row[0])  # type: ignore[attr-defined, return-value]


class DatabaseConnector:
    """One connection per execution environment, reused while warm and checked before each use."""

    def __init__(
        self,
        dsn: Callable[[], str],
        statement_timeout_ms: int,
        *,
        application_name: str,
        prepare: Callable[[Connection], None] | None = None,
        connect_timeout_s: int = 5,
    ) -> None:
        self._dsn = dsn
        self._statement_timeout_ms = statement_timeout_ms
        self._application_name = application_name
        self._prepare = prepare
        self._connect_timeout_s = connect_timeout_s
        self._connection: Connection | None = None

    def connection(self) -> Connection:
        """The kept connection, or a new one when there is none (or it is known to be closed)."""
        kept = self._connection
        if kept is not None and not kept.closed and not kept.broken:
            return kept
        return self._connect()

    def checked_connection(self) -> Connection:
        """A connection known to answer: the kept one if a trivial query goes through, a new one otherwise.
        Called once per message; a connection the server dropped while the environment was frozen is replaced."""
        kept = self._connection
        if kept is not None and not kept.closed:
            try:
                kept.execute("SELECT 1")
            except psycopg.Error:
                kept.close()
            else:
                return kept
        return self._connect()

    def _connect(self) -> Connection:
        self._connection = None
        connection: Connection = psycopg.connect(
            self._dsn(),
            autocommit=True,
            connect_timeout=self._connect_timeout_s,
            # UTC, so timestamps read back compare equal to the ones written; a hung statement fails the message
            # (and is retried) instead of eating the invocation.
            options=f"-c statement_timeout={self._statement_timeout_ms} -c TimeZone=UTC",
            application_name=self._application_name,
        )
        if self._prepare is not None:
            self._prepare(connection)
        self._connection = connection
        return connection

    def close(self) -> None:
        """Close the kept connection, if any."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def create_staging_table(connection: Connection) -> None:
    """The worker's per-connection staging table, for chunks whose COPY the unique index refused."""
    connection.execute(_CREATE_STAGING)


class TimescaleReadingSink:
    """The worker's database side: systems, the ledger, readings and quarantine."""

    def __init__(self, connector: DatabaseConnector) -> None:
        self._connector = connector
        # Commits are sent from this thread while the worker reads on (see write_chunks); one at a time.
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sluice-commit")

    def tenant_systems(self, tenant_id: str) -> set[UUID]:
        """The ids of every system of ``tenant_id`` (read once per object: a tenant has thousands at most)."""
        rows = self._connector.connection().execute("SELECT id FROM systems WHERE tenant_id = %s", (tenant_id,))
        return {row[0] for row in rows}

    def committed_chunks(self, job_id: UUID) -> set[int]:
        """The chunk numbers of a job already in the ledger."""
        rows = self._connector.connection().execute("SELECT chunk_no FROM ingest_ledger WHERE job_id = %s", (job_id,))
        return {row[0] for row in rows}

    def write_chunks(self, writes: Sequence[ChunkWrite], meanwhile: Callable[[], None] | None = None) -> list[bool]:
        """Write chunks (one job's, or one each of several jobs) with their ledger rows in one transaction; per
        chunk, False when the ledger already had it (its rows are then read past, not written). ``meanwhile`` runs
        while the database adds the rollups and commits (the worker reads its next chunk then)."""
        conn = self._connector.connection()
        # Begun by hand, so that the commit can be sent from another thread (the nested transactions of the COPYs
        # below are savepoints in it).
        conn.execute("BEGIN")
        try:
            claimed = self._claim(conn, writes)
            # A chunk named twice in one call is written once, the first time: its ledger row is one.
            written: list[bool] = []
            mine: list[ChunkWrite] = []
            for job, chunk in writes:
                key = (job.job_id, chunk.chunk_no)
                written.append(key in claimed)
                if key in claimed:
                    claimed.discard(key)
                    mine.append((job, chunk))
                else:
                    chunk.skip()
            ending = self._write_claimed(conn, mine) if mine else None
            committing = self._committer.submit(self._commit, conn, ending)
            try:
                if meanwhile is not None:
                    meanwhile()
            finally:
                committing.result()
        except BaseException:
            _roll_back(conn)
            raise
        return written

    @staticmethod
    def _commit(conn: Connection, ending: "_Ending | None") -> None:
        """The chunks' rollups and ledger counts, and the commit, in one round trip."""
        with conn.pipeline():
            if ending is not None:
                add_to_rollups(conn, ending.cells)
                conn.execute(_RECORD_COUNTS, ending.counts)
            conn.execute("COMMIT")

    def _claim(self, conn: Connection, writes: Sequence[ChunkWrite]) -> set[tuple[UUID, int]]:
        """Insert the chunks' ledger rows; return those inserted (the others are committed already, or a twin
        holds them: this waits on its row lock, then finds them). Sorted, so that two loaders lock in one order."""
        keys = sorted({(job.job_id, chunk.chunk_no): job.tenant_id for job, chunk in writes}.items())
        rows = conn.execute(
            _CLAIM_CHUNKS,
            ([key[0] for key, _ in keys], [key[1] for key, _ in keys], [tenant for _, tenant in keys]),
        )
        return {(job_id, chunk_no) for job_id, chunk_no in rows}

    def _write_claimed(self, conn: Connection, writes: list[ChunkWrite]) -> "_Ending":
        """The claimed chunks' readings and quarantine rows; what is left to write before the commit."""
        results, cells = self._insert_readings(conn, writes)
        quarantine: list[tuple[Job, list[QuarantineRow]]] = []
        counts: list[tuple[UUID, int, int, int, int, int]] = []
        for (job, chunk), (inserted, stored_twice) in zip(writes, results, strict=True):
            rows = chunk.quarantine + stored_twice if stored_twice else chunk.quarantine
            quarantine.append((job, rows))
            duplicates = len(stored_twice) + sum(1 for row in chunk.quarantine if row.reason is _DUPLICATE)
            counts.append((job.job_id, chunk.chunk_no, chunk.total, inserted, len(rows), duplicates))
        self._insert_quarantine(conn, quarantine)
        return _Ending(cells, [list(column) for column in zip(*counts, strict=True)])

    def job_counts(self, job_ids: Sequence[UUID]) -> dict[UUID, LoadCounts]:
        """Each job's counts, summed from its ledger rows (zeros for a job with none)."""
        rows = self._connector.connection().execute(
            "SELECT job_id, count(*), sum(total_readings), sum(inserted_readings), sum(quarantined_readings),"
            " sum(duplicate_readings) FROM ingest_ledger WHERE job_id = ANY(%s) GROUP BY job_id",
            (list(job_ids),),
        )
        counts = {job_id: LoadCounts(*(int(value or 0) for value in sums)) for job_id, *sums in rows}
        return {job_id: counts.get(job_id, _NO_COUNTS) for job_id in job_ids}

    def quarantine_reasons(self, job_ids: Sequence[UUID]) -> dict[UUID, dict[QuarantineReason, int]]:
        """Each job's quarantined readings counted by reason; they are written in the transaction of their chunk's
        ledger row, so they add up to the ledger's count (reviews change a row's status, never its reason)."""
        rows = self._connector.connection().execute(
            "SELECT job_id, reason, count(*) FROM quarantined_readings WHERE job_id = ANY(%s) GROUP BY job_id, reason",
            (list(job_ids),),
        )
        reasons: dict[UUID, dict[QuarantineReason, int]] = {job_id: {} for job_id in job_ids}
        for job_id, reason, count in rows:
            reasons[job_id][QuarantineReason(reason)] = int(count)
        return reasons

    def _insert_readings(
        self, conn: Connection, writes: list[ChunkWrite]
    ) -> tuple[list[tuple[int, list[QuarantineRow]]], MinuteCells]:
        """COPY the chunks' valid rows into ``readings`` as they are judged, in one stream; return per chunk how many
        were inserted and the ones found already stored (as quarantine rows), and the minute cells of all inserted."""
        try:
            with conn.transaction(), conn.cursor() as cursor, cursor.copy(_COPY_READINGS) as copy:
                copy.set_types(READING_TYPES)
                write_row = copy.write_row
                for _, chunk in writes:
                    for row in chunk.valid_rows():
                        write_row(row)
                # Folded before the COPY ends, while the server still works through the last rows sent.
                cells = _cells([row for _, chunk in writes for row in chunk.rows])
        except psycopg.errors.UniqueViolation:
            for _, chunk in writes:
                chunk.finish()
            return self._insert_skipping_stored(conn, writes)
        return [(len(chunk.rows), []) for _, chunk in writes], cells

    def _insert_skipping_stored(
        self, conn: Connection, writes: list[ChunkWrite]
    ) -> tuple[list[tuple[int, list[QuarantineRow]]], MinuteCells]:
        """Some rows are stored already (a batch sent twice, a file dropped again), or two chunks of the write
        share a reading: look the stored keys up through the unique index and COPY only the rest, each key once (a
        reading a chunk shares with an earlier one is a stored duplicate there, as it would be had the chunks
        been written one after the other). Should a concurrent loader store one of those meanwhile, the slower
        path decides row by row (``INSERT .. ON CONFLICT DO NOTHING`` from a staging table)."""
        taken = self._stored_keys(conn, [row for _, chunk in writes for row in chunk.rows])
        fresh_by_chunk: list[list[tuple[object, ...]]] = []
        for _, chunk in writes:
            fresh: list[tuple[object, ...]] = []
            for row in chunk.rows:
                key = _key(row)
                if key not in taken:
                    taken.add(key)
                    fresh.append(row)
            fresh_by_chunk.append(fresh)
        try:
            with conn.transaction(), conn.cursor() as cursor, cursor.copy(_COPY_READINGS) as copy:
                copy.set_types(READING_TYPES)
                for fresh in fresh_by_chunk:
                    for row in fresh:
                        copy.write_row(row)
            inserted_by_chunk = [{_key(row) for row in fresh} for fresh in fresh_by_chunk]
        except psycopg.errors.UniqueViolation:
            returned = self._insert_from_staging(conn, [row for fresh in fresh_by_chunk for row in fresh])
            inserted_by_chunk = [{key for row in fresh if (key := _key(row)) in returned} for fresh in fresh_by_chunk]
        results: list[tuple[int, list[QuarantineRow]]] = []
        kept: list[tuple[object, ...]] = []
        for (_, chunk), inserted in zip(writes, inserted_by_chunk, strict=True):
            stored_rows, duplicates = inserted_and_duplicates(chunk, inserted)
            kept += stored_rows
            results.append((len(stored_rows), duplicates))
        return results, _cells(kept)

    def _stored_keys(self, conn: Connection, rows: list[tuple[object, ...]]) -> set[tuple[int, int, datetime]]:
        """The (system, sensor, time) keys among ``rows`` that ``readings`` holds already."""
        if not rows:
            return set()
        times = [cast(datetime, row[0]) for row in rows]
        # Each key through an index even where a chunk's statistics are missing or stale (a scan of the chunk per
        # key would be the worst plan of all), and through a plain Append of the chunks the range leaves: the
        # ChunkAppend node's per-key runtime exclusion took 7.6 us a key against 1.9; for this statement only.
        with conn.pipeline():
            conn.execute("SET LOCAL enable_seqscan = off")
            conn.execute("SET LOCAL enable_bitmapscan = off")
            conn.execute("SET LOCAL timescaledb.enable_chunk_append = off")
            found = conn.execute(
                _STORED_KEYS,
                ([row[5] for row in rows], [row[1] for row in rows], times, min(times), max(times)),
                prepare=False,
            )
            conn.execute("RESET enable_seqscan")
            conn.execute("RESET enable_bitmapscan")
            conn.execute("RESET timescaledb.enable_chunk_append")
        return {(system_id.int, sensor_id.int, time) for system_id, sensor_id, time in found}

    def _insert_from_staging(self, conn: Connection, rows: list[tuple[object, ...]]) -> set[tuple[int, int, datetime]]:
        with conn.cursor() as cursor:
            with cursor.copy(_COPY_STAGING) as copy:
                copy.set_types(READING_TYPES)
                for row in rows:
                    copy.write_row(row)
            return {
                (system_id.int, sensor_id.int, time)
                for system_id, sensor_id, time in cursor.execute(_INSERT_FROM_STAGING)
            }

    def _insert_quarantine(self, conn: Connection, rows_by_job: list[tuple[Job, list[QuarantineRow]]]) -> None:
        if not any(rows for _, rows in rows_by_job):
            return
        with conn.cursor() as cursor, cursor.copy(_COPY_QUARANTINE) as copy:
            copy.set_types(QUARANTINE_TYPES)
            write_row = copy.write_row
            for job, rows in rows_by_job:
                for row in rows:
                    write_row(
                        (
                            job.tenant_id,
                            job.job_id,
                            row.position,
                            row.system_id,
                            row.sensor_id,
                            row.time,
                            row.value,
                            row.unit,
                            row.quality,
                            Jsonb(row.raw, dumps=_identity),
                            row.raw_bytes,
                            row.raw_sha256,
                            row.reason.value,
                            Jsonb(row.details, dumps=_identity),
                        )
                    )


def dsn_from_secret(secret_string: str, root_certificate: str = SYSTEM_TRUST_STORE) -> str:
    """A libpq DSN from a Secrets Manager secret in RDS's layout (host, port, username, password, dbname). TLS
    verifies the server's certificate and name (``verify-full``) against ``root_certificate`` unless the secret
    names a ``sslmode`` of its own (the local stack's cluster says ``disable``)."""
    secret = json.loads(secret_string)
    if not isinstance(secret, dict):
        raise TypeError(f"the secret is a JSON {type(secret).__name__}, not an object")
    sslmode = secret.get("sslmode", "verify-full")
    # A CA only means something to the modes that check one; libpq refuses sslrootcert=system beside weaker modes.
    roots = {"sslrootcert": root_certificate} if sslmode in _VERIFYING_SSLMODES else {}
    return make_conninfo(
        host=secret["host"],
        port=str(secret.get("port", 5432)),
        user=secret["username"],
        password=secret["password"],
        dbname=secret.get("dbname", "sluice"),
        sslmode=sslmode,
        **roots,
    )


def root_certificate_file(setting: str) -> str:
    """libpq's ``sslrootcert`` for a ``SLUICE_DB_SSLROOTCERT`` value: a path as it is; ``system`` as the CA bundle
    of the platform's trust store that Python's own OpenSSL uses (``SSL_CERT_FILE`` where set). Not libpq's own
    ``system``: psycopg's binary wheel bundles an OpenSSL whose default store (``/usr/lib/psycopg-openssl``)
    exists on no platform, so it would trust no certificate at all. Where Python finds no bundle either, libpq's
    ``system`` is left to try."""
    if setting != SYSTEM_TRUST_STORE:
        return setting
    return ssl.get_default_verify_paths().cafile or SYSTEM_TRUST_STORE


def database_dsn(settings: FunctionDatabaseSettings) -> str:
    """The DSN: from the Secrets Manager secret when one is configured (in AWS), else SLUICE_DB_DSN (the settings
    refuse to have neither)."""
    if settings.db_secret_arn is None:
        if settings.db_dsn is None:  # the settings' validator makes this unreachable; mypy cannot know
            raise StorageUnavailableError("no database configured (SLUICE_DB_SECRET_ARN)")
        return settings.db_dsn
    try:
        secret = secretsmanager_client().get_secret_value(SecretId=settings.db_secret_arn)["SecretString"]
    except (BotoCoreError, ClientError, KeyError) as exc:
        raise StorageUnavailableError(f"reading the database secret failed: {exc}") from exc
    try:
        return dsn_from_secret(secret, root_certificate_file(settings.db_sslrootcert))
    except (ValueError, KeyError, TypeError) as exc:
        # A fault of the deployment, not of the request: retried like an unreachable database, and logged.
        raise StorageUnavailableError(
            f"the database secret is not in RDS's layout (host, port, username, password, dbname): {exc!r}"
        ) from exc
