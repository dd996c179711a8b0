"""``make screenshots``: a PNG of each console page, for docs/console.md.

Starts `make run`'s stack on free ports with a scratch database (as the browser tests do), gives a tenant a few
systems, batches with bad readings and a review, then opens each page in headless Chromium at 1280x800 (and the
jobs page at phone width) and saves it under docs/console/. Run it again after changing a page; names given
(``python -m tests.browser.screenshots alarms webhooks``) write those pictures only.

The alarms and the webhook deliveries are written with SQL, as the evaluator and the dispatcher write them: the
stack runs neither against this sample data.
"""

import json
import sys
import uuid
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from selenium.webdriver.common.by import By

from sluice_tools.settings import get_database_settings

from ..paths import REPO_ROOT
from ..stack_harness import TokenMinter, finished_job, http, now_text, running_stack
from .harness import DESKTOP, PHONE, Browser, BrowserStack, Viewport, start_chromium

OUT = REPO_ROOT / "docs" / "console"
TENANT = "acme"
SENSORS = ["6b1d2c3e-4f50-4a61-8b72-93a4b5c6d7e8", "8c2e3d4f-5061-4b72-9c83-a4b5c6d7e8f9"]


def seed(stack: BrowserStack) -> dict[str, Any]:
    """A tenant with three systems and a few finished jobs, some of whose readings wait in quarantine; alarms, and a
    webhook subscription with deliveries."""
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
    alarm = seed_alarms(stack, systems)
    webhook = seed_webhook(stack, alarm)
    return {"jobs": jobs, "quarantined": page["items"][2], "systems": systems, "alarm": alarm, "webhook": webhook}


def seed_alarms(stack: BrowserStack, systems: dict[str, str]) -> str:
    """Four alarms of three rules, as the evaluator and the API leave them: two active, one acknowledged (with its
    note), one cleared; the id of the newest."""
    now = datetime.now(UTC).replace(microsecond=0)
    press, pump, hall2 = systems["press-17 (hall 1)"], systems["pump-04"], systems["press-21 (hall 2)"]
    rules = [
        ("supply pressure high", "threshold", press, "critical", "bar", "above", 250, 240, 300, None),
        ("flow sensor silent", "silent", pump, "warning", None, None, None, None, None, 900),
        ("return temperature high", "threshold", hall2, "warning", "celsius", "above", 70, 65, 600, None),
    ]
    alarms = [
        # rule, system, value, raised minutes ago, acknowledged (by, minutes ago, note), cleared minutes ago
        (0, press, 262.5, 4, None, None),
        (1, pump, None, 38, ("ben@acme.example", 31, "Cable of the flow meter replaced; watching it."), None),
        (2, hall2, 71.8, 95, None, 62),
        (0, hall2, 251.2, 140, None, None),
    ]
    with stack.connect() as conn:
        rule_ids = [
            conn.execute(
                "INSERT INTO alert_rules (tenant_id, name, kind, system_id, severity, unit, condition, threshold,"
                " clear_threshold, for_seconds, after_seconds, created_by)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'anna@acme.example') RETURNING id",
                (TENANT, *rule),
            ).fetchone()[0]  # type: ignore[index]  # RETURNING answers one row
            for rule in rules
        ]
        newest = None
        for rule_index, system, value, raised, acknowledged, cleared in alarms:
            name, kind, _, severity, unit = rules[rule_index][:5]
            raised_at = now - timedelta(minutes=raised)
            status = "cleared" if cleared else "acknowledged" if acknowledged else "active"
            alarm_id = conn.execute(
                "INSERT INTO alarms (tenant_id, rule_id, rule_name, kind, severity, system_id, sensor_id, unit,"
                " status, value, trigger_time, raised_at, acknowledged_by, acknowledged_at, acknowledge_note,"
                " cleared_time, cleared_at, cleared_reason)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (
                    TENANT,
                    rule_ids[rule_index],
                    name,
                    kind,
                    severity,
                    system,
                    SENSORS[raised % 2],
                    unit,
                    status,
                    value,
                    raised_at - timedelta(minutes=1),
                    raised_at,
                    acknowledged[0] if acknowledged else None,
                    now - timedelta(minutes=acknowledged[1]) if acknowledged else None,
                    acknowledged[2] if acknowledged else None,
                    now - timedelta(minutes=cleared + 1) if cleared else None,
                    now - timedelta(minutes=cleared) if cleared else None,
                    "condition_cleared" if cleared else None,
                ),
            ).fetchone()[0]  # type: ignore[index]
            newest = newest or str(alarm_id)
            # What the evaluator writes (sluice.adapters.evaluation).
            detail = {"trigger_time": (raised_at - timedelta(minutes=1)).isoformat(), "value": value}
            events: list[tuple[str, datetime, str | None, str | None, dict[str, Any]]] = [
                ("raised", raised_at, None, None, detail)
            ]
            if acknowledged:
                events.append(
                    ("acknowledged", now - timedelta(minutes=acknowledged[1]), acknowledged[0], acknowledged[2], {})
                )
            if cleared:
                saw = {"cleared_time": (now - timedelta(minutes=cleared + 1)).isoformat(), "value": 64.1}
                events.append(
                    ("cleared", now - timedelta(minutes=cleared), None, None, saw | {"reason": "condition_cleared"})
                )
            for event, at, actor, note, seen in events:
                conn.execute(
                    "INSERT INTO alarm_events (alarm_id, event, at, actor, note, detail)"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
                    (alarm_id, event, at, actor, note, json.dumps(seen)),
                )
    assert newest is not None
    return newest


def seed_webhook(stack: BrowserStack, alarm_id: str) -> str:
    """A subscription to the alarm events (made through the API) and four deliveries with their attempts, as the
    dispatcher leaves them; its id."""
    bearer = stack.token(tenant=TENANT, sub="anna@acme.example")
    made = http(
        "POST",
        stack.url("/api/v1/webhooks"),
        bearer,
        {
            "url": "http://127.0.0.1:8070/hooks/sluice",
            "events": ["alarm.raised", "alarm.cleared", "alarm.acknowledged"],
        },
    ).body
    now = datetime.now(UTC)
    # event, minutes ago, status, attempts: (seconds after, duration ms, status code, error, response)
    deliveries: list[tuple[str, int, str, list[tuple[int, int, int | None, str | None, str | None]]]] = [
        ("alarm.raised", 4, "delivered", [(0, 38, 204, None, "")]),
        (
            "alarm.acknowledged",
            31,
            "delivered",
            [(0, 10001, None, "timed out after 10 s", None), (40, 52, 200, None, "ok")],
        ),
        ("alarm.cleared", 62, "pending", [(0, 9, 503, None, '{"error": "maintenance window"}')]),
        ("alarm.raised", 95, "delivered", [(0, 41, 204, None, "")]),
    ]
    with stack.connect() as conn:
        for event, ago, status, attempts in deliveries:
            created = now - timedelta(minutes=ago)
            delivery = f"msg_{uuid.uuid4().hex}"
            last = created + timedelta(seconds=attempts[-1][0])
            conn.execute(
                "INSERT INTO webhook_deliveries (id, webhook_id, tenant_id, event_type, event_key, body,"
                " created_at, status, attempts, next_attempt_at, delivered_at)"
                " VALUES (%s, %s, %s, %s, %s, '{}', %s, %s, %s, %s, %s)",
                (
                    delivery,
                    made["id"],
                    TENANT,
                    event,
                    f"{event}:{alarm_id if ago == 4 else uuid.uuid4()}",
                    created,
                    status,
                    len(attempts),
                    now + timedelta(minutes=5) if status == "pending" else last,
                    last if status == "delivered" else None,
                ),
            )
            for number, (after, duration_ms, code, error, response) in enumerate(attempts, start=1):
                conn.execute(
                    "INSERT INTO webhook_attempts (delivery_id, attempt, at, duration_ms, status_code, error, response)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (delivery, number, created + timedelta(seconds=after), duration_ms, code, error, response),
                )
    return str(made["id"])


def create_a_webhook(browser: Browser) -> None:
    """Fill the webhooks page's form and create a subscription: the page then shows its secret, once."""
    browser.driver.find_element(By.ID, "webhook-url").send_keys("http://127.0.0.1:8071/sluice/jobs")
    for box in browser.driver.find_elements(By.CSS_SELECTOR, 'input[name="event"]'):
        if box.is_selected() != str(box.get_attribute("value")).startswith("job."):
            box.click()
    browser.driver.find_element(By.ID, "webhook-submit").click()
    browser.wait_for("#webhook-created")
    browser.driver.find_element(By.ID, "webhook-secret").click()


def shoot(
    stack: BrowserStack,
    viewport: Viewport,
    shots: list[tuple[str, str]],
    actions: Mapping[str, Callable[[Browser], None]] | None = None,
    only: Collection[str] = (),
) -> None:
    """Each shot's page drawn, then the shot's action (a form filled, say), saved as <name>.png; with ``only``,
    those names alone."""
    browser = Browser(start_chromium(viewport), stack.base_url, viewport)
    try:
        browser.sign_in(stack.token(tenant=TENANT, sub="anna@acme.example"))
        for name, place in shots:
            if only and name not in only:
                continue
            browser.show(place)
            browser.driver.execute_script("window.scrollTo(0, 0)")
            browser.drawn(place.split("/")[1].split("?")[0])
            if actions and name in actions:
                actions[name](browser)
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
    only = sys.argv[1:]
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
                ("alarms", "#/alarms"),
                ("alarm", f"#/alarms/{data['alarm']}"),
                ("webhooks", "#/webhooks"),
                ("webhook", f"#/webhooks/{data['webhook']}"),
                ("health", "#/health"),
            ],
            {"webhooks": create_a_webhook},
            only,
        )
        phone = [("jobs-phone", "#/jobs"), ("quarantine-phone", "#/quarantine?review_status=pending")]
        shoot(stack, PHONE, phone, None, only)
    print(f"screenshots in {OUT.relative_to(REPO_ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
