"""Migration 0004's roles on the real TimescaleDB. Each function does its whole job through its own code, connected
through its own secret as a login user that is a member of its group role; each role is refused what is not its
job; and the migration keeps to this database while the roles are the cluster's."""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any, LiteralString
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg import sql

from sluice.adapters.aws import secretsmanager_client
from sluice.adapters.migrations import SCHEMA_VERSION, Migration, MigrationRunner
from sluice.models.jobs import JobStatus
from sluice.settings import (
    get_health_settings,
    get_load_worker_settings,
    get_quarantine_settings,
    get_systems_settings,
)
from sluice_tools.local.stack import DatabaseLogin, ensure_database_logins, login_dsn, secret_from_dsn
from sluice_tools.local.template import StackContext, function_environment

from ..api_client import TENANT, call, claims
from ..lambdas import handler_module
from ..scratch import scratch_database
from ..worker_harness import WorkerHarness

GROUPS = ("sluice_worker", "sluice_reviewer", "sluice_registrar", "sluice_reader")
SENSOR = "6b1d2c3e-4f50-4a61-8b72-93a4b5c6d7e8"
NOW = datetime.now(UTC).replace(microsecond=0)
REVIEWER = claims("quarantine:read quarantine:review", sub="operator-anna")
REGISTRAR = claims("systems:read systems:write", sub="operator-anna")
SETTINGS = (get_load_worker_settings, get_quarantine_settings, get_systems_settings, get_health_settings)


def stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def reading(at: datetime, **changes: Any) -> dict[str, Any]:
    return {"sensor_id": SENSOR, "timestamp": stamp(at), "value": 212.5, "unit": "bar", "quality": 97} | changes


@pytest.fixture
def logins(migrated_db: str) -> Iterator[dict[str, str]]:
    """One login user per group role, made the way `sluice serve` makes its own (under names of this test's); the
    DSN of each, by group. Dropped afterwards."""
    tag = uuid4().hex[:8]
    made = [DatabaseLogin(group, f"sluice_test_{tag}_{group}", group, group) for group in GROUPS]
    password = ensure_database_logins(migrated_db, logins=made)
    yield {login.group: login_dsn(migrated_db, login, password) for login in made}
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        for login in made:
            # A connection a failed test left open would hold a temporary table the role owns.
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (login.user,))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login.user)))


def secret_for(dsn: str) -> str:
    """A Secrets Manager secret (moto, RDS layout) with ``dsn``'s connection; its ARN."""
    name = f"sluice-role-{uuid4().hex[:8]}"
    return secretsmanager_client().create_secret(Name=name, SecretString=json.dumps(secret_from_dsn(dsn)))["ARN"]


@dataclass
class Functions:
    """The four database functions of the API and the worker, each warm with its own role's connection; the owner's
    DSN for checks."""

    worker: WorkerHarness
    quarantine: ModuleType
    systems: ModuleType
    health: ModuleType
    owner_dsn: str
    system_id: UUID

    def load(self, readings: list[Any]) -> UUID:
        body = json.dumps({"system_id": str(self.system_id), "readings": readings}).encode()
        job_id = self.worker.send_api_batch(TENANT, self.system_id, body, len(readings))
        assert self.worker.deliver() == {"batchItemFailures": []}
        return job_id

    def owner(self, query: LiteralString, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.owner_dsn) as conn:
            return conn.execute(query, params or None).fetchall()

    def users(self) -> dict[str, str]:
        """Who each function's kept connection is logged in as, by application name."""
        rows = self.owner(
            "SELECT application_name, usename FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name LIKE 'sluice-%%'"
        )
        return {str(name): str(user) for name, user in rows}


@pytest.fixture
def functions(
    aws_stack: StackContext, migrated_db: str, logins: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Functions]:
    """LoadWorkerFunction, QuarantineFunction, SystemsFunction and HealthFunction with the template's environments,
    imported cold. They share this process, so each one's settings and connector are built (and kept, as in a warm
    execution environment) while SLUICE_DB_SECRET_ARN names its own secret, as the template gives each function its
    own."""
    for settings in SETTINGS:
        settings.cache_clear()
    modules: dict[str, ModuleType] = {}
    for function, group in [
        ("LoadWorkerFunction", "sluice_worker"),
        ("QuarantineFunction", "sluice_reviewer"),
        ("SystemsFunction", "sluice_registrar"),
        ("HealthFunction", "sluice_reader"),
    ]:
        for name, value in function_environment(aws_stack, function).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("SLUICE_DB_SECRET_ARN", secret_for(logins[group]))
        modules[function] = handler_module(function)
        modules[function].get_service()
    # A function that built its service again would fail loudly here instead of connecting as another's role.
    monkeypatch.setenv("SLUICE_DB_SECRET_ARN", "arn:aws:secretsmanager:eu-central-1:123456789012:secret:no-such")
    system_id = uuid4()
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("INSERT INTO systems (id, tenant_id, name) VALUES (%s, %s, 'press-17')", (system_id, TENANT))
    worker = WorkerHarness(modules["LoadWorkerFunction"], aws_stack, migrated_db)
    yield Functions(
        worker,
        modules["QuarantineFunction"],
        modules["SystemsFunction"],
        modules["HealthFunction"],
        migrated_db,
        system_id,
    )
    for module in modules.values():
        module.get_service().connector.close()
    for settings in SETTINGS:
        settings.cache_clear()


# --- the roles ----------------------------------------------------------------------------------------------------


def test_the_group_roles_cannot_log_in_and_the_owner_owns_everything(migrated_db: str) -> None:
    with psycopg.connect(migrated_db) as conn:
        roles = conn.execute(
            "SELECT rolname, rolcanlogin, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles"
            " WHERE rolname = ANY(%s) ORDER BY 1",
            (list(GROUPS),),
        ).fetchall()
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public'"
        ).fetchall()
        me = conn.execute("SELECT current_user").fetchone()

    assert roles == [(group, False, False, False, False) for group in sorted(GROUPS)]
    assert owners == [me]


# --- each role does its job through its function's code -----------------------------------------------------------


def test_the_worker_loads_through_every_path_as_its_role_and_chunks_are_made_for_it(functions: Functions) -> None:
    # Two time ranges the hypertable has no chunk for yet (chunks are 7 days, these readings 14 days apart), and
    # a reading for quarantine: the worker's role makes the chunks, COPYs, quarantines and writes the ledger.
    chunks = "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'readings'"
    rollup_chunks = "SELECT count(*) > 0 FROM timescaledb_information.chunks WHERE hypertable_name = %s"
    assert functions.owner(chunks) == [(0,)]
    first = functions.load(
        [reading(NOW - timedelta(days=1)), reading(NOW - timedelta(days=15)), reading(NOW, value=950.0)]
    )
    assert functions.owner(chunks) == [(2,)]
    # A reading already stored sends the chunk down the staging path (its temporary table, INSERT .. ON CONFLICT ..
    # RETURNING); the other one lands in a third time range.
    second = functions.load([reading(NOW - timedelta(days=1)), reading(NOW - timedelta(days=30))])

    assert functions.users()["sluice-load-worker"].endswith("_sluice_worker")
    assert functions.owner(chunks) == [(3,)]
    # It makes the rollups' chunks too (their 30- and 365-day ranges fall where the calendar puts them).
    assert [functions.owner(rollup_chunks, table) for table in ("readings_1m", "readings_1h")] == [[(True,)]] * 2
    # The chunks the worker's inserts made belong to the hypertable's owner: the worker cannot drop them.
    assert functions.owner(
        "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = '_timescaledb_internal'"
    ) == functions.owner("SELECT current_user")
    ledger = functions.owner(
        "SELECT job_id, total_readings, inserted_readings, quarantined_readings, duplicate_readings"
        " FROM ingest_ledger ORDER BY committed_at"
    )
    assert ledger == [(first, 3, 2, 1, 0), (second, 2, 1, 1, 1)]
    assert functions.owner("SELECT reason FROM quarantined_readings ORDER BY id") == [("out_of_range",), ("duplicate",)]
    # Completing a job counts its quarantined readings by reason, which the worker reads as its role too.
    assert [functions.worker.job(job).status for job in (first, second)] == [JobStatus.COMPLETED] * 2
    assert functions.worker.job(second).inserted_readings == 1


def test_the_reviewer_lists_reviews_and_replays_as_its_role(functions: Functions) -> None:
    job_id = functions.load([reading(NOW - timedelta(hours=2)), reading(NOW, value=950.0), reading(NOW, unit="psi")])
    functions.load([reading(NOW - timedelta(hours=2))])  # a duplicate of a stored reading

    listing = call(functions.quarantine, "GET", "/api/v1/quarantine", verified=REVIEWER)
    assert listing.status == 200, listing.body
    rows = {item["reason"]: item["id"] for item in listing.body["items"]}
    one = call(functions.quarantine, "GET", f"/api/v1/quarantine/{rows['duplicate']}", verified=REVIEWER)
    fixed = review(functions, rows["out_of_range"], {"action": "fix", "value": 95.0, "notes": "decimal point"})
    rejected = review(functions, rows["invalid_unit"], {"action": "reject"})
    conflict = review(functions, rows["duplicate"], {"action": "approve"})

    assert functions.users()["sluice-quarantine"].endswith("_sluice_reviewer")
    assert (one.status, one.body["reason"]) == (200, "duplicate")
    assert (fixed.status, fixed.body["review_status"]) == (200, "fixed")
    assert (rejected.status, rejected.body["review_status"]) == (200, "rejected")
    # The replay's ON CONFLICT DO NOTHING works without reading readings: the stored duplicate is refused.
    assert (conflict.status, conflict.error["code"]) == (409, "duplicate_reading")
    assert functions.owner("SELECT value FROM readings WHERE job_id = %s ORDER BY value", job_id) == [(95.0,), (212.5,)]
    assert functions.owner("SELECT reviewed_readings, replayed_readings FROM job_reviews") == [(2, 1)]


def review(functions: Functions, row_id: int, body: dict[str, Any]) -> Any:
    return call(functions.quarantine, "POST", f"/api/v1/quarantine/{row_id}/review", verified=REVIEWER, body=body)


def test_the_registrar_registers_renames_and_reads_figures_as_its_role(functions: Functions) -> None:
    # Readings and a pending row for the fixture's system, loaded by the worker; then a system of an id a device sent.
    functions.load([reading(NOW - timedelta(hours=1)), reading(NOW, value=950.0)])
    wanted = uuid4()

    def systems(method: str, path: str, body: Any = None) -> Any:
        return call(functions.systems, method, path, verified=REGISTRAR, body=body)

    created = systems("POST", "/api/v1/systems", {"name": "press-18", "id": str(wanted)})
    again = systems("POST", "/api/v1/systems", {"name": "press-18", "id": str(wanted)})
    renamed = systems("PATCH", f"/api/v1/systems/{wanted}", {"name": "press-18b"})
    taken = systems("PATCH", f"/api/v1/systems/{wanted}", {"name": "press-17"})
    listed = systems("GET", "/api/v1/systems")

    assert functions.users()["sluice-systems"].endswith("_sluice_registrar")
    assert (created.status, again.status, renamed.status) == (201, 200, 200)
    assert (taken.status, taken.error["code"]) == (409, "name_taken")
    figures = {item["name"]: (item["readings_24h"], item["pending_quarantine"]) for item in listed.body["items"]}
    assert figures == {"press-17": (1, 1), "press-18b": (0, 0)}
    assert functions.owner("SELECT name FROM systems WHERE id = %s", wanted) == [("press-18b",)]


def test_the_deep_health_check_reads_the_schema_version_as_the_reader(functions: Functions) -> None:
    answer = call(functions.health, "GET", "/health/deep", verified=claims("ops:read", tenant=None))

    assert answer.body["checks"]["database"] == answer.body["checks"]["database"] | {
        "ok": True,
        "detail": f"reachable, schema version {SCHEMA_VERSION}",
    }
    assert functions.users()["sluice-health"].endswith("_sluice_reader")


def test_the_reader_reads_every_relation_of_the_schema(migrated_db: str, logins: dict[str, str]) -> None:
    # Every table and view, including ones a later migration adds: a relation the reader cannot read fails here.
    with psycopg.connect(migrated_db) as conn:
        relations = [
            str(name)
            for (name,) in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p') ORDER BY 1"
            )
        ]
    assert {
        "systems",
        "readings",
        "quarantined_readings",
        "ingest_ledger",
        "job_reviews",
        "readings_1m",
        "readings_1h",
        "readings_5m",
        "readings_1d",
        "sensor_latest",
    } <= set(relations)
    # The one exception: webhook signing secrets are read only by the dispatcher.
    unreadable = {"webhook_secrets"}
    assert unreadable <= set(relations)
    with psycopg.connect(logins["sluice_reader"], autocommit=True) as reader:
        for relation in sorted(set(relations) - unreadable):
            reader.execute(sql.SQL("SELECT * FROM {} LIMIT 1").format(sql.Identifier(relation)))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("SELECT secret FROM webhook_secrets LIMIT 1")


# --- and nothing else ---------------------------------------------------------------------------------------------

NEW_READING = (
    "INSERT INTO readings (time, system_id, sensor_id, value, unit, quality, job_id)"
    " VALUES (now(), gen_random_uuid(), gen_random_uuid(), 1, 'bar', 90, gen_random_uuid())"
)
NEW_QUARANTINE_ROW = (
    "INSERT INTO quarantined_readings (tenant_id, job_id, reason) VALUES ('demo', gen_random_uuid(), 'parse_error')"
)
NEW_SYSTEM = "INSERT INTO systems (tenant_id, name) VALUES ('demo', 'press-99')"
DROP_OLD_CHUNKS = "SELECT drop_chunks('readings', older_than => INTERVAL '1 day')"
NEW_TABLE = "CREATE TABLE public.sneaky (id int)"
REFUSED: dict[str, list[LiteralString]] = {
    "sluice_worker": [
        "DELETE FROM readings",
        "UPDATE readings SET value = 0",
        "TRUNCATE readings",
        "DELETE FROM readings_1m",
        "TRUNCATE readings_1h",
        "DELETE FROM sensor_latest",
        "SELECT value, raw FROM quarantined_readings",
        "UPDATE quarantined_readings SET review_status = 'rejected'",
        "DELETE FROM quarantined_readings",
        "UPDATE ingest_ledger SET tenant_id = 'other'",
        "DELETE FROM ingest_ledger",
        "SELECT * FROM job_reviews",
        "SELECT * FROM sluice_schema_migrations",
        NEW_SYSTEM,
        DROP_OLD_CHUNKS,
        "DROP TABLE readings",
        NEW_TABLE,
    ],
    "sluice_reviewer": [
        "SELECT * FROM readings",
        "UPDATE readings SET value = 0",
        "DELETE FROM readings",
        "DELETE FROM readings_1m",
        NEW_QUARANTINE_ROW,
        "UPDATE quarantined_readings SET value = 0",
        "DELETE FROM quarantined_readings",
        "TRUNCATE quarantined_readings",
        "SELECT * FROM ingest_ledger",
        "DELETE FROM job_reviews",
        NEW_SYSTEM,
        DROP_OLD_CHUNKS,
        "DROP TABLE quarantined_readings",
        NEW_TABLE,
    ],
    "sluice_registrar": [
        "SELECT value FROM readings",
        "SELECT system_id, time FROM readings",
        "SELECT * FROM readings",
        NEW_READING,
        "SELECT sum FROM readings_1m",
        "UPDATE readings_1m SET count = 1",
        "SELECT last_value FROM sensor_latest",
        "SELECT raw FROM quarantined_readings",
        "SELECT * FROM quarantined_readings",
        NEW_QUARANTINE_ROW,
        "UPDATE quarantined_readings SET review_status = 'rejected'",
        "UPDATE systems SET tenant_id = 'other'",
        "UPDATE systems SET id = gen_random_uuid()",
        "DELETE FROM systems",
        "TRUNCATE systems",
        "SELECT * FROM ingest_ledger",
        "SELECT * FROM job_reviews",
        DROP_OLD_CHUNKS,
        "DROP TABLE systems",
        NEW_TABLE,
    ],
    "sluice_reader": [
        NEW_READING,
        NEW_QUARANTINE_ROW,
        NEW_SYSTEM,
        "UPDATE quarantined_readings SET review_notes = 'x'",
        "DELETE FROM ingest_ledger",
        "INSERT INTO job_reviews (job_id, tenant_id) VALUES (gen_random_uuid(), 'demo')",
        "DELETE FROM sluice_schema_migrations",
        "TRUNCATE readings",
        DROP_OLD_CHUNKS,
        "DROP VIEW readings_5m",
        "DELETE FROM readings_1m",
        "UPDATE sensor_latest SET last_value = 0",
        NEW_TABLE,
    ],
}


@pytest.mark.parametrize(
    ("group", "statement"), [(group, statement) for group, statements in REFUSED.items() for statement in statements]
)
def test_each_role_is_refused_what_is_not_its_job(logins: dict[str, str], group: str, statement: LiteralString) -> None:
    with psycopg.connect(logins[group], autocommit=True) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


def test_a_login_user_without_a_role_reaches_nothing(migrated_db: str) -> None:
    user = f"sluice_test_{uuid4().hex[:8]}_nobody"
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(user)))
    try:
        with psycopg.connect(migrated_db, user=user, autocommit=True) as nobody:
            for relation in ("systems", "readings", "quarantined_readings", "ingest_ledger", "readings_1m"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    nobody.execute(sql.SQL("SELECT 1 FROM {}").format(sql.Identifier(relation)))
    finally:
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(user)))


# --- roles are the cluster's, grants the database's ---------------------------------------------------------------


def grants_to_groups(dsn: str) -> list[tuple[str, str]]:
    """Every object of the database (and the database itself) that grants a group role anything."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT 'relation', relname::text FROM pg_class, aclexplode(relacl) AS acl"
            " WHERE acl.grantee::regrole::text = ANY(%(groups)s)"
            " UNION SELECT 'column', attrelid::regclass::text || '.' || attname FROM pg_attribute,"
            "  aclexplode(attacl) AS acl WHERE acl.grantee::regrole::text = ANY(%(groups)s)"
            " UNION SELECT 'schema', nspname::text FROM pg_namespace, aclexplode(nspacl) AS acl"
            "  WHERE acl.grantee::regrole::text = ANY(%(groups)s)"
            " UNION SELECT 'database', 'this one' FROM pg_database, aclexplode(datacl) AS acl"
            "  WHERE datname = current_database() AND acl.grantee::regrole::text = ANY(%(groups)s)",
            {"groups": list(GROUPS)},
        ).fetchall()
    return sorted((str(kind), str(name)) for kind, name in rows)


ROLES = 4  # 0004_roles: the group roles and their grants


def test_down_revokes_this_databases_grants_and_keeps_the_roles_another_database_uses(
    server_dsn: str, migrated_db: str, migrations: list[Migration], logins: dict[str, str]
) -> None:
    with scratch_database(server_dsn) as other:
        MigrationRunner(other, migrations).up()  # the roles exist already: created once, granted again
        granted = grants_to_groups(other)

        MigrationRunner(migrated_db, migrations).down(ROLES - 1)

        assert grants_to_groups(migrated_db) == []
        assert grants_to_groups(other) == granted
        with psycopg.connect(other) as conn:
            assert conn.execute(
                "SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)", (list(GROUPS),)
            ).fetchone() == (len(GROUPS),)
        with psycopg.connect(logins["sluice_worker"]) as worker, pytest.raises(psycopg.errors.InsufficientPrivilege):
            worker.execute("SELECT id FROM systems")

    MigrationRunner(migrated_db, migrations).up()
    with psycopg.connect(logins["sluice_worker"]) as worker:
        assert worker.execute("SELECT count(*) FROM systems").fetchone() == (0,)
    assert grants_to_groups(migrated_db) == granted


# --- the local stack's login users ----------------------------------------------------------------------------------


def test_login_users_are_made_once_and_given_the_newest_password(migrated_db: str) -> None:
    login = DatabaseLogin("WorkerDatabaseSecretArn", f"sluice_test_{uuid4().hex[:8]}_login", "sluice_worker", "w")
    try:
        ensure_database_logins(migrated_db, "first-password", [login])
        ensure_database_logins(migrated_db, "second-password", [login])  # a restart of `sluice serve`

        with psycopg.connect(migrated_db) as conn:
            found = conn.execute(
                "SELECT rolcanlogin, rolsuper, pg_has_role(rolname, 'sluice_worker', 'MEMBER') FROM pg_roles"
                " WHERE rolname = %s",
                (login.user,),
            ).fetchall()
        with psycopg.connect(login_dsn(migrated_db, login, "second-password")) as worker:
            assert worker.execute("SELECT current_user").fetchone() == (login.user,)
    finally:
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login.user)))

    assert found == [(True, False, True)]


def test_login_users_need_the_migrated_roles(migrated_db: str) -> None:
    orphan = DatabaseLogin("X", f"sluice_test_{uuid4().hex[:8]}_login", f"sluice_test_{uuid4().hex[:8]}_none", "x")

    with pytest.raises(RuntimeError, match="run the migrations first"):
        ensure_database_logins(migrated_db, "password", [orphan])
