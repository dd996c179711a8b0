"""Independent calls run at once in threads: the worker's per-job AWS calls are mostly waiting on the network."""

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from sluice.domain.load import one_by_one


class ThreadedCalls:
    """``Concurrently`` in a pool of threads kept for the execution environment. boto3's clients are safe to share
    between threads; resources and sessions are not, and none is used here."""

    def __init__(self, max_workers: int = 10) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sluice-calls")

    def __call__[T](self, calls: Sequence[Callable[[], T]]) -> list[T | Exception]:
        if len(calls) < 2:  # nothing to overlap
            return one_by_one(calls)
        futures = [self._pool.submit(call) for call in calls]
        answers: list[T | Exception] = []
        for future in futures:
            try:
                answers.append(future.result())
            except Exception as exc:
                answers.append(exc)
        return answers
