"""Counting and timing the AWS calls a handler makes, for the benches' reports and their cost figures.

botocore hands the same ``context`` dict to the events of one request, so each call's start is kept in it: calls made
from several threads at once (the worker's concurrent job starts, its read-ahead) are timed each on its own.
"""

import threading
import time
from collections import Counter
from typing import Any


class CallMeter:
    """The calls made through the attached clients: how many of each ``service.Operation``, and their wall time
    added up (calls that overlap in threads count each; ``busy_s`` is the time at least one was in flight)."""

    _KEY = "bench_call_started"

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.total_s = 0.0
        self.busy_s = 0.0
        self._lock = threading.Lock()
        self._in_flight = 0
        self._busy_since = 0.0
        self._clients: list[Any] = []

    def attach(self, *clients: Any) -> "CallMeter":
        for client in clients:
            client.meta.events.register("before-parameter-build.*.*", self._start)
            client.meta.events.register("after-call.*.*", self._stop)
            client.meta.events.register("after-call-error.*.*", self._stop)
            self._clients.append(client)
        return self

    def detach(self) -> None:
        for client in self._clients:
            client.meta.events.unregister("before-parameter-build.*.*", self._start)
            client.meta.events.unregister("after-call.*.*", self._stop)
            client.meta.events.unregister("after-call-error.*.*", self._stop)
        self._clients.clear()

    def __enter__(self) -> "CallMeter":
        return self

    def __exit__(self, *_: object) -> None:
        self.detach()

    def _start(self, context: dict[str, Any], model: Any, **_: Any) -> None:
        now = time.perf_counter()
        context[self._KEY] = (now, f"{model.service_model.service_name}.{model.name}")
        with self._lock:
            if self._in_flight == 0:
                self._busy_since = now
            self._in_flight += 1

    def _stop(self, context: dict[str, Any], **_: Any) -> None:
        begun = context.pop(self._KEY, None)
        if begun is None:  # a call begun before attaching
            return
        started, name = begun
        now = time.perf_counter()
        with self._lock:
            self.total_s += now - started
            self.calls[name] += 1
            self._in_flight -= 1
            if self._in_flight == 0:
                self.busy_s += now - self._busy_since
