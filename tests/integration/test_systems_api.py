"""SystemsFunction against the real TimescaleDB, connected as a login user of the sluice_registrar role through a
Secrets Manager secret (moto), as in AWS: registration and its idempotency, the conflicts, renames, tenant scoping,
paging and the figures; then registrations racing on two real connections."""

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from sluice.adapters.aws import secretsmanager_client
from sluice.adapters.systems import TimescaleSystemStore
from sluice.domain.systems import Registered, register_system
from sluice.errors import NameTakenError, SystemIdTakenError
from sluice.models.api import SystemCreate
from sluice.settings import get_systems_settings
from sluice_tools.local.stack import secret_from_dsn
from sluice_tools.local.template import StackContext, function_environment

from ..api_client import OTHER_TENANT, TENANT, Answer, call, claims
from ..lambdas import handler_module
from ..logins import group_login
from ..rollups import rebuild_rollups

pytestmark = pytest.mark.db

READER = claims("systems:read", sub="viewer-ben")
WRITER = claims("systems:read systems:write", sub="operator-anna")
THEIRS = claims("systems:read systems:write", tenant=OTHER_TENANT, sub="mallory")
NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class Systems:
    """SystemsFunction as its role, and the owner's DSN for setting up readings and checking rows."""

    module: ModuleType
    owner_dsn: str
    registrar_dsn: str

    def get(self, path: str, query: dict[str, str] | None = None, verified: dict[str, str] | None = READER) -> Answer:
        return call(self.module, "GET", path, verified=verified, query=query)

    def post(self, body: Any, verified: dict[str, str] | None = WRITER) -> Answer:
        return call(self.module, "POST", "/api/v1/systems", verified=verified, body=body)

    def patch(self, system_id: object, body: Any, verified: dict[str, str] | None = WRITER) -> Answer:
        return call(self.module, "PATCH", f"/api/v1/systems/{system_id}", verified=verified, body=body)

    def owner(self, query: Any, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.owner_dsn, autocommit=True) as conn:
            cursor = conn.execute(query, params or None)
            return cursor.fetchall() if cursor.description else []

    def rows(self) -> list[tuple[Any, ...]]:
        return self.owner("SELECT id, tenant_id, name FROM systems ORDER BY tenant_id, name")


@pytest.fixture
def registrar_dsn(migrated_db: str) -> Iterator[str]:
    """A login user of sluice_registrar, as SystemsFunction logs in."""
    with group_login(migrated_db, "SystemsDatabaseSecretArn", "sluice_registrar", "registrar") as dsn:
        yield dsn


@pytest.fixture
def systems(
    aws_stack: StackContext, migrated_db: str, registrar_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Systems]:
    """SystemsFunction, imported cold with the template's environment; its database is the registrar login's secret."""
    for name, value in function_environment(aws_stack, "SystemsFunction").items():
        monkeypatch.setenv(name, value)
    secret = secretsmanager_client().create_secret(
        Name=f"sluice-registrar-{uuid4().hex[:8]}", SecretString=json.dumps(secret_from_dsn(registrar_dsn))
    )
    monkeypatch.setenv("SLUICE_DB_SECRET_ARN", secret["ARN"])
    get_systems_settings.cache_clear()
    harness = Systems(handler_module("SystemsFunction"), migrated_db, registrar_dsn)
    yield harness
    harness.module.get_service().connector.close()
    get_systems_settings.cache_clear()


# --- registering --------------------------------------------------------------------------------------------------


def test_a_system_registered_with_its_devices_id_is_shown_with_empty_figures(systems: Systems) -> None:
    wanted = uuid4()

    answer = systems.post({"name": "press-17", "id": str(wanted)})

    assert answer.status == 201, answer.body
    assert answer.body | {"created_at": None} == {
        "id": str(wanted),
        "name": "press-17",
        "created_at": None,
        "silent_after_seconds": 600,
        "last_reading_at": None,
        "readings_24h": 0,
        "pending_quarantine": 0,
    }
    assert systems.rows() == [(wanted, TENANT, "press-17")]
    assert systems.get(f"/api/v1/systems/{wanted}").body == answer.body


def test_the_same_registration_again_is_200_with_the_same_system(systems: Systems) -> None:
    wanted = uuid4()
    first = systems.post({"name": "press-17", "id": str(wanted)})

    again = systems.post({"name": " press-17 ", "id": str(wanted)})

    assert (first.status, again.status) == (201, 200)
    assert again.body == first.body
    assert len(systems.rows()) == 1


def test_a_name_alone_gets_a_new_id_and_a_retry_finds_it(systems: Systems) -> None:
    first = systems.post({"name": "pump-3"})
    again = systems.post({"name": "pump-3"})

    assert (first.status, again.status) == (201, 200)
    assert again.body["id"] == first.body["id"]
    assert systems.rows() == [(UUID(first.body["id"]), TENANT, "pump-3")]


def test_an_id_another_tenant_holds_is_taken_and_says_nothing_about_whom(systems: Systems) -> None:
    wanted = uuid4()
    assert systems.post({"name": "their-secret-press", "id": str(wanted)}, verified=THEIRS).status == 201

    answer = systems.post({"name": "press-17", "id": str(wanted)})

    # The whole answer: the id, and nothing of the tenant that holds it or of its system.
    assert (answer.status, answer.error) == (
        409,
        {
            "code": "system_id_taken",
            "message": f"system id {wanted} is registered already",
            "details": [
                {
                    "field": "id",
                    "index": None,
                    "reason": "another system has this id: devices must send an id of their own",
                }
            ],
        },
    )
    assert systems.rows() == [(wanted, OTHER_TENANT, "their-secret-press")]


def test_an_id_the_tenant_registered_under_another_name_is_taken_and_names_it(systems: Systems) -> None:
    wanted = uuid4()
    systems.post({"name": "press-17", "id": str(wanted)})

    answer = systems.post({"name": "press-18", "id": str(wanted)})

    assert (answer.status, answer.error["code"]) == (409, "system_id_taken")
    assert "press-17" in answer.error["details"][0]["reason"]
    assert systems.rows() == [(wanted, TENANT, "press-17")]


def test_a_name_another_system_of_the_tenant_has_is_taken(systems: Systems) -> None:
    first = systems.post({"name": "press-17"})

    answer = systems.post({"name": "press-17", "id": str(uuid4())})

    assert (answer.status, answer.error["code"]) == (409, "name_taken")
    assert answer.error["details"][0]["field"] == "name"
    assert systems.rows() == [(UUID(first.body["id"]), TENANT, "press-17")]


def test_tenants_may_use_the_same_name(systems: Systems) -> None:
    mine = systems.post({"name": "press-17"})
    theirs = systems.post({"name": "press-17"}, verified=THEIRS)

    assert (mine.status, theirs.status) == (201, 201)
    assert mine.body["id"] != theirs.body["id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "   "}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "press\n17"}, "name"),
        ({"name": "press\u000017"}, "name"),
        ({"name": 17}, "name"),
        ({}, "name"),
        ({"name": "press-17", "id": "not-a-uuid"}, "id"),
        ({"name": "press-17", "tenant_id": OTHER_TENANT}, "tenant_id"),
        ({"name": "press-17", "created_at": "2026-01-01T00:00:00Z"}, "created_at"),
    ],
    ids=lambda value: str(value)[:40],
)
def test_a_body_that_is_not_a_registration_is_400_naming_the_field_and_stores_nothing(
    systems: Systems, body: dict[str, Any], field: str
) -> None:
    answer = systems.post(body)

    assert (answer.status, answer.error["code"]) == (400, "invalid_request"), answer.body
    assert field in {detail["field"] for detail in answer.error["details"]}
    assert systems.rows() == []


def test_a_name_is_trimmed_and_may_be_200_characters(systems: Systems) -> None:
    name = "é" * 200

    answer = systems.post({"name": f"\t{name}  "})

    assert (answer.status, answer.body["name"]) == (201, name)


def test_registering_needs_the_write_scope(systems: Systems) -> None:
    answer = systems.post({"name": "press-17"}, verified=READER)

    assert (answer.status, answer.error["code"]) == (403, "forbidden")
    assert systems.rows() == []


# --- renaming -----------------------------------------------------------------------------------------------------


def test_a_rename_changes_the_name_and_keeps_the_id(systems: Systems) -> None:
    system_id = systems.post({"name": "press-17"}).body["id"]

    answer = systems.patch(system_id, {"name": "press-17b"})
    same = systems.patch(system_id, {"name": "press-17b"})

    assert (answer.status, answer.body["id"], answer.body["name"]) == (200, system_id, "press-17b")
    assert same.status == 200
    assert systems.rows() == [(UUID(system_id), TENANT, "press-17b")]


def test_a_rename_to_a_name_the_tenant_uses_is_taken(systems: Systems) -> None:
    first = systems.post({"name": "press-17"}).body["id"]
    systems.post({"name": "press-18"})

    answer = systems.patch(first, {"name": "press-18"})

    assert (answer.status, answer.error["code"]) == (409, "name_taken")
    assert [name for _, _, name in systems.rows()] == ["press-17", "press-18"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x", "id": str(uuid4())}, "id"),
        ({"id": str(uuid4())}, "id"),
        ({}, None),
        ({"name": None, "silent_after_seconds": None}, None),
        ({"silent_after_seconds": 59}, "silent_after_seconds"),
        ({"silent_after_seconds": 604_801}, "silent_after_seconds"),
        ({"silent_after_seconds": "600"}, "silent_after_seconds"),
        ({"name": "press-17b", "silent_after_seconds": 30}, "silent_after_seconds"),
    ],
)
def test_a_change_takes_a_valid_name_or_silence_only(systems: Systems, body: dict[str, Any], field: str | None) -> None:
    system_id = systems.post({"name": "press-17"}).body["id"]

    answer = systems.patch(system_id, body)

    assert answer.status == 400
    assert field in [detail["field"] for detail in answer.error["details"]]
    assert systems.owner("SELECT name, silent_after_seconds FROM systems") == [("press-17", 600)]


def test_the_silence_is_set_at_registration_and_changed_alone_or_with_the_name(systems: Systems) -> None:
    created = systems.post({"name": "pump-7", "silent_after_seconds": 3600})

    silenced = systems.patch(created.body["id"], {"silent_after_seconds": 60})
    both = systems.patch(created.body["id"], {"name": "pump-7b", "silent_after_seconds": 604_800})
    renamed = systems.patch(created.body["id"], {"name": "pump-7c"})

    assert (created.status, created.body["silent_after_seconds"]) == (201, 3600)
    assert (silenced.status, silenced.body["name"], silenced.body["silent_after_seconds"]) == (200, "pump-7", 60)
    assert (both.body["name"], both.body["silent_after_seconds"]) == ("pump-7b", 604_800)
    assert (renamed.body["name"], renamed.body["silent_after_seconds"]) == ("pump-7c", 604_800)
    assert systems.get(f"/api/v1/systems/{created.body['id']}").body == renamed.body
    assert systems.owner("SELECT name, silent_after_seconds FROM systems") == [("pump-7c", 604_800)]


@pytest.mark.parametrize("seconds", [59, 604_801, 1.5, None])
def test_a_registration_with_a_silence_out_of_range_is_refused_naming_it(systems: Systems, seconds: object) -> None:
    answer = systems.post({"name": "pump-7", "silent_after_seconds": seconds})

    assert (answer.status, answer.error["details"][0]["field"]) == (400, "silent_after_seconds")
    assert systems.rows() == []


def test_a_registration_found_again_keeps_its_silence(systems: Systems) -> None:
    wanted = uuid4()
    systems.post({"name": "pump-7", "id": str(wanted), "silent_after_seconds": 120})

    again = systems.post({"name": "pump-7", "id": str(wanted), "silent_after_seconds": 900})

    assert (again.status, again.body["silent_after_seconds"]) == (200, 120)


# --- another tenant's systems ---------------------------------------------------------------------------------------


def test_another_tenants_system_is_not_found_to_read_or_rename(systems: Systems) -> None:
    theirs = systems.post({"name": "their-press"}, verified=THEIRS).body["id"]
    unknown = uuid4()

    read = systems.get(f"/api/v1/systems/{theirs}")
    renamed = systems.patch(theirs, {"name": "mine-now"})
    nothing = systems.get(f"/api/v1/systems/{unknown}")
    not_an_id = systems.get("/api/v1/systems/press-17")

    for answer, shown in ((read, theirs), (renamed, theirs), (nothing, unknown), (not_an_id, "press-17")):
        assert (answer.status, answer.error["code"]) == (404, "not_found")
        assert answer.error["message"] == f"no system {shown} in this tenant"
    assert systems.rows() == [(UUID(theirs), OTHER_TENANT, "their-press")]
    assert systems.get("/api/v1/systems").body == {"items": [], "next_cursor": None}


# --- listing ----------------------------------------------------------------------------------------------------------


def test_the_listing_pages_through_the_tenants_systems_by_name(systems: Systems) -> None:
    names = [f"press-{number:02d}" for number in (7, 3, 11, 1, 5)]
    for name in names:
        systems.post({"name": name})
    systems.post({"name": "press-04"}, verified=THEIRS)

    seen: list[str] = []
    query: dict[str, str] = {"limit": "2"}
    pages = 0
    while True:
        answer = systems.get("/api/v1/systems", query)
        assert answer.status == 200, answer.body
        pages += 1
        seen += [item["name"] for item in answer.body["items"]]
        if answer.body["next_cursor"] is None:
            break
        query = {"limit": "2", "cursor": answer.body["next_cursor"]}

    assert seen == sorted(names)
    assert pages == 3


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"cursor": "bm9wZQ"}, "cursor"),
        ({"tenant_id": "x"}, "tenant_id"),
    ],
)
def test_a_listing_query_that_is_not_valid_is_400(systems: Systems, query: dict[str, str], field: str) -> None:
    answer = systems.get("/api/v1/systems", query)

    assert (answer.status, answer.error["details"][0]["field"]) == (400, field)


# --- figures ----------------------------------------------------------------------------------------------------------


def add_readings(systems: Systems, system_id: UUID, moments: list[datetime]) -> None:
    """Readings of one sensor at ``moments``, with the rollups the worker keeps for them."""
    sensor = uuid4()
    for moment in moments:
        systems.owner(
            "INSERT INTO readings (time, system_id, sensor_id, value, unit, quality, job_id)"
            " VALUES (%s, %s, %s, 1.0, 'bar', 95, %s)",
            moment,
            system_id,
            sensor,
            uuid4(),
        )
    with psycopg.connect(systems.owner_dsn, autocommit=True) as conn:
        rebuild_rollups(conn)


def quarantine(systems: Systems, tenant: str, system_id: UUID, status: str = "pending") -> None:
    reviewed = (None, None) if status == "pending" else ("operator-anna", NOW)
    systems.owner(
        "INSERT INTO quarantined_readings (tenant_id, job_id, system_id, reason, review_status, reviewed_by,"
        " reviewed_at) VALUES (%s, %s, %s, 'system_not_found', %s, %s, %s)",
        tenant,
        uuid4(),
        system_id,
        status,
        *reviewed,
    )


def test_the_figures_count_recent_readings_and_this_tenants_pending_rows(systems: Systems) -> None:
    press = UUID(systems.post({"name": "press-17"}).body["id"])
    idle = UUID(systems.post({"name": "press-18"}).body["id"])
    add_readings(systems, press, [NOW - timedelta(minutes=5), NOW - timedelta(hours=23), NOW - timedelta(days=3)])
    add_readings(systems, idle, [NOW - timedelta(days=40)])
    for status in ("pending", "pending", "rejected"):
        quarantine(systems, TENANT, press, status)
    quarantine(systems, OTHER_TENANT, press)  # their readings naming our id are not our system's

    listed = {item["name"]: item for item in systems.get("/api/v1/systems").body["items"]}
    one = systems.get(f"/api/v1/systems/{press}").body

    assert one == listed["press-17"]
    assert (one["readings_24h"], one["pending_quarantine"]) == (2, 2)
    assert datetime.fromisoformat(one["last_reading_at"]) == NOW - timedelta(minutes=5)
    assert (listed["press-18"]["readings_24h"], listed["press-18"]["pending_quarantine"]) == (0, 0)
    assert datetime.fromisoformat(listed["press-18"]["last_reading_at"]) == NOW - timedelta(days=40)


def test_the_figures_are_read_from_the_rollups_in_whole_minutes(systems: Systems) -> None:
    # Rollup rows with no readings behind them: what the list shows comes from readings_1m and sensor_latest only,
    # so it costs a row per sensor and minute however many readings a minute holds.
    press = UUID(systems.post({"name": "press-17"}).body["id"])
    now = datetime.now(UTC)
    sensors = [uuid4(), uuid4()]
    edge = (now - timedelta(hours=24)).replace(second=0, microsecond=0)  # holds the moment 24 hours back: counted
    for sensor, bucket, count in [
        (sensors[0], edge, 7),
        (sensors[0], edge - timedelta(minutes=1), 1000),  # wholly before the window
        (sensors[1], now.replace(second=0, microsecond=0), 5),
    ]:
        systems.owner(
            "INSERT INTO readings_1m (system_id, sensor_id, unit, bucket, count, sum, min, max, last_time, last_value)"
            " VALUES (%s, %s, 'bar', %s, %s, 1, 1, 1, %s, 1)",
            press,
            sensor,
            bucket,
            count,
            bucket,
        )
    for sensor, last_time in [(sensors[0], now - timedelta(hours=2)), (sensors[1], now - timedelta(seconds=3))]:
        systems.owner(
            "INSERT INTO sensor_latest (system_id, sensor_id, unit, last_time, last_value)"
            " VALUES (%s, %s, 'bar', %s, 1)",
            press,
            sensor,
            last_time,
        )

    shown = systems.get(f"/api/v1/systems/{press}").body

    assert shown["readings_24h"] == 12
    assert datetime.fromisoformat(shown["last_reading_at"]) == now - timedelta(seconds=3)  # the newest sensor's
    assert systems.owner("SELECT count(*) FROM readings") == [(0,)]


def test_registering_an_id_already_quarantined_shows_its_pending_readings(systems: Systems) -> None:
    late = uuid4()
    quarantine(systems, TENANT, late)

    answer = systems.post({"name": "late-press", "id": str(late)})

    assert (answer.status, answer.body["pending_quarantine"]) == (201, 1)


# --- races ------------------------------------------------------------------------------------------------------------


def blocked_on_a_lock(owner_dsn: str, application_name: str) -> bool:
    with psycopg.connect(owner_dsn) as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
            (application_name,),
        ).fetchone()
    return found is not None and found[0] > 0


def race(
    systems: Systems, tenant: str, first: SystemCreate, second: SystemCreate, second_tenant: str | None = None
) -> tuple[Registered, Registered | Exception]:
    """Register ``first`` in a transaction left open, send ``second`` (for ``second_tenant``, default the same) on
    another connection while it is, so that its insert waits on the unique index; then commit the first: what each
    registration answers."""
    outcome: list[Registered | Exception] = []
    with (
        psycopg.connect(systems.registrar_dsn, autocommit=True, application_name="race-first") as one,
        psycopg.connect(systems.registrar_dsn, autocommit=True, application_name="race-second") as two,
    ):

        def register_second() -> None:
            try:
                outcome.append(register_system(TimescaleSystemStore(lambda: two), second_tenant or tenant, second))
            except (NameTakenError, SystemIdTakenError) as exc:
                outcome.append(exc)

        with one.transaction():
            won = register_system(TimescaleSystemStore(lambda: one), tenant, first)
            waiting = threading.Thread(target=register_second)
            waiting.start()
            deadline = time.monotonic() + 10
            while not blocked_on_a_lock(systems.owner_dsn, "race-second"):
                assert time.monotonic() < deadline, "the second registration never waited for the first"
                time.sleep(0.02)
        waiting.join(10)
    (lost,) = outcome
    return won, lost


Check = Callable[[Registered | Exception], bool]


@pytest.mark.parametrize(
    ("second_name", "same_id", "check"),
    [
        ("press-17", True, lambda lost: isinstance(lost, Registered) and not lost.created),
        ("press-18", True, lambda lost: isinstance(lost, SystemIdTakenError)),
        ("press-17", False, lambda lost: isinstance(lost, NameTakenError)),
    ],
    ids=["same name and id: 200", "same id, another name: system_id_taken", "same name, another id: name_taken"],
)
def test_two_registrations_racing_give_one_201_and_one_answer_that_is_not_a_500(
    systems: Systems, second_name: str, same_id: bool, check: Check
) -> None:
    wanted = uuid4()
    first = SystemCreate(name="press-17", id=wanted)
    second = SystemCreate(name=second_name, id=wanted if same_id else uuid4())

    won, lost = race(systems, TENANT, first, second)

    assert won.created
    assert check(lost), lost
    assert systems.rows() == [(wanted, TENANT, "press-17")]


def test_two_registrations_by_name_alone_racing_find_one_system(systems: Systems) -> None:
    won, lost = race(systems, TENANT, SystemCreate(name="pump-3"), SystemCreate(name="pump-3"))

    assert isinstance(lost, Registered)
    assert (won.created, lost.created, lost.system.id) == (True, False, won.system.id)


def test_an_id_racing_across_tenants_is_taken_for_the_second(systems: Systems) -> None:
    wanted = uuid4()
    request = SystemCreate(name="press-1", id=wanted)

    won, lost = race(systems, OTHER_TENANT, request, request, second_tenant=TENANT)

    assert won.created
    assert isinstance(lost, SystemIdTakenError)
    assert systems.rows() == [(wanted, OTHER_TENANT, "press-1")]
