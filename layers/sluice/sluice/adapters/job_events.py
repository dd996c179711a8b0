"""Jobs' announcements written to the webhook outbox (as sluice_notifier), one transaction per stream batch."""

from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from sluice.adapters.outbox import enqueue_all
from sluice.domain.webhooks import Announcement


class TimescaleJobAnnouncements:
    """The outbox, for the job events function."""

    def __init__(self, connection: Callable[[], psycopg.Connection[Any]]) -> None:
        self._connection = connection

    def announce(self, changes: Sequence[Announcement]) -> int:
        """Write every change's deliveries in one transaction: a batch redelivered after a failure writes nothing
        twice (the outbox's unique key). The deliveries written."""
        conn = self._connection()
        with conn.transaction():
            return enqueue_all(conn, changes)
