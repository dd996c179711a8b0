"""infra/grafana without a Grafana: the provisioning files parse and name one data source, which logs in as a member
of sluice_reader; every panel's SQL, and every template variable's, with Grafana's variables and macros expanded
(tests/grafana.py), runs as that user against readings of known values and answers those values, at each of the
four resolutions the time range picks.

Grafana itself is not run (it cannot be installed here): what it draws from these rows is not tested.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from uuid import UUID, uuid4

import psycopg
import pytest
import yaml
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sluice_tools.local.stack import DatabaseLogin, ensure_database_logins

from ..grafana import Variable, expand_provisioning, expand_sql
from ..paths import REPO_ROOT
from ..rollups import rebuild_rollups

GRAFANA_DIR: Final = REPO_ROOT / "infra" / "grafana"
DATASOURCES: Final = GRAFANA_DIR / "provisioning" / "datasources" / "sluice.yaml"
DASHBOARD_PROVIDERS: Final = GRAFANA_DIR / "provisioning" / "dashboards" / "sluice.yaml"
DASHBOARDS: Final = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
SYSTEM_DASHBOARD: Final = GRAFANA_DIR / "dashboards" / "sluice-system.json"

T0: Final = datetime(2026, 6, 1, tzinfo=UTC)
TENANT, OTHER_TENANT = "acme", "globex"
PRESS, PUMP, FOREIGN = (
    UUID("7d0e6a1c-1b2a-4c3d-8e4f-5a6b7c8d9e01"),
    UUID("7d0e6a1c-1b2a-4c3d-8e4f-5a6b7c8d9e02"),
    UUID("7d0e6a1c-1b2a-4c3d-8e4f-5a6b7c8d9e03"),
)
# The press's sensors: two with readings around T0, one live now and one quiet for 20 minutes. The pump's flow
# sensor has readings in the same minutes, which the press's panels must not count.
PRESSURE, TEMPERATURE, LIVE, QUIET, FLOW = (
    UUID("0a1b2c3d-0000-4000-8000-000000000001"),
    UUID("0a1b2c3d-0000-4000-8000-000000000002"),
    UUID("0a1b2c3d-0000-4000-8000-000000000003"),
    UUID("0a1b2c3d-0000-4000-8000-000000000004"),
    UUID("0a1b2c3d-0000-4000-8000-000000000005"),
)
JOB_A, JOB_B, JOB_C, JOB_D, JOB_FOREIGN = (UUID(int=n) for n in range(1, 6))


def at(days: int = 0, hours: int = 0, minutes: int = 0, seconds: int = 0, milliseconds: int = 0) -> datetime:
    return T0 + timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds, milliseconds=milliseconds)


# (sensor, unit, time, value) of the press, stored. 10:00:50 is a reading that was quarantined and replayed (fixed).
READINGS: Final = [
    (PRESSURE, "bar", at(days=-5, hours=12), 90.0),
    (PRESSURE, "bar", at(hours=10, seconds=5), 100.0),
    (PRESSURE, "bar", at(hours=10, seconds=35), 110.0),
    (PRESSURE, "bar", at(hours=10, seconds=50), 105.0),
    (PRESSURE, "bar", at(hours=10, minutes=1, seconds=10), 120.0),
    (PRESSURE, "bar", at(hours=10, minutes=7), 130.0),
    (PRESSURE, "bar", at(days=1, hours=6), 200.0),
    (TEMPERATURE, "celsius", at(hours=10, seconds=15), 40.0),
    (TEMPERATURE, "celsius", at(hours=10, minutes=1, seconds=15), 42.0),
    (TEMPERATURE, "celsius", at(hours=11, minutes=20), 44.0),
]
# (tenant, system, time, review status) of quarantined readings; only the first four are the press's, and only
# pending and rejected ones are held.
QUARANTINED: Final = [
    (TENANT, PRESS, at(hours=10, seconds=20), "pending"),
    (TENANT, PRESS, at(hours=10, seconds=50), "fixed"),
    (TENANT, PRESS, at(hours=10, minutes=1, seconds=40), "rejected"),
    (TENANT, PRESS, at(hours=11, minutes=30), "pending"),
    (TENANT, None, None, "pending"),  # unparsable: no system, no time
    (OTHER_TENANT, PRESS, at(hours=10, seconds=30), "pending"),  # another tenant's reading naming the press
]
# (job, chunk, tenant, committed at, quarantined readings) of the ingest ledger.
LEDGER: Final = [
    (JOB_A, 0, TENANT, at(hours=10, seconds=5), 0),
    (JOB_A, 1, TENANT, at(hours=10, seconds=6), 1),
    (JOB_B, 0, TENANT, at(hours=10, minutes=40), 0),
    (JOB_C, 0, TENANT, at(hours=11, minutes=10), 1),
    (JOB_D, 0, TENANT, at(days=1, hours=6), 0),
    (JOB_FOREIGN, 0, OTHER_TENANT, at(hours=10, minutes=30), 0),
]


@dataclass(frozen=True)
class TimeRange:
    """A dashboard time range and the resolution the panels must pick for it."""

    start: datetime
    end: datetime
    resolution: str


SHORT = TimeRange(at(hours=9, minutes=30), at(hours=11, minutes=30), "1m")
DAYS = TimeRange(at(days=-1), at(days=2), "5m")
MONTH = TimeRange(at(days=-10), at(days=20), "1h")
SEASON = TimeRange(at(days=-100), at(days=20), "1d")

SENSOR_PANEL, QUARANTINE_PANEL, JOBS_PANEL, SILENT_PANEL = (
    "Sensor ${sensor:text}",
    "Quarantine rate",
    "Jobs per hour (all of tenant ${tenant}'s systems)",
    "Silent sensors",
)

# What each time series panel answers for each range: the sensor panel per sensor (time, unit, avg, min, max), the
# quarantine rate (time, rate) and the jobs (time, jobs, jobs with quarantined readings). Worked out by hand from
# the rows above.
EXPECTED: Final[dict[str, dict[str, Any]]] = {
    "1m": {
        SENSOR_PANEL: {
            PRESSURE: [
                (at(hours=10), "bar", 105.0, 100.0, 110.0),
                (at(hours=10, minutes=1), "bar", 120.0, 120.0, 120.0),
                (at(hours=10, minutes=7), "bar", 130.0, 130.0, 130.0),
            ],
            TEMPERATURE: [
                (at(hours=10), "celsius", 40.0, 40.0, 40.0),
                (at(hours=10, minutes=1), "celsius", 42.0, 42.0, 42.0),
                (at(hours=11, minutes=20), "celsius", 44.0, 44.0, 44.0),
            ],
        },
        # 10:00 four stored (the replayed reading among them), one held; 10:01 two and one; 11:30 only one held.
        QUARANTINE_PANEL: [
            (at(hours=10), 1 / 5),
            (at(hours=10, minutes=1), 1 / 3),
            (at(hours=10, minutes=7), 0.0),
            (at(hours=11, minutes=20), 0.0),
            (at(hours=11, minutes=30), 1.0),
        ],
        JOBS_PANEL: [(at(hours=10), 2, 1), (at(hours=11), 1, 1)],
    },
    "5m": {
        SENSOR_PANEL: {
            PRESSURE: [
                (at(hours=10), "bar", 108.75, 100.0, 120.0),
                (at(hours=10, minutes=5), "bar", 130.0, 130.0, 130.0),
                (at(days=1, hours=6), "bar", 200.0, 200.0, 200.0),
            ],
            TEMPERATURE: [
                (at(hours=10), "celsius", 41.0, 40.0, 42.0),
                (at(hours=11, minutes=20), "celsius", 44.0, 44.0, 44.0),
            ],
        },
        QUARANTINE_PANEL: [
            (at(hours=10), 2 / 8),
            (at(hours=10, minutes=5), 0.0),
            (at(hours=11, minutes=20), 0.0),
            (at(hours=11, minutes=30), 1.0),
            (at(days=1, hours=6), 0.0),
        ],
        JOBS_PANEL: [(at(hours=10), 2, 1), (at(hours=11), 1, 1), (at(days=1, hours=6), 1, 0)],
    },
    "1h": {
        SENSOR_PANEL: {
            PRESSURE: [
                (at(days=-5, hours=12), "bar", 90.0, 90.0, 90.0),
                (at(hours=10), "bar", 113.0, 100.0, 130.0),
                (at(days=1, hours=6), "bar", 200.0, 200.0, 200.0),
            ],
            TEMPERATURE: [
                (at(hours=10), "celsius", 41.0, 40.0, 42.0),
                (at(hours=11), "celsius", 44.0, 44.0, 44.0),
            ],
        },
        QUARANTINE_PANEL: [
            (at(days=-5, hours=12), 0.0),
            (at(hours=10), 2 / 9),
            (at(hours=11), 1 / 2),
            (at(days=1, hours=6), 0.0),
        ],
        JOBS_PANEL: [(at(hours=10), 2, 1), (at(hours=11), 1, 1), (at(days=1, hours=6), 1, 0)],
    },
    "1d": {
        SENSOR_PANEL: {
            PRESSURE: [
                (at(days=-5), "bar", 90.0, 90.0, 90.0),
                (at(), "bar", 113.0, 100.0, 130.0),
                (at(days=1), "bar", 200.0, 200.0, 200.0),
            ],
            TEMPERATURE: [(at(), "celsius", 42.0, 40.0, 44.0)],
        },
        QUARANTINE_PANEL: [(at(days=-5), 0.0), (at(), 3 / 11), (at(days=1), 0.0)],
        JOBS_PANEL: [(at(hours=10), 2, 1), (at(hours=11), 1, 1), (at(days=1, hours=6), 1, 0)],
    },
}


# --- the files ----------------------------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_dashboard(path: Path = SYSTEM_DASHBOARD) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))  # JSON is YAML; the loader keeps mypy to one parser


def panels_of(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panels_of(panel))
    return [panel for panel in found if panel.get("type") != "row"]


def datasource_references(dashboard: dict[str, Any]) -> list[Any]:
    references = [variable.get("datasource") for variable in dashboard["templating"]["list"]]
    for panel in panels_of(dashboard):
        references.append(panel.get("datasource"))
        references.extend(target.get("datasource") for target in panel["targets"])
    return references


def test_the_provisioning_files_parse_and_the_dashboards_name_the_provisioned_data_source() -> None:
    datasources = load_yaml(DATASOURCES)
    providers = load_yaml(DASHBOARD_PROVIDERS)

    assert datasources["apiVersion"] == 1
    [source] = datasources["datasources"]
    assert source["type"] == "grafana-postgresql-datasource"
    assert source["jsonData"]["timescaledb"] is True
    # Grafana's verify-full checks the host name against a root certificate file it must be given.
    assert source["jsonData"]["sslmode"] == "verify-full"
    assert source["jsonData"]["sslRootCertFile"] == "$SLUICE_GRAFANA_DB_ROOT_CERT"
    assert source["url"] == "$SLUICE_GRAFANA_DB_HOST:$SLUICE_GRAFANA_DB_PORT"
    assert source["user"] == "$SLUICE_GRAFANA_DB_USER"
    assert source["jsonData"]["database"] == "$SLUICE_GRAFANA_DB_NAME"
    assert source["secureJsonData"] == {"password": "$SLUICE_GRAFANA_DB_PASSWORD"}
    assert providers["apiVersion"] == 1
    [provider] = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"]

    # A new dashboard needs its own expected values below before it is provisioned.
    assert DASHBOARDS == [SYSTEM_DASHBOARD]
    for path in DASHBOARDS:
        dashboard = load_dashboard(path)
        assert dashboard["uid"]
        references = datasource_references(dashboard)
        assert references
        assert all(ref == {"type": source["type"], "uid": source["uid"]} for ref in references), references


def test_the_provisioned_data_source_expands_from_the_environment() -> None:
    environ = {
        "SLUICE_GRAFANA_DB_HOST": "db.example.com",
        "SLUICE_GRAFANA_DB_PORT": "5432",
        "SLUICE_GRAFANA_DB_NAME": "tsdb",
        "SLUICE_GRAFANA_DB_USER": "grafana",
        "SLUICE_GRAFANA_DB_PASSWORD": "pa$$word",
        "SLUICE_GRAFANA_DB_ROOT_CERT": "/etc/ssl/certs/ca-certificates.crt",
    }

    [source] = expand_provisioning(load_yaml(DATASOURCES), environ)["datasources"]

    assert source["url"] == "db.example.com:5432"
    assert (source["user"], source["jsonData"]["database"]) == ("grafana", "tsdb")
    # Only the file is expanded, never the values taken from the environment.
    assert source["secureJsonData"]["password"] == "pa$$word"
    assert source["jsonData"]["sslRootCertFile"] == "/etc/ssl/certs/ca-certificates.crt"


# --- the database -------------------------------------------------------------------------------------------------


@pytest.fixture
def grafana_db(migrated_db: str) -> str:
    """The migrated scratch database with the rows above, and their rollups."""
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO systems (id, tenant_id, name) VALUES (%s, %s, 'press-17'), (%s, %s, 'pump-3'),"
            " (%s, %s, 'press-1')",
            (PRESS, TENANT, PUMP, TENANT, FOREIGN, OTHER_TENANT),
        )
        readings = [(PRESS, *reading) for reading in READINGS]
        readings.append((PUMP, FLOW, "lpm", at(hours=10, seconds=10), 999.0))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO readings (system_id, sensor_id, unit, time, value, quality, job_id)"
                " VALUES (%s, %s, %s, %s, %s, 97, %s)",
                [(*reading, JOB_A) for reading in readings],
            )
            # Sensors heard from now, for the silent sensors' table: one a minute ago, one 20 minutes ago.
            cur.executemany(
                "INSERT INTO readings (system_id, sensor_id, unit, time, value, quality, job_id)"
                " VALUES (%s, %s, 'rpm', now() - %s, 1500, 97, %s)",
                [(PRESS, LIVE, timedelta(minutes=1), JOB_D), (PRESS, QUIET, timedelta(minutes=20), JOB_D)],
            )
            cur.executemany(
                "INSERT INTO quarantined_readings (tenant_id, job_id, system_id, sensor_id, time, value, unit,"
                " quality, reason, review_status, reviewed_by, reviewed_at)"
                " VALUES (%s, %s, %s, %s, %s, 950, 'bar', 97, 'out_of_range', %s,"
                " CASE WHEN %s <> 'pending' THEN 'operator-anna' END, CASE WHEN %s <> 'pending' THEN now() END)",
                [
                    (tenant, JOB_A, system, PRESSURE if system else None, time, status, status, status)
                    for tenant, system, time, status in QUARANTINED
                ],
            )
            cur.executemany(
                "INSERT INTO ingest_ledger (job_id, chunk_no, tenant_id, total_readings, inserted_readings,"
                " quarantined_readings, committed_at) VALUES (%s, %s, %s, 3 + %s, 3, %s, %s)",
                [(job, chunk, tenant, held, held, committed) for job, chunk, tenant, committed, held in LEDGER],
            )
        rebuild_rollups(conn)
    return migrated_db


@pytest.fixture
def reader(grafana_db: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """A connection made as Grafana makes it from the provisioning file, its variables set for a login user in
    sluice_reader on the scratch database. The local cluster has no TLS, so it connects with sslmode disable (the
    file's verify-full is checked above)."""
    login = DatabaseLogin("", f"sluice_test_{uuid4().hex[:8]}_grafana", "sluice_reader", "grafana")
    password = ensure_database_logins(grafana_db, logins=[login])
    params = conninfo_to_dict(grafana_db)
    environ = {
        "SLUICE_GRAFANA_DB_HOST": str(params.get("host", "127.0.0.1")),
        "SLUICE_GRAFANA_DB_PORT": str(params.get("port", 5432)),
        "SLUICE_GRAFANA_DB_NAME": str(params["dbname"]),
        "SLUICE_GRAFANA_DB_USER": login.user,
        "SLUICE_GRAFANA_DB_PASSWORD": password,
    }
    [source] = expand_provisioning(load_yaml(DATASOURCES), environ)["datasources"]
    host, port = source["url"].rsplit(":", 1)
    dsn = make_conninfo(
        host=host,
        port=port,
        dbname=source["jsonData"]["database"],
        user=source["user"],
        password=source["secureJsonData"]["password"],
        sslmode="disable",
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn
    with psycopg.connect(grafana_db, autocommit=True) as owner:
        owner.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (login.user,))
        owner.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login.user)))


def run(conn: psycopg.Connection[tuple[Any, ...]], text: str) -> list[tuple[Any, ...]]:
    """The expanded SQL of a panel, run as Grafana runs it: as text, no parameters."""
    return conn.execute(sql.SQL(text)).fetchall()


def resolve_variables(
    conn: psycopg.Connection[tuple[Any, ...]], dashboard: dict[str, Any], window: TimeRange
) -> tuple[dict[str, Variable], dict[str, list[tuple[str, str]]]]:
    """The template variables as a viewer would set them: tenant acme, system press-17, every sensor. Each one's
    query runs with the variables before it, as Grafana refreshes them. Also each one's options (text, value)."""
    chosen = {"tenant": TENANT, "system": str(PRESS)}
    variables: dict[str, Variable] = {}
    options: dict[str, list[tuple[str, str]]] = {}
    for variable in dashboard["templating"]["list"]:
        assert variable["type"] == "query", variable["name"]
        cursor = conn.execute(sql.SQL(expand_sql(variable["query"], variables, window.start, window.end)))
        columns = [column.name for column in cursor.description or []]
        rows = cursor.fetchall()
        if "__value" in columns:
            text, value = columns.index("__text"), columns.index("__value")
            options[variable["name"]] = [(str(row[text]), str(row[value])) for row in rows]
        else:
            options[variable["name"]] = [(str(row[0]), str(row[0])) for row in rows]
        values = [value for _, value in options[variable["name"]]]
        multi = bool(variable.get("multi") or variable.get("includeAll"))
        if variable["name"] in chosen:
            assert chosen[variable["name"]] in values
            variables[variable["name"]] = Variable(chosen[variable["name"]], multi=multi)
        else:
            assert variable.get("includeAll"), variable["name"]
            variables[variable["name"]] = Variable(values, multi=multi)
    return variables, options


def panel_results(
    conn: psycopg.Connection[tuple[Any, ...]], dashboard: dict[str, Any], window: TimeRange
) -> dict[str, Any]:
    """Each panel's rows for the time range, by title: a repeated panel's by the value of its variable. Every
    target of every panel runs; a panel with several targets has its rows by refId."""
    variables, _ = resolve_variables(conn, dashboard, window)
    results: dict[str, Any] = {}
    for panel in panels_of(dashboard):
        repeat = panel.get("repeat")
        copies: dict[UUID | None, dict[str, Variable]]
        if repeat:
            copies = {
                UUID(value): variables | {repeat: Variable([value], multi=True)} for value in variables[repeat].value
            }
        else:
            copies = {None: variables}
        rows: dict[Any, Any] = {}
        for key, scoped in copies.items():
            by_target = {
                target["refId"]: run(conn, expand_sql(target["rawSql"], scoped, window.start, window.end))
                for target in panel["targets"]
            }
            rows[key] = by_target["A"] if list(by_target) == ["A"] else by_target
        results[panel["title"]] = rows if repeat else rows[None]
    return results


def test_the_data_source_user_is_a_reader_and_nothing_more(reader: psycopg.Connection[tuple[Any, ...]]) -> None:
    assert run(reader, "SELECT pg_has_role(current_user, 'sluice_reader', 'member')") == [(True,)]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        run(reader, "DELETE FROM readings")


def test_the_variables_list_tenants_their_systems_and_the_systems_sensors(
    reader: psycopg.Connection[tuple[Any, ...]],
) -> None:
    _, options = resolve_variables(reader, load_dashboard(), SHORT)

    assert options["tenant"] == [(TENANT, TENANT), (OTHER_TENANT, OTHER_TENANT)]
    assert options["system"] == [("press-17", str(PRESS)), ("pump-3", str(PUMP))]
    assert options["sensor"] == [
        (f"{PRESSURE} (bar)", str(PRESSURE)),
        (f"{TEMPERATURE} (celsius)", str(TEMPERATURE)),
        (f"{LIVE} (rpm)", str(LIVE)),
        (f"{QUIET} (rpm)", str(QUIET)),
    ]


@pytest.mark.parametrize("window", [SHORT, DAYS, MONTH, SEASON], ids=lambda window: window.resolution)
def test_every_panel_answers_the_readings_at_the_resolution_the_time_range_picks(
    reader: psycopg.Connection[tuple[Any, ...]], window: TimeRange
) -> None:
    results = panel_results(reader, load_dashboard(), window)
    expected = EXPECTED[window.resolution]

    # A panel added without expectations here fails: its values must be checked, not only run.
    assert set(results) == {*expected, SILENT_PANEL}
    assert results[SENSOR_PANEL] == {
        PRESSURE: expected[SENSOR_PANEL][PRESSURE],
        TEMPERATURE: expected[SENSOR_PANEL][TEMPERATURE],
        LIVE: [],
        QUIET: [],
    }
    assert results[QUARANTINE_PANEL] == [(time, pytest.approx(rate)) for time, rate in expected[QUARANTINE_PANEL]]
    assert results[JOBS_PANEL] == expected[JOBS_PANEL]
    assert silent_sensors(results[SILENT_PANEL]) == [
        (str(TEMPERATURE), "celsius", at(hours=11, minutes=20), 44.0),
        (str(PRESSURE), "bar", at(days=1, hours=6), 200.0),
        (str(QUIET), "rpm", None, 1500.0),
    ]


def silent_sensors(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The silent sensors' rows with how long each has been silent checked against its last reading, and the
    last reading's time of a sensor heard from during the test (not known to the second) left out."""
    now = datetime.now(UTC)
    checked = []
    for sensor, unit, last_time, last_value, silent_for in rows:
        assert (now - last_time).total_seconds() - 60 <= silent_for <= (now - last_time).total_seconds()
        checked.append((sensor, unit, None if sensor == str(QUIET) else last_time, last_value))
    return checked


def test_a_sensor_is_silent_after_its_systems_own_setting(
    grafana_db: str, reader: psycopg.Connection[tuple[Any, ...]]
) -> None:
    with psycopg.connect(grafana_db, autocommit=True) as owner:
        owner.execute("UPDATE systems SET silent_after_seconds = 3600 WHERE id = %s", (PRESS,))

    results = panel_results(reader, load_dashboard(), SHORT)

    assert [row[0] for row in results[SILENT_PANEL]] == [str(TEMPERATURE), str(PRESSURE)]


@pytest.mark.parametrize(
    ("start", "resolution"),
    [(at(days=-1, hours=10, minutes=30), "1m"), (at(days=-1, hours=10, minutes=30, milliseconds=-1), "5m")],
    ids=["1 day", "1 day and 1 ms"],
)
def test_a_time_range_of_one_day_is_the_last_at_one_minute(
    reader: psycopg.Connection[tuple[Any, ...]], start: datetime, resolution: str
) -> None:
    results = panel_results(reader, load_dashboard(), TimeRange(start, at(hours=10, minutes=30), resolution))

    buckets = [row[0] for row in results[SENSOR_PANEL][PRESSURE]]
    assert (
        buckets
        == {
            "1m": [at(hours=10), at(hours=10, minutes=1), at(hours=10, minutes=7)],
            "5m": [at(hours=10), at(hours=10, minutes=5)],
        }[resolution]
    )
