"""Calls run in the background, in threads: the worker's per-job AWS calls are mostly waiting on the network, and
it goes on writing readings meanwhile."""

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor


class ThreadedCalls:
    """``Background`` in a pool of threads kept for the execution environment. boto3's clients are safe to share
    between threads; resources and sessions are not, and none is used here."""

    def __init__(self, max_workers: int = 10) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sluice-calls")

    def __call__[T](self, call: Callable[[], T]) -> "Running[T]":
        return Running(self._pool.submit(call))


class Running[T]:
    """A call running in a thread."""

    def __init__(self, future: Future[T]) -> None:
        self._future = future

    def answer(self) -> T | Exception:
        try:
            return self._future.result()
        except Exception as exc:  # handed back: the caller fails that call's message only
            return exc
