"""docs/openapi.yaml against the running twin: schemathesis generates requests for every operation (the spec's
examples, its coverage cases, then fuzzing, valid and invalid data alike, NUL characters included) and checks each
answer: never a 5xx, a status the operation documents, the documented content type, headers and body schema, and
no request the spec calls invalid accepted.

Every request carries a token with every scope, so the answers come from the functions, not the authorizer.
Ingest (batches and uploads) is rate limited per principal (15 a minute), so its requests rotate through
principals, a few each: a 429 is a documented answer, but real requests must get through. Generated ids rarely
name anything, so half the valid job and row ids are swapped for real ones of tenant demo, and every single review
meets a pending row: the pool of pending rows is refilled with a fresh batch of bad readings whenever it runs low.
"""

import itertools
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ..paths import REPO_ROOT
from ..stack_harness import SYSTEM, RunningStack, TokenMinter, finished_job, http, now_text, running_stack
from .figures import record_figures

STACK = "sluice-schema"
SPEC = REPO_ROOT / "docs" / "openapi.yaml"
EXAMPLES_PER_OPERATION = 100
# Under the ingest rate limit (15 a minute): hypothesis replays a failing case while shrinking, so not at it.
INGEST_REQUESTS_PER_PRINCIPAL = 10
# Pending rows made per refill, and the fewest kept before a bulk review (which may take up to 500 at once).
REFILL_ROWS = 60
LOW_WATER = 10
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# What makes a refill's reading bad: a fix of the value or unit passes, a rejection passes, an approval is 422.
BAD_READINGS: list[dict[str, Any]] = [
    {"value": 900.0},  # out_of_range
    {"unit": "psi"},  # invalid_unit
    {"quality": 20},  # low_quality
    {"timestamp": "2026-13-01T00:00:00Z"},  # invalid_timestamp
]
INGEST = "POST /api/v1/data/ingest"
UPLOAD = "POST /api/v1/uploads"
# Operations that spend the ingest budget: their requests rotate through principals.
INGEST_BUDGET = {INGEST, UPLOAD}
GET_JOB = "GET /api/v1/jobs/{job_id}"
GET_ROW = "GET /api/v1/quarantine/{id}"
REVIEW = "POST /api/v1/quarantine/{id}/review"
BULK_REVIEW = "POST /api/v1/quarantine/review"
CONSOLE_FILE = "GET /console/{proxy}"
# A system's readings and sensors: a generated system id is nobody's (404), so half of them name the demo system.
SYSTEM_READS = {"GET /api/v1/systems/{system_id}/readings", "GET /api/v1/systems/{system_id}/sensors"}
# The alerts routes by id: half of the valid ids name tenant demo's kept rule, alarm or webhook; a deletion or an
# acknowledgement gets a fresh one of its own each time, so each such request meets a row it can act on.
KEPT_RULE = {"GET /api/v1/alert-rules/{rule_id}", "PATCH /api/v1/alert-rules/{rule_id}"}
KEPT_WEBHOOK = {"GET /api/v1/webhooks/{webhook_id}", "GET /api/v1/webhooks/{webhook_id}/deliveries"}
GET_ALARM = "GET /api/v1/alarms/{alarm_id}"
DELETE_RULE = "DELETE /api/v1/alert-rules/{rule_id}"
DELETE_WEBHOOK = "DELETE /api/v1/webhooks/{webhook_id}"
ACKNOWLEDGE = "POST /api/v1/alarms/{alarm_id}/acknowledge"
CREATE_WEBHOOK = "POST /api/v1/webhooks"
# A receiver address the twin allows (loopback, SLUICE_WEBHOOK_ALLOW_LOCAL): a generated host never resolves here.
LOCAL_RECEIVER = "http://127.0.0.1:9/schema"
# Files the console has: a generated path is almost never one of them.
CONSOLE_FILES = ["", "config.json", "js/main.js", "console.css"]

pytestmark = pytest.mark.db


@dataclass
class Tally:
    """What the run sent and got, per operation."""

    cases: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    server_errors: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    found: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        return {
            "operations": len(self.cases),
            "cases": sum(self.cases.values()),
            "failures": sum(self.failures.values()),
            "server_errors": sum(self.server_errors.values()),
            "answered_2xx": sum(n for seen in self.statuses.values() for status, n in seen.items() if status < 300),
            "per_operation": {
                label: {
                    "cases": self.cases[label],
                    "failures": self.failures[label],
                    "server_errors": self.server_errors[label],
                    "statuses": {str(status): n for status, n in sorted(self.statuses[label].items())},
                }
                for label in sorted(self.cases)
            },
            "found": self.found,
        }


TALLY = Tally()


@dataclass
class Demo:
    """Tenant demo on the running stack: tokens, its jobs, and a pool of pending quarantined rows."""

    stack: RunningStack
    minter: TokenMinter
    job_ids: list[str] = field(default_factory=list)
    row_ids: list[int] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    alert_rule: str = ""
    alarm: str = ""
    webhook: str = ""
    _offsets: "itertools.count[int]" = field(default_factory=itertools.count)

    def owner_insert(self, statement: str, *params: object) -> str:
        """Insert one row as the owner (as the evaluator or an earlier request would have); its id."""
        with psycopg.connect(self.stack.dsn, autocommit=True) as conn:
            found = conn.execute(statement, params or None).fetchone()
        assert found is not None
        return str(found[0])

    def new_rule(self) -> str:
        return self.owner_insert(
            "INSERT INTO alert_rules (tenant_id, name, kind, severity, unit, condition, threshold, clear_threshold,"
            " for_seconds, created_by) VALUES ('demo', 'schema ' || gen_random_uuid(), 'threshold', 'critical',"
            " 'bar', 'above', 250, 240, 300, 'schema') RETURNING id"
        )

    def new_alarm(self) -> str:
        return self.owner_insert(
            "INSERT INTO alarms (tenant_id, rule_id, rule_name, kind, severity, system_id, sensor_id, unit, status,"
            " value, trigger_time) VALUES ('demo', %s, 'schema', 'threshold', 'critical', %s, gen_random_uuid(),"
            " 'bar', 'active', 256.5, now()) RETURNING id",
            self.alert_rule,
            SYSTEM,
        )

    def new_webhook(self) -> str:
        return self.owner_insert(
            "INSERT INTO webhooks (tenant_id, url, events, created_by)"
            " VALUES ('demo', %s, ARRAY['alarm.acknowledged'], 'schema') RETURNING id",
            LOCAL_RECEIVER,
        )

    def bearer(self, sub: str = "schema-operator") -> str:
        return self.minter.mint("demo", sub)

    def refill(self) -> None:
        """A batch of REFILL_ROWS bad readings, each quarantined for one of the reasons a review can meet."""
        sensor = str(uuid.uuid4())
        readings = [
            {
                "sensor_id": sensor,
                "timestamp": now_text(-next(self._offsets)),
                "value": 100.0,
                "unit": "bar",
                "quality": 95,
            }
            | BAD_READINGS[n % len(BAD_READINGS)]
            for n in range(REFILL_ROWS)
        ]
        bearer = self.bearer("schema-seed")
        accepted = http(
            "POST", f"{self.stack.api}/api/v1/data/ingest", bearer, {"system_id": SYSTEM, "readings": readings}
        )
        assert accepted.status == 202, accepted.body
        job = finished_job(self.stack, bearer, accepted.body["job_id"])
        assert job["quarantined_readings"] == REFILL_ROWS, job
        self.job_ids.append(job["job_id"])
        with psycopg.connect(self.stack.dsn) as conn:
            rows = conn.execute("SELECT id FROM quarantined_readings WHERE job_id = %s", (job["job_id"],)).fetchall()
        self.row_ids += [row[0] for row in rows]

    def pending_rows(self) -> list[int]:
        with psycopg.connect(self.stack.dsn) as conn:
            rows = conn.execute(
                "SELECT id FROM quarantined_readings WHERE tenant_id = 'demo' AND review_status = 'pending'"
            ).fetchall()
        return [row[0] for row in rows]

    def keep_pending(self, at_least: int) -> None:
        if len(self.pending_rows()) < at_least:
            self.refill()

    def pending_row(self) -> int:
        """A row no review has taken yet."""
        while not self.pending:
            self.keep_pending(LOW_WATER)
            self.pending = self.pending_rows()
        return self.pending.pop()


@pytest.fixture(scope="module")
def stack(server_dsn: str) -> Iterator[RunningStack]:
    with running_stack(server_dsn, STACK) as running:
        yield running


@pytest.fixture(scope="module")
def demo(stack: RunningStack) -> Iterator[Demo]:
    """Tenant demo with a job and pending rows; the run's figures are recorded when the module ends."""
    world = Demo(stack, TokenMinter.for_stack(stack))
    world.refill()
    world.alert_rule = world.new_rule()
    world.alarm, world.webhook = world.new_alarm(), world.new_webhook()
    world.owner_insert(
        "INSERT INTO webhook_deliveries (id, webhook_id, tenant_id, event_type, event_key, body)"
        " VALUES ('msg_schema', %s, 'demo', 'alarm.acknowledged', 'alarm.acknowledged:schema', '{}') RETURNING id",
        world.webhook,
    )
    yield world
    record_figures("schemathesis", TALLY.figures())


# Loaded eagerly: schemathesis' fixture-backed loader needs a pytest internal that pytest 9 no longer has. The base
# URL (free ports, known once the stack runs) goes with each call instead.
schema = schemathesis.openapi.from_path(SPEC)
# Methods no route has are probed too (404 from the twin, as from API Gateway), but not TRACE and QUERY: the twin's
# HTTP server (http.server) does not dispatch them and answers 501 itself, which says nothing about Sluice.
schema.config.phases.coverage.unexpected_methods = {"get", "put", "post", "delete", "options", "patch"}
# NUL characters are valid JSON and worth sending: PostgreSQL's text cannot hold them. The token is ours to set,
# never a generated one (a negative Authorization the test then replaced would be "invalid data accepted").
schema.config.generation.update(allow_x00=True, with_security_parameters=False)


def use_real_ids(case: "schemathesis.Case[Any]", label: str, demo: Demo) -> None:
    """Swap a valid generated id for a real one of tenant demo, every other time (a review: every time, and a
    pending row), so the answers about real jobs, rows and systems are checked too."""
    parameters = case.path_parameters or {}
    turn = TALLY.cases[label] % 2
    if label == GET_JOB and turn and _is_uuid(parameters.get("job_id")):
        parameters["job_id"] = demo.job_ids[TALLY.cases[label] // 2 % len(demo.job_ids)]
    elif label == GET_ROW and turn and _is_row_id(parameters.get("id")):
        parameters["id"] = demo.row_ids[TALLY.cases[label] // 2 % len(demo.row_ids)]
    elif label == REVIEW and _is_row_id(parameters.get("id")):
        parameters["id"] = demo.pending_row()
    elif label == BULK_REVIEW:
        demo.keep_pending(LOW_WATER)
    elif label in SYSTEM_READS and turn and _is_uuid(parameters.get("system_id")):
        parameters["system_id"] = SYSTEM
    elif label == CONSOLE_FILE and turn:
        parameters["proxy"] = CONSOLE_FILES[TALLY.cases[label] // 2 % len(CONSOLE_FILES)]
    else:
        use_real_alerts(case, label, demo, turn)


def use_real_alerts(case: "schemathesis.Case[Any]", label: str, demo: Demo, turn: int) -> None:
    """The same for the alerts routes, and a webhook URL the twin accepts in place of a valid generated one."""
    parameters = case.path_parameters or {}
    fresh = {DELETE_RULE: ("rule_id", demo.new_rule), DELETE_WEBHOOK: ("webhook_id", demo.new_webhook)}
    fresh[ACKNOWLEDGE] = ("alarm_id", demo.new_alarm)
    kept = dict.fromkeys(KEPT_RULE, ("rule_id", demo.alert_rule))
    kept |= dict.fromkeys(KEPT_WEBHOOK, ("webhook_id", demo.webhook))
    kept[GET_ALARM] = ("alarm_id", demo.alarm)
    if label in fresh and turn and _is_uuid(parameters.get(fresh[label][0])):
        name, make = fresh[label]
        parameters[name] = make()
    elif label in kept and turn and _is_uuid(parameters.get(kept[label][0])):
        name, value = kept[label]
        parameters[name] = value
    elif label == CREATE_WEBHOOK and turn and isinstance(case.body, dict) and _is_usable_url(case.body.get("url")):
        case.body["url"] = LOCAL_RECEIVER


def _is_usable_url(value: object) -> bool:
    """A url the spec takes (so swapping it for another keeps a valid case valid and an invalid one invalid)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= 2048
        and not any(ord(char) <= 0x20 or char == "\x7f" for char in value)
    )


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return isinstance(value, str)


def _is_row_id(value: object) -> bool:
    return type(value) is int and value >= 1


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, database=None, suppress_health_check=list(HealthCheck))
def test_every_answer_conforms_to_the_spec(case: "schemathesis.Case[Any]", stack: RunningStack, demo: Demo) -> None:
    label = case.operation.label
    rotated = f"schema-{label.rsplit('/', 1)[-1]}-{TALLY.cases[label] // INGEST_REQUESTS_PER_PRINCIPAL}"
    sub = rotated if label in INGEST_BUDGET else "schema"
    use_real_ids(case, label, demo)
    case.headers["Authorization"] = f"Bearer {demo.bearer(sub)}"
    TALLY.cases[label] += 1

    response = case.call(base_url=stack.api)

    TALLY.statuses.setdefault(label, Counter())[response.status_code] += 1
    if response.status_code >= 500:
        TALLY.server_errors[label] += 1
    try:
        case.validate_response(response, checks=CHECKS, transport_kwargs={"base_url": stack.api})
    except FailureGroup as failure:
        TALLY.failures[label] += 1
        TALLY.found.append(f"{label} -> {response.status_code}: {str(failure)[:3000]}")
        raise


def test_real_requests_got_through_on_every_operation(demo: Demo) -> None:
    operations = {f"{method.upper()} {path}" for path, item in schema.raw_schema["paths"].items() for method in item}
    # GET /console only redirects (301): its success is no 2xx.
    succeeding = {
        f"{method.upper()} {path}"
        for path, item in schema.raw_schema["paths"].items()
        for method, operation in item.items()
        if any(str(status).startswith("2") for status in operation["responses"])
    }
    answered = {label for label, seen in TALLY.statuses.items() if any(status < 300 for status in seen)}
    redirected = {label for label, seen in TALLY.statuses.items() if 301 in seen}

    assert set(TALLY.cases) == operations
    assert answered == succeeding, f"no 2xx answer from {succeeding - answered}"
    assert operations - succeeding <= redirected
    assert sum(TALLY.server_errors.values()) == 0
