"""The worker's background calls: threads that really overlap, and answers or exceptions handed back."""

import threading

from sluice.adapters.concurrency import ThreadedCalls
from sluice.errors import StorageUnavailableError


def test_background_calls_run_at_the_same_time() -> None:
    # Each call waits for the other to have begun: made one at a time, the first would time out.
    first, second = threading.Event(), threading.Event()
    calls = ThreadedCalls(max_workers=2)

    def one() -> bool:
        first.set()
        return second.wait(5)

    def two() -> bool:
        second.set()
        return first.wait(5)

    running = [calls(one), calls(two)]

    assert [call.answer() for call in running] == [True, True]


def test_a_background_call_hands_back_its_exception() -> None:
    def refuse() -> None:
        raise StorageUnavailableError("DynamoDB refused")

    answer = ThreadedCalls()(refuse).answer()

    assert isinstance(answer, StorageUnavailableError)
