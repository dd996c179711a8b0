"""Who may do what, on every route of template.yaml's HttpApi, through `make run`'s stack.

The routes come from the template (``http_api_routes``), so a route added there without a plan here fails the
matrix. Each route is called as: no token, an expired token, one of another issuer, one for another audience, one
without the route's scope, a valid token of another tenant, and a valid token of the owning tenant. The odd tokens
are signed in-process with the checkout's local key, the one the running twin verifies with, so only the claim
under test is wrong.

Tenant A (the demo tenant) and tenant B each own a system, a completed job and quarantined readings. B must see
none of A's: a read of A's job, row or system is the tenant-scoped 404, a listing holds only B's own, a review of
A's row or a change of A's system changes nothing, and registering A's system id is refused without saying
whose. After the matrix, nothing a refused request touched has changed.

Then the forgeries: a body, a query or a header that tries to name the tenant, the job id, the status or the
reviewer is refused or ignored. What is stored carries the token's tenant, a job id the server made, status
queued, and the token's ``sub`` as the reviewer.

Then the operator's route and the limits: ``GET /health/deep`` needs ``ops:read`` (a token with no tenant and no
scope learns nothing), and this stack keeps the template's per-principal limits, so a flood of reads or reviews from
one principal is 429 with ``Retry-After`` while its other budgets and every other principal are untouched.
"""

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from sluice.adapters.dynamodb import job_from_item
from sluice_tools.cli import ALL_SCOPES
from sluice_tools.local.api import Route, http_api_routes

from ..reliability.figures import record_figures
from ..stack_harness import (
    SYSTEM,
    Reply,
    RunningStack,
    TokenMinter,
    finished_job,
    http,
    now_text,
    request,
    running_stack,
)

STACK = "sluice-access"
TENANT_A = "demo"  # owns SYSTEM, the demo system `make run` registers
TENANT_B = "access-b"

NO_TOKEN = "no token"
EXPIRED = "expired"
WRONG_ISSUER = "wrong issuer"
WRONG_AUDIENCE = "wrong audience"
MISSING_SCOPE = "missing scope"
OTHER_TENANT = "other tenant"
VALID = "valid"
CASES = (NO_TOKEN, EXPIRED, WRONG_ISSUER, WRONG_AUDIENCE, MISSING_SCOPE, OTHER_TENANT, VALID)
# The twin's (API Gateway's) own answers: no function runs.
REFUSED_BY_AUTHORIZER = {
    NO_TOKEN: (401, {"message": "Unauthorized"}),
    EXPIRED: (401, {"message": "Unauthorized"}),
    WRONG_ISSUER: (401, {"message": "Unauthorized"}),
    WRONG_AUDIENCE: (401, {"message": "Unauthorized"}),
    MISSING_SCOPE: (403, {"message": "Forbidden"}),
}
# Tenant A's quarantined rows, one per use, so each review meets a pending row.
ROW_USES = ("kept", "review", "bulk", "forged_single", "forged_bulk", "header_review")

pytestmark = pytest.mark.db


@dataclass
class World:
    """The two tenants' data, and every job the API accepted (202) while the module ran."""

    stack: RunningStack
    minter: TokenMinter
    sensor: str
    b_system: str
    a_job: str
    b_job: str
    a_rows: dict[str, int]
    b_row: int
    accepted: set[str] = field(default_factory=set)
    # Alert rules, alarms and webhooks: tenant A's by use ("kept" for reads and refusals, the others for the owner's
    # own deletion or acknowledgement), and tenant B's one of each.
    a_alerts: dict[str, str] = field(default_factory=dict)
    b_alerts: dict[str, str] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"{self.stack.api}{path}"

    def bearer(self, tenant: str = TENANT_A, sub: str = "access-operator", scope: str = ALL_SCOPES) -> str:
        return self.minter.mint(tenant, sub, scope)

    def post_batch(self, tenant: str, sub: str, system: str, readings: list[Any]) -> Reply:
        reply = http("POST", self.url("/api/v1/data/ingest"), self.bearer(tenant, sub), batch(system, readings))
        if reply.status == 202:
            self.accepted.add(reply.body["job_id"])
        return reply

    def reading(self, offset_s: int, value: float = 150.0) -> dict[str, Any]:
        return {
            "sensor_id": self.sensor,
            "timestamp": now_text(-offset_s),
            "value": value,
            "unit": "bar",
            "quality": 95,
        }

    def row(self, row_id: int) -> dict[str, Any]:
        with psycopg.connect(self.stack.dsn) as conn:
            found = conn.execute(
                "SELECT tenant_id, review_status, reviewed_by FROM quarantined_readings WHERE id = %s", (row_id,)
            ).fetchone()
        assert found is not None
        return dict(zip(("tenant_id", "review_status", "reviewed_by"), found, strict=True))

    def stored_jobs(self) -> dict[str, str]:
        """Every job record in the jobs table: job id -> tenant."""
        client, table = self.stack.dynamodb(), self.stack.names().ref("JobsTable")
        jobs = {}
        for page in client.get_paginator("scan").paginate(TableName=table):
            for item in page.get("Items", []):
                job = job_from_item(item)
                jobs[str(job.job_id)] = job.tenant_id
        return jobs


def batch(system: str, readings: list[Any]) -> dict[str, Any]:
    return {"system_id": system, "readings": readings}


@pytest.fixture(scope="module")
def stack(server_dsn: str) -> Iterator[RunningStack]:
    with running_stack(server_dsn, STACK, template_limits=True) as running:
        yield running


@pytest.fixture(scope="module")
def world(stack: RunningStack) -> World:
    """Tenant A's job with two readings stored and one quarantined row per use; tenant B's system and job with one
    quarantined row."""
    added = stack.sluice("systems", "add", "--tenant", TENANT_B, "--name", "press-b")
    assert added.returncode == 0, added.stderr
    world = World(stack, TokenMinter.for_stack(stack), str(uuid.uuid4()), added.stdout.strip(), "", "", {}, 0)

    readings = [world.reading(n) for n in (1, 2)] + [world.reading(10 + n, 900.0) for n in range(len(ROW_USES))]
    a_reply = world.post_batch(TENANT_A, "access-setup", SYSTEM, readings)
    b_reply = world.post_batch(TENANT_B, "access-setup", world.b_system, [world.reading(30), world.reading(31, 950.0)])
    assert (a_reply.status, b_reply.status) == (202, 202), (a_reply.body, b_reply.body)
    world.a_job, world.b_job = a_reply.body["job_id"], b_reply.body["job_id"]
    for tenant, job_id, quarantined in ((TENANT_A, world.a_job, len(ROW_USES)), (TENANT_B, world.b_job, 1)):
        done = finished_job(stack, world.bearer(tenant), job_id)
        listed = http("GET", world.url(f"/api/v1/quarantine?job_id={job_id}"), world.bearer(tenant)).body
        assert (done["status"], done["quarantined_readings"]) == ("completed", quarantined), (done, listed)

    def rows(tenant: str, job_id: str) -> list[int]:
        listed = http("GET", world.url(f"/api/v1/quarantine?job_id={job_id}"), world.bearer(tenant))
        assert listed.status == 200, listed.body
        return sorted(item["id"] for item in listed.body["items"])

    world.a_rows = dict(zip(ROW_USES, rows(TENANT_A, world.a_job), strict=True))
    (world.b_row,) = rows(TENANT_B, world.b_job)
    world.a_alerts = alerts_of(world, TENANT_A, b_side=False)
    world.b_alerts = alerts_of(world, TENANT_B, b_side=True)
    return world


ACCESS_RULE = {
    "unit": "bar",
    "condition": "above",
    "threshold": 250.0,
    "clear_threshold": 240.0,
    "for_seconds": 300,
    "severity": "critical",
}
# Loopback: `make run` allows webhook receivers on the machine (SLUICE_WEBHOOK_ALLOW_LOCAL); nothing listens on 9.
ACCESS_HOOK = {"url": "http://127.0.0.1:9/access", "events": ["alarm.acknowledged"]}


def alerts_of(world: World, tenant: str, *, b_side: bool) -> dict[str, str]:
    """A tenant's rules, alarms and webhooks for the matrix, made through the API (alarms with SQL, as the
    evaluator writes them): a kept one of each, and for tenant A one more of each for the owner to act on."""
    uses = ("kept",) if b_side else ("kept", "doomed")
    made: dict[str, str] = {}
    for use in uses:
        rule = http("POST", world.url("/api/v1/alert-rules"), world.bearer(tenant), ACCESS_RULE | {"name": use})
        hook = http("POST", world.url("/api/v1/webhooks"), world.bearer(tenant), ACCESS_HOOK)
        assert (rule.status, hook.status) == (201, 201), (rule.body, hook.body)
        made[f"rule_{use}"], made[f"webhook_{use}"] = rule.body["id"], hook.body["id"]
    for use in ("kept",) if b_side else ("kept", "acknowledge"):
        with psycopg.connect(world.stack.dsn, autocommit=True) as conn:
            found = conn.execute(
                "INSERT INTO alarms (tenant_id, rule_id, rule_name, kind, severity, system_id, sensor_id, unit,"
                " status, value, trigger_time) VALUES (%s, %s, 'kept', 'threshold', 'critical', %s, %s, 'bar',"
                " 'active', 256.5, now()) RETURNING id",
                (tenant, made["rule_kept"], SYSTEM if tenant == TENANT_A else world.b_system, uuid.uuid4()),
            ).fetchone()
        assert found is not None
        made[f"alarm_{use}"] = str(found[0])
    return made


def alert_row(world: World, table: str, row_id: str) -> tuple[Any, ...] | None:
    """Who owns a row of alert_rules, alarms or webhooks, and the state the matrix may change."""
    columns = {"alert_rules": "tenant_id, severity", "alarms": "tenant_id, status", "webhooks": "tenant_id, url"}
    with psycopg.connect(world.stack.dsn) as conn:
        return conn.execute(f"SELECT {columns[table]} FROM {table} WHERE id = %s", (row_id,)).fetchone()  # noqa: S608


def a_alerts_untouched(world: World) -> list[str]:
    """Tenant A's kept rule, alarm and webhook, as the setup left them."""
    found = (
        alert_row(world, "alert_rules", world.a_alerts["rule_kept"]),
        alert_row(world, "alarms", world.a_alerts["alarm_kept"]),
        alert_row(world, "webhooks", world.a_alerts["webhook_kept"]),
    )
    kept = ((TENANT_A, "critical"), (TENANT_A, "active"), (TENANT_A, ACCESS_HOOK["url"]))
    return expect(found == kept, f"A's rule, alarm and webhook are now {found}")


# --- what each route is called with, and what its answers must show ----------------------------------------------

type Check = Callable[[World, Reply, str], list[str]]


@dataclass(frozen=True)
class RoutePlan:
    """How to call a route on tenant A's data, and what the owner (``valid``) and tenant B (``other``) must get."""

    call: Callable[[World], tuple[str, Any]]
    valid_status: int
    valid: Check
    other_status: int
    other: Check


def expect(condition: bool, problem: str) -> list[str]:
    return [] if condition else [problem]


def ids_of(reply: Reply, name: str) -> set[Any]:
    return {item[name] for item in reply.body.get("items", [])} if isinstance(reply.body, dict) else set()


def error_code(reply: Reply) -> str | None:
    body = reply.body
    return body.get("error", {}).get("code") if isinstance(body, dict) else None


def _ingest_call(world: World) -> tuple[str, Any]:
    return "/api/v1/data/ingest", batch(SYSTEM, [world.reading(200 + len(world.accepted))])


def _accepted_for(tenant: str, other: str) -> Check:
    def check(world: World, reply: Reply, sub: str) -> list[str]:
        job_id = reply.body["job_id"]
        world.accepted.add(job_id)
        problems = expect(reply.body["status"] == "queued", f"status {reply.body['status']}, not queued")
        done = finished_job(world.stack, world.bearer(tenant), job_id)
        hidden = http("GET", world.url(f"/api/v1/jobs/{job_id}"), world.bearer(other))
        problems += expect(hidden.status == 404, f"the job is visible to {other} ({hidden.status})")
        problems += expect(world.stored_jobs().get(job_id) == tenant, f"the job is not stored as {tenant}'s")
        if tenant == TENANT_B:  # B sent readings for A's system: none may land as A's
            reasons = http("GET", world.url(f"/api/v1/quarantine?job_id={job_id}"), world.bearer(tenant)).body
            problems += expect(
                done["inserted_readings"] == 0 and {i["reason"] for i in reasons["items"]} == {"system_not_found"},
                f"B's readings for A's system were not all system_not_found: {done}",
            )
        return problems

    return check


def _upload_for(tenant: str, other: str) -> Check:
    """An upload answered 201: its job is its caller's tenant's, awaiting its file under that tenant's uploads/
    folder, and invisible to the other tenant."""

    def check(world: World, reply: Reply, sub: str) -> list[str]:
        job_id = reply.body["job_id"]
        world.accepted.add(job_id)
        key = reply.body["upload"]["fields"]["key"]
        problems = expect(reply.body["status"] == "awaiting_upload", f"status {reply.body['status']}")
        problems += expect(key == f"drops/{tenant}/uploads/{job_id}.csv", f"the form is for {key}")
        hidden = http("GET", world.url(f"/api/v1/jobs/{job_id}"), world.bearer(other))
        problems += expect(hidden.status == 404, f"the job is visible to {other} ({hidden.status})")
        return problems + expect(world.stored_jobs().get(job_id) == tenant, f"the job is not stored as {tenant}'s")

    return check


def _lists(own: Callable[[World], Any], foreign: Callable[[World], Any], name: str) -> Check:
    def check(world: World, reply: Reply, sub: str) -> list[str]:
        listed = ids_of(reply, name)
        return expect(own(world) in listed, f"its own {own(world)} is not listed") + expect(
            foreign(world) not in listed, f"the other tenant's {foreign(world)} is listed"
        )

    return check


def _shows(name: str, value: Callable[[World], Any]) -> Check:
    def check(world: World, reply: Reply, sub: str) -> list[str]:
        return expect(reply.body.get(name) == value(world), f"{name} is {reply.body.get(name)}")

    return check


def _not_found(world: World, reply: Reply, sub: str) -> list[str]:
    problems = expect(error_code(reply) == "not_found", f"code {error_code(reply)}, not not_found")
    return problems + kept_row_untouched(world)


def kept_row_untouched(world: World) -> list[str]:
    row = world.row(world.a_rows["kept"])
    return expect(row == {"tenant_id": TENANT_A, "review_status": "pending", "reviewed_by": None}, f"A's row: {row}")


def _reviewed_by(sub_row: str) -> Check:
    def check(world: World, reply: Reply, sub: str) -> list[str]:
        row = world.row(world.a_rows[sub_row])
        return expect(reply.body.get("reviewed_by") == sub, f"reviewed_by {reply.body.get('reviewed_by')}") + expect(
            row == {"tenant_id": TENANT_A, "review_status": "rejected", "reviewed_by": sub}, f"stored row: {row}"
        )

    return check


def _bulk_reviewed(world: World, reply: Reply, sub: str) -> list[str]:
    row_id = world.a_rows["bulk"]
    wanted = [{"id": row_id, "review_status": "rejected", "error": None}]
    problems = expect(reply.body.get("results") == wanted, f"results {reply.body.get('results')}")
    return problems + expect(world.row(row_id)["reviewed_by"] == sub, "the reviewer is not the token's sub")


def _bulk_not_found(world: World, reply: Reply, sub: str) -> list[str]:
    results = reply.body.get("results") or [{}]
    code = (results[0].get("error") or {}).get("code")
    problems = expect(len(results) == 1 and code == "not_found", f"results {results}")
    return problems + expect(reply.body.get("reviewed") == 0, "a row was reviewed") + kept_row_untouched(world)


def system_row(world: World, system_id: str) -> tuple[Any, ...] | None:
    with psycopg.connect(world.stack.dsn) as conn:
        return conn.execute(
            "SELECT tenant_id, name, silent_after_seconds FROM systems WHERE id = %s", (system_id,)
        ).fetchone()


def demo_system_untouched(world: World) -> list[str]:
    found = system_row(world, SYSTEM)
    return expect(found == (TENANT_A, "press-17", 600), f"A's system is now {found}")


def _registered_again(world: World, reply: Reply, sub: str) -> list[str]:
    # The demo system, registered again as it is: 200, nothing changed.
    problems = expect((reply.body.get("id"), reply.body.get("name")) == (SYSTEM, "press-17"), f"body {reply.body}")
    return problems + demo_system_untouched(world)


def _id_taken(world: World, reply: Reply, sub: str) -> list[str]:
    problems = expect(error_code(reply) == "system_id_taken", f"code {error_code(reply)}, not system_id_taken")
    problems += expect("press-17" not in str(reply.body), f"the answer names A's system: {reply.body}")
    return problems + demo_system_untouched(world)


def _system_not_found(world: World, reply: Reply, sub: str) -> list[str]:
    problems = expect(error_code(reply) == "not_found", f"code {error_code(reply)}, not not_found")
    return problems + demo_system_untouched(world)


def _alerts_not_found(world: World, reply: Reply, sub: str) -> list[str]:
    problems = expect(error_code(reply) == "not_found", f"code {error_code(reply)}, not not_found")
    return problems + a_alerts_untouched(world)


def _created_for(tenant: str, table: str) -> Check:
    """A rule or webhook created (201) as its caller's tenant's, and A's own untouched."""

    def check(world: World, reply: Reply, sub: str) -> list[str]:
        stored = alert_row(world, table, reply.body["id"])
        problems = expect(stored is not None and stored[0] == tenant, f"stored as {stored}")
        return problems + expect(reply.body.get("created_by") == sub, "created_by is not the token's sub")

    return check


def _unchanged_rule(world: World, reply: Reply, sub: str) -> list[str]:
    return expect(reply.body.get("id") == world.a_alerts["rule_kept"], f"body {reply.body}") + a_alerts_untouched(world)


def _deleted(table: str, key: str) -> Check:
    def check(world: World, reply: Reply, sub: str) -> list[str]:
        gone = alert_row(world, table, world.a_alerts[key])
        return expect(gone is None, f"the {table} row is still there") + a_alerts_untouched(world)

    return check


def _acknowledged(world: World, reply: Reply, sub: str) -> list[str]:
    problems = expect(
        (reply.body.get("status"), reply.body.get("acknowledged_by")) == ("acknowledged", sub), f"body {reply.body}"
    )
    return problems + a_alerts_untouched(world)


def _healthy(world: World, reply: Reply, sub: str) -> list[str]:
    return expect(reply.body.get("status") == "ok", f"health {reply.body}")


def _console_page(world: World, reply: Reply, sub: str) -> list[str]:
    # /console redirects (urllib follows) to the page, which is the same for any caller: it holds no data.
    return expect("<title>Sluice console</title>" in str(reply.body), f"not the console's page: {reply.body!r:.200}")


def _console_config(world: World, reply: Reply, sub: str) -> list[str]:
    return expect(reply.body == {"mode": "fragment", "tenant_claim": "tenant_id"}, f"config {reply.body}")


PLANS: dict[str, RoutePlan] = {
    "POST /api/v1/data/ingest": RoutePlan(
        _ingest_call, 202, _accepted_for(TENANT_A, TENANT_B), 202, _accepted_for(TENANT_B, TENANT_A)
    ),
    "POST /api/v1/uploads": RoutePlan(
        lambda w: ("/api/v1/uploads", {"filename": "access.csv", "size": 10}),
        201,
        _upload_for(TENANT_A, TENANT_B),
        201,
        _upload_for(TENANT_B, TENANT_A),
    ),
    "GET /api/v1/jobs": RoutePlan(
        lambda w: ("/api/v1/jobs?limit=100", None),
        200,
        _lists(lambda w: w.a_job, lambda w: w.b_job, "job_id"),
        200,
        _lists(lambda w: w.b_job, lambda w: w.a_job, "job_id"),
    ),
    "GET /api/v1/jobs/{job_id+}": RoutePlan(
        lambda w: (f"/api/v1/jobs/{w.a_job}", None), 200, _shows("job_id", lambda w: w.a_job), 404, _not_found
    ),
    "GET /api/v1/quarantine": RoutePlan(
        lambda w: ("/api/v1/quarantine?limit=500", None),
        200,
        _lists(lambda w: w.a_rows["kept"], lambda w: w.b_row, "id"),
        200,
        _lists(lambda w: w.b_row, lambda w: w.a_rows["kept"], "id"),
    ),
    "GET /api/v1/quarantine/{id}": RoutePlan(
        lambda w: (f"/api/v1/quarantine/{w.a_rows['kept']}", None),
        200,
        _shows("id", lambda w: w.a_rows["kept"]),
        404,
        _not_found,
    ),
    "POST /api/v1/quarantine/{id}/review": RoutePlan(
        # The owner reviews the "review" row; everyone else aims at the "kept" row, which must stay pending.
        lambda w: (f"/api/v1/quarantine/{w.a_rows['kept']}/review", {"action": "reject"}),
        200,
        _reviewed_by("review"),
        404,
        _not_found,
    ),
    "POST /api/v1/quarantine/review": RoutePlan(
        lambda w: ("/api/v1/quarantine/review", {"action": "reject", "ids": [w.a_rows["kept"]]}),
        200,
        _bulk_reviewed,
        200,
        _bulk_not_found,
    ),
    "GET /api/v1/systems": RoutePlan(
        lambda w: ("/api/v1/systems?limit=100", None),
        200,
        _lists(lambda w: SYSTEM, lambda w: w.b_system, "id"),
        200,
        _lists(lambda w: w.b_system, lambda w: SYSTEM, "id"),
    ),
    "GET /api/v1/systems/{system_id}": RoutePlan(
        lambda w: (f"/api/v1/systems/{SYSTEM}", None), 200, _shows("id", lambda w: SYSTEM), 404, _system_not_found
    ),
    # The owner's registration of its own system again is idempotent (200); B's, of A's id, is refused without a
    # word about whose it is.
    "POST /api/v1/systems": RoutePlan(
        lambda w: ("/api/v1/systems", {"name": "press-17", "id": SYSTEM}), 200, _registered_again, 409, _id_taken
    ),
    # A change to the name and silence it has: 200 for the owner, 404 for B, and the system keeps both either way.
    "PATCH /api/v1/systems/{system_id}": RoutePlan(
        lambda w: (f"/api/v1/systems/{SYSTEM}", {"name": "press-17", "silent_after_seconds": 600}),
        200,
        _registered_again,
        404,
        _system_not_found,
    ),
    # A's system's readings and sensors: the owner's page names the system; B's read of them is the same 404 as
    # for a system nobody registered.
    "GET /api/v1/systems/{system_id}/readings": RoutePlan(
        lambda w: (f"/api/v1/systems/{SYSTEM}/readings?resolution=1m", None),
        200,
        _shows("system_id", lambda w: SYSTEM),
        404,
        _system_not_found,
    ),
    "GET /api/v1/systems/{system_id}/sensors": RoutePlan(
        lambda w: (f"/api/v1/systems/{SYSTEM}/sensors", None),
        200,
        _shows("system_id", lambda w: SYSTEM),
        404,
        _system_not_found,
    ),
    # Alerts: B's calls aim at A's kept rule, alarm and webhook and get the tenant-scoped 404, changing nothing;
    # the owner deletes and acknowledges rows kept for that (run_cell), and B's creations are B's own.
    "POST /api/v1/alert-rules": RoutePlan(
        lambda w: ("/api/v1/alert-rules", ACCESS_RULE | {"name": f"access {uuid.uuid4().hex[:8]}"}),
        201,
        _created_for(TENANT_A, "alert_rules"),
        201,
        _created_for(TENANT_B, "alert_rules"),
    ),
    "GET /api/v1/alert-rules": RoutePlan(
        lambda w: ("/api/v1/alert-rules?limit=100", None),
        200,
        _lists(lambda w: w.a_alerts["rule_kept"], lambda w: w.b_alerts["rule_kept"], "id"),
        200,
        _lists(lambda w: w.b_alerts["rule_kept"], lambda w: w.a_alerts["rule_kept"], "id"),
    ),
    "GET /api/v1/alert-rules/{rule_id}": RoutePlan(
        lambda w: (f"/api/v1/alert-rules/{w.a_alerts['rule_kept']}", None),
        200,
        _shows("id", lambda w: w.a_alerts["rule_kept"]),
        404,
        _alerts_not_found,
    ),
    "PATCH /api/v1/alert-rules/{rule_id}": RoutePlan(
        lambda w: (f"/api/v1/alert-rules/{w.a_alerts['rule_kept']}", {"severity": "critical"}),
        200,
        _unchanged_rule,
        404,
        _alerts_not_found,
    ),
    "DELETE /api/v1/alert-rules/{rule_id}": RoutePlan(
        lambda w: (f"/api/v1/alert-rules/{w.a_alerts['rule_kept']}", None),
        204,
        _deleted("alert_rules", "rule_doomed"),
        404,
        _alerts_not_found,
    ),
    "GET /api/v1/alarms": RoutePlan(
        lambda w: ("/api/v1/alarms?limit=100", None),
        200,
        _lists(lambda w: w.a_alerts["alarm_kept"], lambda w: w.b_alerts["alarm_kept"], "id"),
        200,
        _lists(lambda w: w.b_alerts["alarm_kept"], lambda w: w.a_alerts["alarm_kept"], "id"),
    ),
    "GET /api/v1/alarms/{alarm_id}": RoutePlan(
        lambda w: (f"/api/v1/alarms/{w.a_alerts['alarm_kept']}", None),
        200,
        _shows("id", lambda w: w.a_alerts["alarm_kept"]),
        404,
        _alerts_not_found,
    ),
    "POST /api/v1/alarms/{alarm_id}/acknowledge": RoutePlan(
        lambda w: (f"/api/v1/alarms/{w.a_alerts['alarm_kept']}/acknowledge", {"note": "access"}),
        200,
        _acknowledged,
        404,
        _alerts_not_found,
    ),
    "POST /api/v1/webhooks": RoutePlan(
        lambda w: ("/api/v1/webhooks", ACCESS_HOOK),
        201,
        _created_for(TENANT_A, "webhooks"),
        201,
        _created_for(TENANT_B, "webhooks"),
    ),
    "GET /api/v1/webhooks": RoutePlan(
        lambda w: ("/api/v1/webhooks?limit=100", None),
        200,
        _lists(lambda w: w.a_alerts["webhook_kept"], lambda w: w.b_alerts["webhook_kept"], "id"),
        200,
        _lists(lambda w: w.b_alerts["webhook_kept"], lambda w: w.a_alerts["webhook_kept"], "id"),
    ),
    "GET /api/v1/webhooks/{webhook_id}": RoutePlan(
        lambda w: (f"/api/v1/webhooks/{w.a_alerts['webhook_kept']}", None),
        200,
        _shows("id", lambda w: w.a_alerts["webhook_kept"]),
        404,
        _alerts_not_found,
    ),
    "DELETE /api/v1/webhooks/{webhook_id}": RoutePlan(
        lambda w: (f"/api/v1/webhooks/{w.a_alerts['webhook_kept']}", None),
        204,
        _deleted("webhooks", "webhook_doomed"),
        404,
        _alerts_not_found,
    ),
    "GET /api/v1/webhooks/{webhook_id}/deliveries": RoutePlan(
        lambda w: (f"/api/v1/webhooks/{w.a_alerts['webhook_kept']}/deliveries", None),
        200,
        _shows("next_cursor", lambda w: None),
        404,
        _alerts_not_found,
    ),
    "GET /health": RoutePlan(lambda w: ("/health", None), 200, _healthy, 200, _healthy),
    "GET /health/deep": RoutePlan(lambda w: ("/health/deep", None), 200, _healthy, 200, _healthy),
    "GET /console": RoutePlan(lambda w: ("/console", None), 200, _console_page, 200, _console_page),
    "GET /console/{proxy+}": RoutePlan(
        lambda w: ("/console/config.json", None), 200, _console_config, 200, _console_config
    ),
}


def case_token(world: World, route: Route, case: str) -> tuple[str | None, str]:
    """The token a case sends, and its ``sub``."""
    sub = f"access-{case.replace(' ', '-')}"
    now = int(time.time())
    tokens: dict[str, Callable[[], str | None]] = {
        NO_TOKEN: lambda: None,
        EXPIRED: lambda: world.minter.mint(TENANT_A, sub, issued_at=now - 7200),  # expired an hour ago
        WRONG_ISSUER: lambda: world.minter.mint(TENANT_A, sub, iss="https://issuer.invalid/"),
        WRONG_AUDIENCE: lambda: world.minter.mint(TENANT_A, sub, aud="not-sluice"),
        MISSING_SCOPE: lambda: world.minter.mint(
            TENANT_A, sub, " ".join(scope for scope in ALL_SCOPES.split() if scope not in route.scopes)
        ),
        OTHER_TENANT: lambda: world.minter.mint(TENANT_B, sub),
        VALID: lambda: world.minter.mint(TENANT_A, sub),
    }
    return tokens[case](), sub


def run_cell(world: World, route: Route, case: str) -> dict[str, Any]:
    """One request of the matrix and its verdict."""
    plan = PLANS[route.key]
    path, body = plan.call(world)
    if case == VALID and route.key == "POST /api/v1/quarantine/{id}/review":
        path = f"/api/v1/quarantine/{world.a_rows['review']}/review"
    if case == VALID and route.key == "POST /api/v1/quarantine/review":
        body = {"action": "reject", "ids": [world.a_rows["bulk"]]}
    # The owner deletes and acknowledges the rows kept for that; everyone else aims at the kept ones.
    owners_own = {
        "DELETE /api/v1/alert-rules/{rule_id}": f"/api/v1/alert-rules/{world.a_alerts['rule_doomed']}",
        "DELETE /api/v1/webhooks/{webhook_id}": f"/api/v1/webhooks/{world.a_alerts['webhook_doomed']}",
        "POST /api/v1/alarms/{alarm_id}/acknowledge": (
            f"/api/v1/alarms/{world.a_alerts['alarm_acknowledge']}/acknowledge"
        ),
    }
    if case == VALID and route.key in owners_own:
        path = owners_own[route.key]
    bearer, sub = case_token(world, route, case)
    reply = http(route.method, world.url(path), bearer, body)
    problems: list[str] = []
    if route.authorizer is None or (case == MISSING_SCOPE and not route.scopes):
        # No authorizer (GET /health): any token or none is ignored. A route without scopes: any valid token.
        expected, check = (plan.valid_status, plan.valid)
    elif case in REFUSED_BY_AUTHORIZER:
        expected, refusal = REFUSED_BY_AUTHORIZER[case]
        problems += expect(reply.body == refusal, f"body {reply.body}")
        check = None
    elif case == OTHER_TENANT:
        expected, check = plan.other_status, plan.other
    else:
        expected, check = plan.valid_status, plan.valid
    if reply.status != expected:
        problems.append(f"status {reply.status}: {reply.body}")
    elif check is not None:
        problems += check(world, reply, sub)
    return {"route": route.key, "case": case, "expected": expected, "status": reply.status, "problems": problems}


def test_every_route_answers_each_kind_of_caller_as_it_should(world: World) -> None:
    _, routes = http_api_routes(world.stack.names())
    keys = {route.key for route in routes}
    assert keys == set(PLANS), f"routes of template.yaml without a plan here: {keys - set(PLANS)}"
    before = set(world.stored_jobs())

    matrix = [run_cell(world, route, case) for route in routes for case in CASES]

    # Refused requests changed nothing: A's kept row is pending and unreviewed, B's too, and the only new jobs are
    # the ones the API accepted (each checked above as its sender's).
    aftermath = kept_row_untouched(world)
    aftermath += expect(world.row(world.b_row)["review_status"] == "pending", "B's row was reviewed")
    new_jobs = set(world.stored_jobs()) - before
    aftermath += expect(new_jobs <= world.accepted, f"jobs stored without a 202: {new_jobs - world.accepted}")
    passed = sum(1 for cell in matrix if not cell["problems"])
    record_figures(
        "access",
        {
            "routes": len(routes),
            "cells": len(matrix),
            "passed": passed,
            "aftermath_problems": aftermath,
            "matrix": [{**cell, "passed": not cell["problems"]} for cell in matrix],
        },
    )
    failed = [f"{cell['route']} / {cell['case']}: {cell['problems']}" for cell in matrix if cell["problems"]]
    assert failed == [], "\n".join(failed)
    assert aftermath == []
    assert (len(matrix), passed) == (len(routes) * len(CASES), len(routes) * len(CASES))


# --- forgeries: nothing a client sends can name the tenant, a job id, a status or a reviewer ------------------------


def test_an_ingest_body_naming_tenant_job_or_status_is_refused_and_stores_nothing(world: World) -> None:
    before = world.stored_jobs()
    forged = batch(SYSTEM, [world.reading(300)]) | {
        "tenant_id": TENANT_B,
        "job_id": str(uuid.uuid4()),
        "status": "completed",
    }

    reply = http("POST", world.url("/api/v1/data/ingest"), world.bearer(sub="access-forger"), forged)

    assert (reply.status, error_code(reply)) == (400, "invalid_request"), reply.body
    named = {detail["field"] for detail in reply.body["error"]["details"]}
    assert named == {"tenant_id", "job_id", "status"}
    assert world.stored_jobs() == before
    assert http("GET", world.url(f"/api/v1/jobs/{forged['job_id']}"), world.bearer(TENANT_B)).status == 404


def test_an_upload_naming_tenant_job_key_or_status_is_refused_and_stores_nothing(world: World) -> None:
    before = world.stored_jobs()
    forged = {"filename": "forged.csv", "size": 10, "tenant_id": TENANT_B, "job_id": str(uuid.uuid4())}
    forged |= {"key": f"drops/{TENANT_B}/uploads/forged.csv", "status": "completed"}

    reply = http("POST", world.url("/api/v1/uploads"), world.bearer(sub="access-forger"), forged)

    assert (reply.status, error_code(reply)) == (400, "invalid_request"), reply.body
    assert {detail["field"] for detail in reply.body["error"]["details"]} == {"tenant_id", "job_id", "key", "status"}
    assert world.stored_jobs() == before


def test_a_query_naming_a_tenant_is_refused(world: World) -> None:
    b_token = world.bearer(TENANT_B)

    jobs = http("GET", world.url(f"/api/v1/jobs?tenant_id={TENANT_A}"), b_token)
    rows = http("GET", world.url(f"/api/v1/quarantine?tenant_id={TENANT_A}"), b_token)

    assert (jobs.status, error_code(jobs)) == (400, "invalid_request")
    assert (rows.status, error_code(rows)) == (400, "invalid_request")
    assert jobs.body["error"]["details"][0]["field"] == "tenant_id"


def test_tenant_and_job_headers_and_reading_members_change_nothing(world: World) -> None:
    forged_job = str(uuid.uuid4())
    reading = world.reading(400) | {"tenant_id": TENANT_B, "job_id": forged_job, "system_id": world.b_system}
    headers = {"X-Tenant": TENANT_B, "X-Tenant-Id": TENANT_B, "X-Job-Id": forged_job, "X-Amzn-Oidc-Identity": "b"}

    reply = request(
        "POST",
        world.url("/api/v1/data/ingest"),
        world.bearer(sub="access-header"),
        batch(SYSTEM, [reading]),
        headers,
    )

    assert reply.status == 202, reply.body
    job_id = reply.body["job_id"]
    world.accepted.add(job_id)
    assert job_id != forged_job
    assert reply.body["status"] == "queued"
    assert world.stored_jobs()[job_id] == TENANT_A
    done = finished_job(world.stack, world.bearer(), job_id)
    assert (done["status"], done["inserted_readings"]) == ("completed", 1), done
    with psycopg.connect(world.stack.dsn) as conn:
        stored = conn.execute(
            "SELECT job_id::text, system_id::text FROM readings WHERE sensor_id = %s AND time = %s",
            (world.sensor, reading["timestamp"]),
        ).fetchall()
    assert stored == [(job_id, SYSTEM)]
    assert http("GET", world.url(f"/api/v1/jobs/{job_id}"), world.bearer(TENANT_B)).status == 404


def test_another_tenant_reusing_a_sensor_id_cannot_block_overwrite_or_probe_the_owners_readings(world: World) -> None:
    # Tenant B knows A's sensor id and the instants of A's two stored readings.
    with psycopg.connect(world.stack.dsn) as conn:
        first, second = (
            moment.isoformat().replace("+00:00", "Z")
            for (moment,) in conn.execute("SELECT time FROM readings WHERE job_id = %s ORDER BY time", (world.a_job,))
        )
    # B posts A's sensor at the first instant under B's own system: a reading of B's, which lands beside A's, and
    # B's counts say nothing about A's reading.
    forged = world.post_batch(TENANT_B, "access-prober", world.b_system, [world.reading(0, 1.0) | {"timestamp": first}])
    assert forged.status == 202, forged.body
    done = finished_job(world.stack, world.bearer(TENANT_B), forged.body["job_id"])
    assert (done["inserted_readings"], done["duplicate_readings"]) == (1, 0), done

    # A fix of one of B's quarantined rows to A's second instant replays into B's system: 200, never a 409 that
    # would tell B that A holds a reading there.
    bad = world.post_batch(TENANT_B, "access-prober", world.b_system, [world.reading(50, 950.0)])
    assert finished_job(world.stack, world.bearer(TENANT_B), bad.body["job_id"])["quarantined_readings"] == 1
    b_reviewer = world.bearer(TENANT_B, sub="access-prober")
    (row,) = http("GET", world.url(f"/api/v1/quarantine?job_id={bad.body['job_id']}"), b_reviewer).body["items"]
    probe = {"action": "fix", "value": 100.0, "timestamp": second}
    fixed = http("POST", world.url(f"/api/v1/quarantine/{row['id']}/review"), b_reviewer, probe)
    assert fixed.status == 200, fixed.body

    with psycopg.connect(world.stack.dsn) as conn:
        stored = conn.execute(
            "SELECT system_id::text, value FROM readings WHERE sensor_id = %s AND time = ANY(%s::timestamptz[])"
            " ORDER BY time, value",
            (world.sensor, [first, second]),
        ).fetchall()
    assert stored == [(world.b_system, 1.0), (SYSTEM, 150.0), (world.b_system, 100.0), (SYSTEM, 150.0)]
    a_job = finished_job(world.stack, world.bearer(), world.a_job)
    assert (a_job["inserted_readings"], a_job["duplicate_readings"]) == (2, 0), a_job


@pytest.mark.parametrize("kind", ["single", "bulk"])
def test_a_review_body_naming_reviewer_status_or_tenant_is_refused(world: World, kind: str) -> None:
    row_id = world.a_rows[f"forged_{kind}"]
    path, body = (
        (f"/api/v1/quarantine/{row_id}/review", {"action": "reject"})
        if kind == "single"
        else ("/api/v1/quarantine/review", {"action": "reject", "ids": [row_id]})
    )
    forged = body | {"reviewed_by": "mallory", "review_status": "approved", "tenant_id": TENANT_B}

    reply = http("POST", world.url(path), world.bearer(sub="access-reviewer"), forged)

    assert (reply.status, error_code(reply)) == (400, "invalid_request"), reply.body
    named = {detail["field"] for detail in reply.body["error"]["details"]}
    assert named == {"reviewed_by", "review_status", "tenant_id"}
    assert world.row(row_id) == {"tenant_id": TENANT_A, "review_status": "pending", "reviewed_by": None}


def test_the_reviewer_is_the_tokens_sub_whatever_the_headers_say(world: World) -> None:
    row_id = world.a_rows["header_review"]
    headers = {"X-Tenant": TENANT_B, "X-Reviewer": "mallory", "X-Forwarded-User": "mallory"}

    reply = request(
        "POST",
        world.url(f"/api/v1/quarantine/{row_id}/review"),
        world.bearer(sub="access-anna"),
        {"action": "reject", "notes": "forged headers"},
        headers,
    )

    assert reply.status == 200, reply.body
    assert (reply.body["reviewed_by"], reply.body["review_status"]) == ("access-anna", "rejected")
    assert world.row(row_id) == {"tenant_id": TENANT_A, "review_status": "rejected", "reviewed_by": "access-anna"}


@pytest.mark.parametrize("sub", ["x" * 257, "mallory\x00admin"], ids=["257 characters", "a NUL"])
def test_a_sub_that_cannot_be_stored_is_refused_on_every_route_that_needs_a_token(world: World, sub: str) -> None:
    _, routes = http_api_routes(world.stack.names())
    bearer = world.minter.mint(TENANT_A, sub)

    answers = {}
    for route in routes:
        if route.authorizer is not None:
            path, body = PLANS[route.key].call(world)
            answers[route.key] = http(route.method, world.url(path), bearer, body)

    assert {key: (reply.status, error_code(reply)) for key, reply in answers.items()} == dict.fromkeys(
        answers, (401, "unauthorized")
    )
    assert kept_row_untouched(world) == []


# --- the operator's route ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "tenant", "status"),
    [("", None, 403), (ALL_SCOPES.replace("ops:read", "").strip(), TENANT_A, 403), ("ops:read", None, 200)],
    ids=["no tenant, no scope", "every tenant scope", "ops:read, no tenant"],
)
def test_the_deep_check_answers_operators_only(world: World, scope: str, tenant: str | None, status: int) -> None:
    claims: dict[str, Any] = {world.minter.tenant_claim: tenant}  # None drops the tenant claim
    bearer = world.minter.mint(TENANT_A, "access-ops", scope, **claims)

    reply = http("GET", world.url("/health/deep"), bearer)

    assert reply.status == status, reply.body
    if status == 403:
        # API Gateway's own refusal: the function, and so the bucket, queues and tables, are never reached.
        assert reply.body == {"message": "Forbidden"}
    else:
        assert reply.body["status"] == "ok"
        assert set(reply.body["checks"]) == {"database", "bucket", "ingest_queue", "jobs_table"}


# --- per-principal limits ---------------------------------------------------------------------------------------


def test_a_read_flood_is_429_for_its_principal_alone(world: World) -> None:
    # Given the template's read limit (ReadRateLimitRequests, 120 in any rolling 60 seconds)
    flooder = world.bearer(sub="access-read-flood")

    # When one principal lists jobs 121 times in a burst
    replies = [http("GET", world.url("/api/v1/jobs?limit=1"), flooder) for _ in range(121)]

    # Then the 121st is refused with the usual error body and a wait, and the rest of the world goes on: another
    # principal reads, the flooder still ingests and reviews (budgets of their own)
    assert [reply.status for reply in replies[:120]] == [200] * 120
    refused = replies[120]
    assert (refused.status, error_code(refused)) == (429, "rate_limited"), refused.body
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert http("GET", world.url("/api/v1/jobs?limit=1"), world.bearer(sub="access-colleague")).status == 200
    accepted = world.post_batch(TENANT_A, "access-read-flood", SYSTEM, [world.reading(500)])
    assert accepted.status == 202, accepted.body
    review = http("POST", world.url("/api/v1/quarantine/2147483000/review"), flooder, {"action": "reject"})
    assert (review.status, error_code(review)) == (404, "not_found")
    assert http("GET", world.url("/api/v1/quarantine?limit=1"), flooder).status == 429


def test_a_review_flood_is_429_and_leaves_reads_open(world: World) -> None:
    # Given the template's review limit (ReviewRateLimitRequests, 30 in any rolling 60 seconds)
    flooder = world.bearer(sub="access-review-flood")

    # When one principal sends 31 reviews (of a row no tenant has: each a well-formed request, answered 404)
    replies = [
        http("POST", world.url("/api/v1/quarantine/2147483001/review"), flooder, {"action": "reject"})
        for _ in range(31)
    ]

    # Then the 31st is refused, A's rows are untouched, and the flooder still reads
    assert [reply.status for reply in replies[:30]] == [404] * 30
    assert (replies[30].status, error_code(replies[30])) == (429, "rate_limited"), replies[30].body
    assert 1 <= int(replies[30].headers["retry-after"]) <= 60
    assert kept_row_untouched(world) == []
    assert http("GET", world.url("/api/v1/quarantine?limit=1"), flooder).status == 200
