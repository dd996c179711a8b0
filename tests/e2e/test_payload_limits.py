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
    # Given 300 quarantined readings whose raw is as large as a row keeps (16 KiB of JSON text) and all quotes, each
    # taking 32 KB of an answer: 9.6 MB in one page of 500 before pages were bounded by bytes, a 500 from the twin
    job_id = uuid.uuid4()
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        stored = [
            row_id
            for (row_id,) in conn.execute(
                "INSERT INTO quarantined_readings (tenant_id, job_id, position, raw, reason)"
                " SELECT 'demo', %s, n, %s, 'parse_error' FROM generate_series(0, 299) AS n RETURNING id",
                (job_id, Jsonb('"' * 8000)),
            )
        ]
    bearer = token(stack, scope="quarantine:read")

    # When a client walks the listing through the twin, 500 rows a page
    walked: list[int] = []
    bodies: list[int] = []
    cursor = None
    while True:
        query = f"job_id={job_id}&limit=500" + (f"&cursor={cursor}" if cursor else "")
        reply = http("GET", f"{stack.api}/api/v1/quarantine?{query}", bearer)
        assert reply.status == 200, reply.body
        bodies.append(len(json.dumps(reply.body, ensure_ascii=False, separators=(",", ":")).encode()))
        walked += [item["id"] for item in reply.body["items"]]
        cursor = reply.body["next_cursor"]
        if cursor is None:
            break

    # Then every page was served (the twin fails an answer over Lambda's limit), and every row came once
    assert walked == sorted(stored, reverse=True)
    assert len(bodies) >= 2
    record_figures("listing_pages", {"rows": len(stored), "pages": len(bodies), "largest_body_bytes": max(bodies)})
