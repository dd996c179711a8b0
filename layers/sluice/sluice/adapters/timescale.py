"""TimescaleDB: the worker's connection, the systems it checks, and each chunk's exactly-once write.

A chunk is one transaction: its ledger row first (a redelivered chunk finds it and writes nothing; a concurrent
twin waits on the row lock and then finds it), then the valid rows, the quarantine rows and the chunk's counts.
The valid rows are COPYed straight into ``readings`` under a savepoint: duplicates inside the chunk were already
caught in Python, so the unique index rejects the COPY only when a reading is already stored. Then, and only
then, the chunk takes the slower path: COPY into a staging table and ``INSERT .. ON CONFLICT DO NOTHING
RETURNING``, and the rows not returned are quarantined as duplicates. The readings actually inserted are folded
into minute cells and added to the rollups (sluice.adapters.rollups) before the transaction commits, so the rollups
hold each stored reading exactly once, as the ledger does.
"""

import json
import ssl
from collections.abc import Callable, Iterable
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
from sluice.domain.chunks import ChunkStream, QuarantineRow, inserted_and_duplicates
from sluice.domain.load import LoadCounts
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
_CLAIM_CHUNK: LiteralString = (
    "INSERT INTO ingest_ledger (job_id, chunk_no, tenant_id) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"
)
_RECORD_COUNTS: LiteralString = (
    "UPDATE ingest_ledger SET total_readings = %s, inserted_readings = %s, quarantined_readings = %s,"
    " duplicate_readings = %s, committed_at = now() WHERE job_id = %s AND chunk_no = %s"
)


def _identity(text: str) -> str:
    return text


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

    def __init__(self, connector: DatabaseConnector, *, keep_rollups: bool = True) -> None:
        self._connector = connector
        # Off only in the worker benchmark, which measures what keeping them costs.
        self._keep_rollups = keep_rollups

    def tenant_systems(self, tenant_id: str) -> set[UUID]:
        """The ids of every system of ``tenant_id`` (read once per object: a tenant has thousands at most)."""
        rows = self._connector.connection().execute("SELECT id FROM systems WHERE tenant_id = %s", (tenant_id,))
        return {row[0] for row in rows}

    def committed_chunks(self, job_id: UUID) -> set[int]:
        """The chunk numbers of a job already in the ledger."""
        rows = self._connector.connection().execute("SELECT chunk_no FROM ingest_ledger WHERE job_id = %s", (job_id,))
        return {row[0] for row in rows}

    def write_chunk(self, job: Job, chunk: ChunkStream) -> bool:
        """Write a chunk with its ledger row in one transaction; False when the ledger already had it."""
        conn = self._connector.connection()
        with conn.transaction():
            if conn.execute(_CLAIM_CHUNK, (job.job_id, chunk.chunk_no, job.tenant_id)).rowcount == 0:
                return False
            duplicates, cells = self._insert_readings(conn, chunk)
            if self._keep_rollups:
                add_to_rollups(conn, cells)
            quarantine = chunk.quarantine + duplicates
            self._insert_quarantine(conn, job, quarantine)
            conn.execute(
                _RECORD_COUNTS,
                (
                    chunk.total,
                    len(chunk.rows) - len(duplicates),
                    len(quarantine),
                    sum(1 for row in quarantine if row.reason == "duplicate"),
                    job.job_id,
                    chunk.chunk_no,
                ),
            )
        return True

    def job_counts(self, job_id: UUID) -> LoadCounts:
        """A job's counts, summed from its ledger rows."""
        row = (
            self._connector.connection()
            .execute(
                "SELECT count(*), coalesce(sum(total_readings), 0), coalesce(sum(inserted_readings), 0),"
                " coalesce(sum(quarantined_readings), 0), coalesce(sum(duplicate_readings), 0)"
                " FROM ingest_ledger WHERE job_id = %s",
                (job_id,),
            )
            .fetchone()
        )
        assert row is not None  # noqa: S101 - an aggregate always returns a row  # nosec B101
        return LoadCounts(*(int(value) for value in row))

    def quarantine_reasons(self, job_id: UUID) -> dict[QuarantineReason, int]:
        """A job's quarantined readings counted by reason; they are written in the transaction of their chunk's
        ledger row, so they add up to the ledger's count (reviews change a row's status, never its reason)."""
        rows = self._connector.connection().execute(
            "SELECT reason, count(*) FROM quarantined_readings WHERE job_id = %s GROUP BY reason", (job_id,)
        )
        return {QuarantineReason(reason): int(count) for reason, count in rows}

    def _insert_readings(self, conn: Connection, chunk: ChunkStream) -> tuple[list[QuarantineRow], MinuteCells]:
        """COPY the valid rows into ``readings`` as they are judged; return the ones found already stored, as
        quarantine rows, and the minute cells of the ones inserted."""
        try:
            with conn.transaction(), conn.cursor() as cursor, cursor.copy(_COPY_READINGS) as copy:
                copy.set_types(READING_TYPES)
                write_row = copy.write_row
                for row in chunk.valid_rows():
                    write_row(row)
                # Folded before the COPY ends, while the server still works through the last rows sent.
                cells = self._cells(cast(list[ReadingRow], chunk.rows))
        except psycopg.errors.UniqueViolation:
            chunk.finish()
            return self._insert_skipping_stored(conn, chunk)
        return [], cells

    def _insert_skipping_stored(self, conn: Connection, chunk: ChunkStream) -> tuple[list[QuarantineRow], MinuteCells]:
        with conn.cursor() as cursor:
            with cursor.copy(_COPY_STAGING) as copy:
                copy.set_types(READING_TYPES)
                for row in chunk.rows:
                    copy.write_row(row)
            inserted: set[tuple[int, int, datetime]] = {
                (system_id.int, sensor_id.int, time)
                for system_id, sensor_id, time in cursor.execute(_INSERT_FROM_STAGING)
            }
        stored, duplicates = inserted_and_duplicates(chunk, inserted)
        return duplicates, self._cells(cast(list[ReadingRow], stored))

    def _cells(self, rows: list[ReadingRow]) -> MinuteCells:
        """The minute cells of inserted rows (ValidReading's fields, then the system and the job: READING_COLUMNS's
        order, ReadingRow's shape); none when the rollups are off."""
        return minute_cells(rows if self._keep_rollups else ())

    def _insert_quarantine(self, conn: Connection, job: Job, rows: list[QuarantineRow]) -> None:
        if not rows:
            return
        with conn.cursor() as cursor, cursor.copy(_COPY_QUARANTINE) as copy:
            copy.set_types(QUARANTINE_TYPES)
            for row in rows:
                copy.write_row(
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
