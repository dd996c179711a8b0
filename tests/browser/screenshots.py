"""``make screenshots``: a PNG of each console page, for docs/console.md.

Starts `make run`'s stack on free ports with a scratch database (as the browser tests do), gives a tenant a few
systems, batches with bad readings and a review, then opens each page in headless Chromium at 1280x800 (and the
jobs page at phone width) and saves it under docs/console/. Run it again after changing a page.
"""

import sys
from typing import Any

from sluice_tools.settings import get_database_settings

from ..paths import REPO_ROOT
from ..stack_harness import TokenMinter, finished_job, http, now_text, running_stack
from .harness import DESKTOP, PHONE, Browser, BrowserStack, Viewport, start_chromium

OUT = REPO_ROOT / "docs" / "console"
TENANT = "acme"
SENSORS = ["6b1d2c3e-4f50-4a61-8b72-93a4b5c6d7e8", "8c2e3d4f-5061-4b72-9c83-a4b5c6d7e8f9"]


def seed(stack: BrowserStack) -> dict[str, Any]:
    """A tenant with three systems and a few finished jobs, some of whose readings wait in quarantine."""
    bearer = stack.token(tenant=TENANT, sub="anna@acme.example")
    systems = {}
    for name in ("press-17 (hall 1)", "pump-04", "press-21 (hall 2)"):
        reply = http("POST", stack.url("/api/v1/systems"), bearer, {"name": name})
        systems[name] = reply.body["id"]
    jobs = []
    for round_ in range(4):
        for index, system in enumerate(systems.values()):
            readings = [
                {
                    "sensor_id": SENSORS[offset % 2],
                    "timestamp": now_text(-(round_ * 600 + index * 200 + offset)),
                    # Every seventh out of range, every eleventh of a unit Sluice does not take.
                    "value": 812.5 if offset % 7 == 3 else 180.0 + offset % 40,
                    "unit": "psi" if offset % 11 == 5 else "bar",
                    "quality": 97,
                }
                for offset in range(120 + 40 * index)
            ]
            device = stack.token(tenant=TENANT, sub=f"device-{index + 1:02d}")
            reply = http("POST", stack.url("/api/v1/data/ingest"), device, {"system_id": system, "readings": readings})
            jobs.append(finished_job(stack.running, device, reply.body["job_id"]))
    page = http("GET", stack.url("/api/v1/quarantine?review_status=pending&limit=3"), bearer).body
    first, second = page["items"][0], page["items"][1]
    http("POST", stack.url(f"/api/v1/quarantine/{first['id']}/review"), bearer, {"action": "fix", "value": 212.5})
    http(
        "POST",
        stack.url(f"/api/v1/quarantine/{second['id']}/review"),
        bearer,
        {"action": "reject", "notes": "test rig"},
    )
    return {"jobs": jobs, "quarantined": page["items"][2], "systems": systems}


def shoot(stack: BrowserStack, viewport: Viewport, shots: list[tuple[str, str]]) -> None:
    browser = Browser(start_chromium(viewport), stack.base_url, viewport)
    try:
        browser.sign_in(stack.token(tenant=TENANT, sub="anna@acme.example"))
        for name, place in shots:
            browser.show(place)
            browser.driver.execute_script("window.scrollTo(0, 0)")
            browser.drawn(place.split("/")[1].split("?")[0])
            # Layout and paint settle in the frames after the page is drawn.
            browser.run_async("const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(done));")
            path = OUT / f"{name}.png"
            browser.driver.save_screenshot(str(path))
            print(f"  {path.relative_to(REPO_ROOT)}")
        errors = browser.unexpected_errors()
        if errors:
            raise SystemExit(f"the browser console logged errors: {errors}")
    finally:
        browser.driver.quit()


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    server = get_database_settings().db_dsn
    with running_stack(server, "sluice-screens", prefix="sluice_screens") as running:
        stack = BrowserStack(running, TokenMinter.for_stack(running))
        data = seed(stack)
        job = data["jobs"][-1]["job_id"]
        shoot(
            stack,
            DESKTOP,
            [
                ("jobs", "#/jobs"),
                ("job", f"#/jobs/{job}"),
                ("quarantine", "#/quarantine?review_status=pending"),
                ("quarantine-row", f"#/quarantine/{data['quarantined']['id']}"),
                ("systems", "#/systems"),
                ("upload", "#/upload"),
                ("health", "#/health"),
            ],
        )
        shoot(stack, PHONE, [("jobs-phone", "#/jobs"), ("quarantine-phone", "#/quarantine?review_status=pending")])
    print(f"screenshots in {OUT.relative_to(REPO_ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
