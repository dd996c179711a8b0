"""The operator console's first load in a real browser: what it weighs and when a person can use it.

    make bench            (or: .venv/bin/python -m tests.bench.bench_console [--loads N])

`make run`'s stack on free ports with a scratch database; a tenant with 12 finished jobs. Each load is a fresh
headless Chromium (an empty cache) opening the console's URL with a token in its fragment, as `sluice console`
prints it, until the jobs page is drawn with its data. Figures are the median of N loads:

- weight: bytes transferred (headers included) for the console's files, and for the API's answers it read;
- time to interactive: from the navigation's start to the first page drawn with its data (the console's
  ``sluice:interactive`` mark), and the document's own ``domInteractive``;
- the reference, measured in the same browser and run: one ``GET /api/v1/jobs`` from the page (the API's own
  latency, which no front end can beat); the console's time is given as a ratio to it.
"""

import argparse
import statistics
from typing import Any

from sluice_tools.settings import get_database_settings

from ..browser.harness import DESKTOP, Browser, BrowserStack, start_chromium
from ..stack_harness import TokenMinter, finished_job, http, now_text, running_stack

TENANT = "bench-console"
SENSOR = "6b1d2c3e-4f50-4a61-8b72-93a4b5c6d7e8"

MEASURE = """
const [navigation] = performance.getEntriesByType("navigation");
const [interactive] = performance.getEntriesByName("sluice:interactive");
const resources = performance.getEntriesByType("resource");
const files = resources.filter((entry) => new URL(entry.name).pathname.startsWith("/console/"));
const api = resources.filter((entry) => !new URL(entry.name).pathname.startsWith("/console/"));
const sum = (entries) => entries.reduce((total, entry) => total + entry.transferSize, 0);
return {
  files_bytes: navigation.transferSize + sum(files),
  files: files.length + 1,
  api_bytes: sum(api),
  api_requests: api.length,
  dom_interactive_ms: navigation.domInteractive,
  interactive_ms: interactive ? interactive.startTime : null,
};
"""

ONE_CALL = """
const [token, done] = arguments;
const started = performance.now();
fetch("/api/v1/jobs?limit=50", {headers: {Authorization: `Bearer ${token}`}, cache: "no-store"})
  .then((answer) => answer.json())
  .then(() => done(performance.now() - started));
"""


def seed(stack: BrowserStack) -> None:
    bearer = stack.token(tenant=TENANT)
    system = stack.register_system(TENANT, "press-1")["id"]
    for batch in range(12):
        readings = [
            {
                "sensor_id": SENSOR,
                "timestamp": now_text(-(batch * 100 + i)),
                "value": 200.0,
                "unit": "bar",
                "quality": 90,
            }
            for i in range(100)
        ]
        reply = http("POST", stack.url("/api/v1/data/ingest"), bearer, {"system_id": system, "readings": readings})
        finished_job(stack.running, bearer, reply.body["job_id"])


def load_once(stack: BrowserStack) -> dict[str, Any]:
    browser = Browser(start_chromium(DESKTOP), stack.base_url, DESKTOP)
    try:
        token = stack.token(tenant=TENANT)
        browser.sign_in(token)
        figures: dict[str, Any] = browser.driver.execute_script(MEASURE)
        # The API's latency from the same page, warm (as the console's own calls were: the function was warm).
        browser.run_async(ONE_CALL, token)
        figures["api_call_ms"] = statistics.median(browser.run_async(ONE_CALL, token) for _ in range(5))
        if browser.unexpected_errors():
            raise SystemExit(f"the console logged errors: {browser.unexpected_errors()}")
        return figures
    finally:
        browser.driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    with running_stack(get_database_settings().db_dsn, "sluice-bench-console", prefix="sluice_bench") as running:
        stack = BrowserStack(running, TokenMinter.for_stack(running))
        seed(stack)
        # One load to warm the stack's functions (a deployed console's are warm too, most of the time).
        load_once(stack)
        loads = [load_once(stack) for _ in range(args.loads)]

    def median(name: str) -> float:
        return float(statistics.median(load[name] for load in loads))

    print(f"\nconsole first load (median of {args.loads} cold browsers, jobs page with 12 jobs)")
    print(f"  console files        {median('files_bytes'):>10,.0f} bytes in {median('files'):.0f} files")
    print(f"  API answers          {median('api_bytes'):>10,.0f} bytes in {median('api_requests'):.0f} requests")
    print(f"  domInteractive       {median('dom_interactive_ms'):>10.1f} ms")
    print(f"  time to interactive  {median('interactive_ms'):>10.1f} ms (first page drawn with its data)")
    print(f"  one GET /api/v1/jobs {median('api_call_ms'):>10.1f} ms (reference, same browser)")
    print(f"  ratio                {median('interactive_ms') / median('api_call_ms'):>10.2f} x one API call")


if __name__ == "__main__":
    main()
