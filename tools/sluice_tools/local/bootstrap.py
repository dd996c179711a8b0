"""One local execution environment: imports a function's handler and runs invocations sent by the runtime.

``python -m sluice_tools.local.bootstrap <requests fd> <responses fd> <code dir> <handler>`` is what Lambda's runtime
interface client is in AWS. The parent (``sluice_tools.local.lambdas``) writes one JSON invocation per line to the
requests pipe and reads one JSON answer per line from the responses pipe. Once the handler is imported it says
``{"ready": true}``: init has a budget of its own, and an invocation's timeout (its deadline) starts only then, as in
Lambda. The handler's own stdout and stderr are
its logs. The process lives as long as the environment stays warm, so module-level state (clients, connections,
caches) survives between invocations exactly as it does in Lambda.
"""

import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, BinaryIO

from sluice_tools.settings import FaultSwitches


@dataclass
class LocalLambdaContext:
    """The Lambda context object: the fields a handler (and Powertools) reads."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    # The function's Timeout: the deadline is set when the invocation reaches the handler, after init.
    timeout_ms: int
    deadline_ms: int = 0

    def __post_init__(self) -> None:
        self.deadline_ms = int(time.time() * 1000) + self.timeout_ms

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the runtime stops this invocation."""
        return max(0, self.deadline_ms - int(time.time() * 1000))


def error_payload(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    """An error as Lambda reports it: errorType, errorMessage, stackTrace."""
    return {
        "errorType": error_type or type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


def load_handler(code_dir: str, handler: str) -> Callable[[Any, Any], Any]:
    """Import ``module.function`` from the function's code directory, as Lambda does from /var/task; with a fault
    switch on (``SLUICE_FAULT_*``), the handler runs with its service wrapped in the faults."""
    sys.path.insert(0, code_dir)
    module_name, _, function_name = handler.rpartition(".")
    module = importlib.import_module(module_name)
    function: Callable[..., Any] = getattr(module, function_name)
    switches = FaultSwitches()
    get_service = getattr(module, "get_service", None)
    if not switches.any_on or get_service is None:
        return function
    # Imported only when a switch is on: it imports every service, which a function's init would not.
    from sluice_tools.faults import with_faults  # noqa: PLC0415

    faulty = cache(lambda: with_faults(get_service(), switches))
    return lambda event, context: function(event, context, service=faulty())


def serve(requests: BinaryIO, responses: BinaryIO, code_dir: str, handler: str) -> None:
    """Answer invocations until the requests pipe closes."""
    try:
        function = load_handler(code_dir, handler)
    except Exception as exc:
        traceback.print_exc()
        init_error = error_payload(exc, "Runtime.ImportModuleError")
        for _ in requests:
            _answer(responses, {"error": init_error})
        return
    _answer(responses, {"ready": True})
    for line in requests:
        invocation = json.loads(line)
        context = LocalLambdaContext(**invocation["context"])
        try:
            result = function(invocation["event"], context)
            # Lambda serialises the result itself; a result JSON cannot carry is the function's error.
            answer: dict[str, Any] = {"result": json.dumps(result)}
        except Exception as exc:
            traceback.print_exc()
            answer = {"error": error_payload(exc)}
        sys.stdout.flush()
        sys.stderr.flush()
        _answer(responses, answer)


def _answer(responses: BinaryIO, answer: dict[str, Any]) -> None:
    responses.write(json.dumps(answer).encode() + b"\n")
    responses.flush()


def main() -> None:
    """Entry point of the environment's process."""
    requests_fd, responses_fd, code_dir, handler = sys.argv[1:5]
    with os.fdopen(int(requests_fd), "rb") as requests, os.fdopen(int(responses_fd), "wb") as responses:
        serve(requests, responses, code_dir, handler)


if __name__ == "__main__":
    main()
