"""Lambda's 6 MB answer limit through `make run`'s twin: a listing of large quarantined readings is served in pages
that each fit it (the twin, like Lambda behind API Gateway, turns an answer over it into a 500). A request whose event
is over the limit is a case of the hostile corpus (``event_over_lambdas_6_mb``)."""

import json
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.types.json import Jsonb

from ..reliability.figures import record_figures
from ..stack_harness import RunningStack, http, running_stack, token

STACK = "sluice-limits"

pytestmark = pytest.mark.db


@pytest.fixture(scope="module")
def stack(server_dsn: str) -> Iterator[RunningStack]:
    with running_stack(server_dsn, STACK) as running:
        yield running


def test_a_listing_of_large_quarantined_readings_comes_in_pages_that_each_fit(stack: RunningStack) -> None:
    # Given eight quarantined readings whose raw text takes 1.5 MB each in an answer (rows stored before raw was
    # cut could be that large): 12 MB in one page before pages were bounded by bytes, a 500 from the twin
    job_id = uuid.uuid4()
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        stored = [
            conn.execute(
                "INSERT INTO quarantined_readings (tenant_id, job_id, position, raw, reason)"
                " VALUES ('demo', %s, %s, %s, 'parse_error') RETURNING id",
                (job_id, position, Jsonb('"' * 300_000 + "x" * 300_000)),
            ).fetchone()[0]  # type: ignore[index]
            for position in range(8)
        ]
    bearer = token(stack, scope="quarantine:read")

    # When a client walks the listing through the twin
    walked: list[int] = []
    bodies: list[int] = []
    cursor = None
    while True:
        query = f"job_id={job_id}" + (f"&cursor={cursor}" if cursor else "")
        reply = http("GET", f"{stack.api}/api/v1/quarantine?{query}", bearer)
        assert reply.status == 200, reply.body
        bodies.append(len(json.dumps(reply.body, ensure_ascii=False).encode()))
        walked += [item["id"] for item in reply.body["items"]]
        cursor = reply.body["next_cursor"]
        if cursor is None:
            break

    # Then every page was served (the twin fails an answer over Lambda's limit), and every row came once
    assert walked == sorted(stored, reverse=True)
    assert len(bodies) >= 3
    record_figures("listing_pages", {"rows": len(stored), "pages": len(bodies), "largest_body_bytes": max(bodies)})
