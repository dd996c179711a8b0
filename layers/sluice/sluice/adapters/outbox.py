"""The webhook outbox's writing side: a state change's deliveries, written by the transaction of the change.

Every writer of an announced change (the evaluator raising or clearing an alarm, the API acknowledging one, the job
events function seeing a job finish) calls :func:`enqueue` on the connection of its own transaction, so a change and
its deliveries commit together or not at all. The dispatcher (``sluice.adapters.webhooks``) sends them.
"""

import socket
from collections.abc import Sequence
from typing import Any

import psycopg

from sluice.domain.webhooks import Announcement, TargetRefusedError

# One row per subscription that asked for the change's event, for every change at once. The message id is made
# here, per row; a change's body is the same for each of its subscriptions. ON CONFLICT: the change was announced
# already (a redelivered job event), and announcing it again adds nothing.
_ENQUEUE = """
INSERT INTO webhook_deliveries (id, webhook_id, tenant_id, event_type, event_key, body, created_at, next_attempt_at)
SELECT 'msg_' || replace(gen_random_uuid()::text, '-', ''), w.id, w.tenant_id, x.type, x.key, x.body, x.at, x.at
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::timestamptz[]) AS x (tenant, type, key, body, at)
JOIN webhooks w ON w.tenant_id = x.tenant AND x.type = ANY (w.events)
ON CONFLICT (webhook_id, event_key) DO NOTHING
"""


def enqueue(conn: psycopg.Connection[Any], change: Announcement) -> int:
    """Write the deliveries of one change for every subscription of its tenant to its event type, in the caller's
    transaction. The number written (0: nobody asked, or it was announced already)."""
    return enqueue_all(conn, [change])


def enqueue_all(conn: psycopg.Connection[Any], changes: Sequence[Announcement]) -> int:
    """:func:`enqueue` for many changes, in one statement: a storm of 18,000 alarms costs one round trip here."""
    if not changes:
        return 0
    columns = (
        [change.tenant_id for change in changes],
        [change.event_type for change in changes],
        [change.event_key for change in changes],
        [change.body for change in changes],
        [change.at for change in changes],
    )
    return conn.execute(_ENQUEUE, columns).rowcount


def resolve_addresses(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, by the system's resolver (the ``Resolver`` of
    ``sluice.domain.webhooks.check_target``)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefusedError(f"the host {host!r} does not resolve") from exc
    return sorted({str(info[4][0]) for info in infos})
