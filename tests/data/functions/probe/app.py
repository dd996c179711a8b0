"""A function for the local runtime's tests: it does what its event asks, and reports its environment."""

import os
import sys
import time
from typing import Any

# A slow init (imports, clients), when a test asks for one: it has a budget of its own, outside the timeout.
time.sleep(float(os.environ.get("SLUICE_PROBE_INIT_SECONDS", "0")))
STARTED = time.time()
calls = 0


def lambda_handler(event: dict[str, Any], context: Any) -> Any:
    global calls  # noqa: PLW0603 - module state that lives as long as the environment, which is what is tested
    calls += 1
    action = event.get("do")
    if action == "sleep":
        time.sleep(float(event["seconds"]))
    elif action == "raise":
        raise ValueError("asked to fail")
    elif action == "exit":
        sys.stdout.flush()
        os._exit(3)
    elif action == "unserialisable":
        return {"value": {1, 2}}
    elif action == "answer":  # an answer of the size a test asks for
        return {"text": event["text"] * int(event["count"])}
    return {
        "calls": calls,
        "pid": os.getpid(),
        "environment": {name: os.environ.get(name) for name in event.get("names", [])},
        "remaining_ms": context.get_remaining_time_in_millis(),
        "function_name": context.function_name,
        "request_id": context.aws_request_id,
    }
