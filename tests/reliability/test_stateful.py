"""Ingest and review as a state machine against the running twin: hypothesis posts batches that mix valid and bad
readings (and repeats of stored ones), waits for their jobs, lists the quarantine, and reviews rows (approve,
reject, fix, one at a time or by ids), re-reviewing some. A model predicts every answer: each job's counts and the
reason at each position, and each review's status.

After every step the database must agree (queried at the stack's DSN): each reading of a landed job (one in the
ingest ledger) is exactly once in ``readings`` or in quarantine, an approved or fixed row counting as its reading
in ``readings``, which holds it once under the row's job, with the value the review gave it; and each job's rows
add up to the counts it reports. Readings are known as the database knows them, by (system_id, sensor_id,
timestamp): a repeat posted under the example's other system is another reading, not a duplicate. Every example has
sensors of its own, so earlier examples on the same stack never blur its counts.
"""

import itertools
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ..stack_harness import Reply, RunningStack, TokenMinter, http, running_stack
from .figures import record_figures

STACK = "sluice-state"
TENANT = "stateful"
# The worker's unit ranges (sluice.domain.rules), for the fixes the model judges.
RANGES = {"bar": (0.0, 700.0), "celsius": (-40.0, 120.0), "lpm": (0.0, 1000.0), "rpm": (0.0, 6000.0)}
MIN_QUALITY = 50
# A principal may post 15 batches a minute; each sends this many before the next takes over.
POSTS_PER_PRINCIPAL = 10
PRINCIPALS = itertools.count()
JOB_TIMEOUT_S = 60
IN_FLIGHT = 3
RUN = settings(
    # Hypothesis switches rules off at random per example (swarm testing): enough examples that each rule runs often.
    max_examples=12,
    stateful_step_count=40,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)

pytestmark = pytest.mark.db

type Key = tuple[str, str]  # (sensor_id, timestamp), as a reading is sent
type Identity = tuple[str, Key]  # (system_id, key): how the database knows a reading


@dataclass
class Planted:
    """One reading as sent, and what the worker must make of it."""

    key: Key
    value: float
    unit: str
    quality: int
    reason: str | None  # None: it lands in readings
    system: str = ""


@dataclass
class Row:
    """A quarantined reading as the model knows it."""

    id: int
    job_id: str
    reading: Planted
    reason: str
    status: str = "pending"
    reviewer: str | None = None
    stored_value: float | None = None  # what an approval or fix put into readings


@dataclass
class Tally:
    """What the run did, over every example."""

    examples: int = 0
    steps: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    readings: int = 0
    invariant_checks: int = 0
    reviews: Counter[str] = field(default_factory=Counter)


TALLY = Tally()


def batch_reading(kind: str) -> dict[str, Any]:
    """The fields a kind of reading is sent with (sensor and timestamp are added per reading)."""
    return {
        "valid": {"value": 150.0, "unit": "bar", "quality": 95},
        "out_of_range": {"value": 900.0, "unit": "bar", "quality": 95},
        "invalid_unit": {"value": 100.0, "unit": "psi", "quality": 95},
        "low_quality": {"value": 100.0, "unit": "bar", "quality": 20},
    }[kind]


class IngestAndReview(RuleBasedStateMachine):
    """The model of one example: what was posted, which jobs landed, and each quarantined row."""

    stack: ClassVar[RunningStack]
    minter: ClassVar[TokenMinter]
    system: ClassVar[str]

    jobs = Bundle("jobs")

    def __init__(self) -> None:
        super().__init__()
        TALLY.examples += 1
        self.sensors = [str(uuid.uuid4()) for _ in range(2)]
        # Readings go back a second each from two minutes ago: fixed per example, so no two keys ever meet.
        self.start = int(time.time()) - 120
        self.seconds = 0
        self.posted: dict[str, list[Planted]] = {}  # job id -> its readings in order
        self.waited: set[str] = set()
        self.stored: set[Identity] = set()  # readings stored, as far as waited jobs and reviews tell
        self.rows: dict[int, Row] = {}
        self.posts = 0
        self.principal = ""
        # A system of the tenant's that is registered only when the machine decides to: until then its valid
        # readings are system_not_found, and approving them is 422; after, an approval puts them in readings.
        self.later_system = str(uuid.uuid4())
        self.registered = False
        self.system_of: dict[str, str] = {}  # job id -> the system its batch named

    # --- rules ----------------------------------------------------------------------------------------------------

    # A few jobs in flight at most, so the machine waits, lists and reviews rather than mostly posting.
    @precondition(lambda self: len(self.posted) - len(self.waited) < IN_FLIGHT)
    @rule(
        target=jobs,
        kinds=st.lists(st.sampled_from(["valid", "out_of_range", "invalid_unit", "low_quality"]), max_size=6),
        twice=st.booleans(),
        repeats=st.integers(min_value=0, max_value=2),
        later=st.booleans(),
    )
    def post_batch(self, kinds: list[str], twice: bool, repeats: int, later: bool) -> str:
        """A batch of fresh readings, maybe a valid one sent twice, maybe repeats of readings already stored."""
        TALLY.steps["post_batch"] += 1
        readings = [self.fresh(kind) for kind in kinds]
        if twice or not readings:
            readings += [self.fresh("valid")] * (2 if twice else 1)
        system = self.later_system if later else self.system
        # Repeats only of readings stored under this batch's own system: those stay duplicates whatever runs first.
        # A key stored under the other system would land here, unless a review replays the same system and key
        # before the worker reaches this batch, an order the model cannot know.
        known = sorted(key for stored_under, key in self.stored if stored_under == system)
        readings += [self.repeat(known[(self.posts + n) % len(known)]) for n in range(repeats if known else 0)]
        if self.posts % POSTS_PER_PRINCIPAL == 0:
            self.principal = f"state-poster-{next(PRINCIPALS)}"
        self.posts += 1
        body = {"system_id": system, "readings": [self.as_sent(planted) for planted in readings]}

        reply = http("POST", f"{self.stack.api}/api/v1/data/ingest", self.bearer(self.principal), body)

        assert reply.status == 202, reply.body
        assert reply.body["status"] == "queued"
        self.posted[reply.body["job_id"]] = self.judged(readings, system)
        self.system_of[reply.body["job_id"]] = system
        TALLY.batches += 1
        TALLY.readings += len(readings)
        return str(reply.body["job_id"])

    @rule(job_id=consumes(jobs))
    def wait_for_job(self, job_id: str) -> None:
        """The job completes with the counts the model predicts, and its rows carry the predicted reasons."""
        TALLY.steps["wait_for_job"] += 1
        job = self.finished(job_id)
        planted = self.posted[job_id]
        quarantined = {position: p.reason for position, p in enumerate(planted) if p.reason is not None}
        assert job["status"] == "completed", job
        assert job["total_readings"] == len(planted) == job["inserted_readings"] + job["quarantined_readings"]
        assert (job["inserted_readings"], job["quarantined_readings"]) == (
            len(planted) - len(quarantined),
            len(quarantined),
        )
        assert job["duplicate_readings"] == sum(1 for reason in quarantined.values() if reason == "duplicate")
        listed = self.get(f"/api/v1/quarantine?job_id={job_id}&limit=500").body["items"]
        assert {item["position"]: item["reason"] for item in listed} == quarantined
        for item in listed:
            self.rows[item["id"]] = Row(item["id"], job_id, planted[item["position"]], item["reason"])
        self.stored |= {(p.system, p.key) for p in planted if p.reason is None}
        self.waited.add(job_id)

    @precondition(lambda self: self.waited)
    @rule(data=st.data())
    def list_pending(self, data: st.DataObject) -> None:
        """A job's pending rows, as listed, are the ones the model has pending."""
        TALLY.steps["list_pending"] += 1
        job_id = data.draw(st.sampled_from(sorted(self.waited)))
        listed = self.get(f"/api/v1/quarantine?job_id={job_id}&review_status=pending&limit=500").body
        expected = {row.id for row in self.rows.values() if row.job_id == job_id and row.status == "pending"}
        assert {item["id"] for item in listed["items"]} == expected
        assert listed["next_cursor"] is None

    @precondition(lambda self: any(row.status == "pending" for row in self.rows.values()))
    @rule(data=st.data(), action=st.sampled_from(["approve", "reject", "fix"]))
    def review(self, data: st.DataObject, action: str) -> None:
        """One pending row reviewed; the answer is the one the model predicts."""
        TALLY.steps["review"] += 1
        pending = sorted(row_id for row_id, row in self.rows.items() if row.status == "pending")
        row = self.rows[data.draw(st.sampled_from(pending))]
        body = {"action": action} | (self.correction(data, row) if action == "fix" else {})
        self.review_one(row, body)

    @precondition(lambda self: self.registered and self.waiting_for_their_system())
    @rule(data=st.data())
    def approve_once_registered(self, data: st.DataObject) -> None:
        """A system_not_found reading approved once its system is registered: into readings (or 409 when a twin
        of it got there first)."""
        TALLY.steps["approve_once_registered"] += 1
        row = self.rows[data.draw(st.sampled_from(self.waiting_for_their_system()))]
        self.review_one(row, {"action": "approve", "notes": "press registered"})

    def waiting_for_their_system(self) -> list[int]:
        return sorted(
            row_id for row_id, row in self.rows.items() if row.status == "pending" and row.reason == "system_not_found"
        )

    @precondition(lambda self: any(row.status != "pending" for row in self.rows.values()))
    @rule(data=st.data(), action=st.sampled_from(["approve", "reject", "fix"]))
    def review_again(self, data: st.DataObject, action: str) -> None:
        """A reviewed row is never reviewed again: 409 not_pending, naming the first review."""
        TALLY.steps["review_again"] += 1
        reviewed = sorted(row_id for row_id, row in self.rows.items() if row.status != "pending")
        row = self.rows[data.draw(st.sampled_from(reviewed))]
        body = {"action": action} | ({"value": 100.0} if action == "fix" else {})

        reply = http("POST", f"{self.stack.api}/api/v1/quarantine/{row.id}/review", self.bearer("state-late"), body)

        TALLY.reviews["409 not_pending"] += 1
        assert (reply.status, reply.body["error"]["code"]) == (409, "not_pending"), reply.body
        assert f"{row.status} by {row.reviewer}" in reply.body["error"]["details"][0]["reason"]

    @precondition(lambda self: self.rows)
    @rule(data=st.data())
    def reject_by_ids(self, data: st.DataObject) -> None:
        """A bulk rejection: pending rows are rejected, reviewed ones answer not_pending, each in its outcome."""
        TALLY.steps["reject_by_ids"] += 1
        ids = data.draw(st.lists(st.sampled_from(sorted(self.rows)), min_size=1, max_size=3, unique=True))
        sub = "state-bulk"

        reply = http(
            "POST", f"{self.stack.api}/api/v1/quarantine/review", self.bearer(sub), {"action": "reject", "ids": ids}
        )

        assert reply.status == 200, reply.body
        expected: list[tuple[int, str, str]] = []
        for row_id in ids:
            row = self.rows[row_id]
            if row.status == "pending":
                expected.append((row_id, "rejected", ""))
                row.status, row.reviewer = "rejected", sub
            else:
                expected.append((row_id, "", "not_pending"))
            TALLY.reviews[f"bulk {expected[-1][1] or expected[-1][2]}"] += 1
        got = [(r["id"], r["review_status"] or "", (r["error"] or {}).get("code", "")) for r in reply.body["results"]]
        assert got == expected

    # Once readings wait for it, and with no batch naming it in flight: whether the worker found it registered would
    # be a race.
    @precondition(
        lambda self: (
            not self.registered
            and bool(self.waiting_for_their_system())
            and all(self.system_of[job_id] != self.later_system for job_id in set(self.posted) - self.waited)
        )
    )
    @rule()
    def register_the_later_system(self) -> None:
        """The tenant registers, through the systems API, the system its system_not_found readings named (with the id
        its devices sent); they may now be approved."""
        TALLY.steps["register_the_later_system"] += 1
        body = {"name": f"press-{self.later_system[:8]}", "id": self.later_system}

        reply = http("POST", f"{self.stack.api}/api/v1/systems", self.bearer("state-registrar"), body)

        assert (reply.status, reply.body["id"]) == (201, self.later_system), reply.body
        self.registered = True

    # --- invariants -------------------------------------------------------------------------------------------------

    @invariant()
    def every_landed_reading_is_stored_exactly_once(self) -> None:
        TALLY.invariant_checks += 1
        if not self.posted:
            return
        # One snapshot for the three reads: a job that commits between them would count on one side only.
        with psycopg.connect(self.stack.dsn) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            landed = {
                str(job_id)
                for (job_id,) in conn.execute(
                    "SELECT DISTINCT job_id FROM ingest_ledger WHERE job_id = ANY(%s::uuid[])", (list(self.posted),)
                )
            }
            copies = self.copies(conn)
            per_job = self.rows_per_job(conn)
        sent = Counter((planted.system, planted.key) for job_id in landed for planted in self.posted[job_id])
        differ = {key: (copies[key], sent[key]) for key in copies | sent if copies[key] != sent[key]}
        assert not differ, f"(stored, sent) per reading: {differ}"
        for job_id in landed & self.waited:
            replayed = sum(1 for row in self.rows.values() if row.job_id == job_id and row.stored_value is not None)
            planted = self.posted[job_id]
            quarantined = sum(1 for p in planted if p.reason is not None)
            assert per_job.get(job_id, (0, 0)) == (len(planted) - quarantined + replayed, quarantined), job_id

    @invariant()
    def an_approved_or_fixed_reading_is_in_readings_once(self) -> None:
        replayed = [row for row in self.rows.values() if row.stored_value is not None]
        if not replayed:
            return
        with psycopg.connect(self.stack.dsn) as conn:
            for row in replayed:
                found = conn.execute(
                    "SELECT job_id::text, value FROM readings"
                    " WHERE system_id = %s::uuid AND sensor_id = %s::uuid AND time = %s::timestamptz",
                    (row.reading.system, *row.reading.key),
                ).fetchall()
                assert found == [(row.job_id, row.stored_value)], (row, found)

    def teardown(self) -> None:
        """Every job posted lands; then the readings are all accounted for."""
        for job_id in sorted(set(self.posted) - self.waited):
            self.finished(job_id)
        self.every_landed_reading_is_stored_exactly_once()

    # --- the model ------------------------------------------------------------------------------------------------

    def fresh(self, kind: str) -> Planted:
        """A reading of a key nobody sent before."""
        self.seconds += 1
        fields = batch_reading(kind)
        moment = time.gmtime(self.start - self.seconds)
        key = (self.sensors[self.seconds % 2], time.strftime("%Y-%m-%dT%H:%M:%SZ", moment))
        return Planted(key, fields["value"], fields["unit"], fields["quality"], None if kind == "valid" else kind)

    def repeat(self, key: Key) -> Planted:
        """A valid reading of a key already in readings."""
        return Planted(key, 150.0, "bar", 95, None)

    def judged(self, readings: list[Planted], system: str) -> list[Planted]:
        """The readings with the reason the worker gives each: its own rule, then an unknown system, then a repeat
        of a reading of this system stored or earlier in the batch."""
        unknown = system == self.later_system and not self.registered
        seen: set[Key] = set()
        judged = []
        for planted in readings:
            reason = planted.reason
            if reason is None and unknown:
                reason = "system_not_found"
            if reason is None and ((system, planted.key) in self.stored or planted.key in seen):
                reason = "duplicate"
            if reason is None:
                seen.add(planted.key)
            judged.append(Planted(planted.key, planted.value, planted.unit, planted.quality, reason, system))
        return judged

    def as_sent(self, planted: Planted) -> dict[str, Any]:
        sensor, timestamp = planted.key
        return {
            "sensor_id": sensor,
            "timestamp": timestamp,
            "value": planted.value,
            "unit": planted.unit,
            "quality": planted.quality,
        }

    def correction(self, data: st.DataObject, row: Row) -> dict[str, Any]:
        """A fix: a value (in the unit's range, or not) and maybe the unit."""
        fix: dict[str, Any] = {"value": data.draw(st.sampled_from([12.5, 150.0, 699.0, 900.0]))}
        if data.draw(st.booleans()):
            fix["unit"] = data.draw(st.sampled_from(["bar", "celsius"]))
        return fix

    def predicted(self, row: Row, body: dict[str, Any]) -> tuple[int, str | None]:
        """The status (and error code) a review of a pending row must get."""
        if body["action"] == "reject":
            return 200, None
        value = body.get("value", row.reading.value)
        unit = body.get("unit", row.reading.unit)
        low, high = RANGES.get(unit, (1.0, 0.0))
        if not low <= value <= high or row.reading.quality < MIN_QUALITY:
            return 422, "reading_invalid"
        if row.reading.system == self.later_system and not self.registered:
            return 422, "reading_invalid"
        if (row.reading.system, row.reading.key) in self.stored:
            return 409, "duplicate_reading"
        return 200, None

    def review_one(self, row: Row, body: dict[str, Any]) -> None:
        sub = f"state-reviewer-{row.id % 3}"
        expected = self.predicted(row, body)

        reply = http("POST", f"{self.stack.api}/api/v1/quarantine/{row.id}/review", self.bearer(sub), body)

        code = reply.body.get("error", {}).get("code") if reply.status != 200 else None
        TALLY.reviews[f"{body['action']} {reply.status} {code or ''}".strip()] += 1
        assert (reply.status, code) == expected, (row, body, reply.body)
        if reply.status == 200:
            status = {"approve": "approved", "reject": "rejected", "fix": "fixed"}[body["action"]]
            assert (reply.body["review_status"], reply.body["reviewed_by"]) == (status, sub)
            row.status, row.reviewer = status, sub
            if body["action"] != "reject":
                row.stored_value = float(body.get("value", row.reading.value))
                self.stored.add((row.reading.system, row.reading.key))

    # --- the stack ------------------------------------------------------------------------------------------------

    def bearer(self, sub: str) -> str:
        return self.minter.mint(TENANT, sub)

    def get(self, path: str) -> Reply:
        reply = http("GET", f"{self.stack.api}{path}", self.bearer("state-reader"))
        assert reply.status == 200, reply.body
        return reply

    def finished(self, job_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while time.monotonic() < deadline:
            job: dict[str, Any] = self.get(f"/api/v1/jobs/{job_id}").body
            if job["status"] in {"completed", "failed"}:
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} did not finish in {JOB_TIMEOUT_S} s")

    def copies(self, conn: psycopg.Connection[Any]) -> Counter[Identity]:
        """How often each of this example's keys is stored: in readings, or as a quarantined reading that no
        review replayed into readings."""
        found: Counter[Identity] = Counter()
        for system, sensor, moment, n in conn.execute(
            """SELECT system_id::text, sensor_id::text,
                      to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), count(*)
               FROM (SELECT system_id, sensor_id, time FROM readings WHERE sensor_id = ANY(%(sensors)s::uuid[])
                     UNION ALL
                     SELECT system_id, sensor_id, time FROM quarantined_readings
                     WHERE sensor_id = ANY(%(sensors)s::uuid[]) AND review_status NOT IN ('approved', 'fixed')) stored
               GROUP BY 1, 2, 3""",
            {"sensors": self.sensors},
        ):
            found[(system, (sensor, moment))] = n
        return found

    def rows_per_job(self, conn: psycopg.Connection[Any]) -> dict[str, tuple[int, int]]:
        counts: dict[str, tuple[int, int]] = {}
        for job_id, in_readings, in_quarantine in conn.execute(
            """SELECT job_id::text,
                      (SELECT count(*) FROM readings r WHERE r.job_id = j.job_id),
                      (SELECT count(*) FROM quarantined_readings q WHERE q.job_id = j.job_id)
               FROM unnest(%s::uuid[]) AS j(job_id)""",
            (list(self.posted),),
        ):
            counts[job_id] = (in_readings, in_quarantine)
        return counts


@pytest.fixture(scope="module")
def stack(server_dsn: str) -> Iterator[RunningStack]:
    with running_stack(server_dsn, STACK) as running:
        yield running


def test_ingest_and_review_keep_every_reading_exactly_once(stack: RunningStack) -> None:
    added = stack.sluice("systems", "add", "--tenant", TENANT, "--name", "press-state")
    assert added.returncode == 0, added.stderr
    IngestAndReview.stack = stack
    IngestAndReview.minter = TokenMinter.for_stack(stack)
    IngestAndReview.system = added.stdout.strip()
    started = time.monotonic()
    try:
        run_state_machine_as_test(IngestAndReview, settings=RUN)
    finally:
        record_figures(
            "stateful",
            {
                "examples": TALLY.examples,
                "steps": sum(TALLY.steps.values()),
                "rules": dict(sorted(TALLY.steps.items())),
                "batches": TALLY.batches,
                "readings": TALLY.readings,
                "invariant_checks": TALLY.invariant_checks,
                "reviews": sum(TALLY.reviews.values()),
                "review_outcomes": dict(sorted(TALLY.reviews.items())),
                "seconds": round(time.monotonic() - started, 1),
            },
        )
