"""Throughput of the reading rules, against references measured in the same run.

    make bench            (or: .venv/bin/python -m tests.bench.bench_validation [--readings N])

Prints readings/s for the rules over decoded readings, and the ratio to two references on the same readings:
decoding them with the standard library's ``json.loads`` (the floor any worker pays) and validating them one
pydantic model per reading (``ReadingIn``: types and units only, no range, quality or clock rules; a model per
reading is what the rules avoid, and this shows what that would cost even before the rules). Writes the figures to
``.local/bench-validation.json``. Machine noise is +-15-30% between runs: compare ratios, not absolute figures.
"""

import argparse
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from pydantic import TypeAdapter, ValidationError

from sluice.domain.chunks import RepeatFinder
from sluice.domain.validation import ReadingValidator
from sluice.models.api import ReadingIn
from sluice.models.readings import ValidReading

from ..paths import REPO_ROOT

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
# The rules see one batch, so one system: the repeat check keys on (system, sensor, instant).
SYSTEM = UUID("0b8e4a52-6f1d-4c2e-9a3b-5d7c8e9f0a1b")
UNITS = {"bar": (0.0, 700.0), "celsius": (-40.0, 120.0), "lpm": (0.0, 1000.0), "rpm": (0.0, 6000.0)}


def make_readings(count: int, seed: int = 4413) -> list[dict[str, Any]]:
    """Readings from 100 systems x 20 sensors sampling every second; about 1% break each kind of rule."""
    rng = random.Random(seed)
    sensors = [(str(UUID(int=rng.getrandbits(128), version=4)), rng.choice(list(UNITS))) for _ in range(2000)]
    start = NOW - timedelta(hours=1)
    readings: list[dict[str, Any]] = []
    for i in range(count):
        sensor_id, unit = sensors[i % len(sensors)]
        low, high = UNITS[unit]
        reading: dict[str, Any] = {
            "sensor_id": sensor_id,
            "timestamp": (start + timedelta(seconds=i // len(sensors))).isoformat(),
            "value": round(rng.uniform(low, high), 3),
            "unit": unit,
            "quality": rng.randint(70, 100),
        }
        roll = rng.random()
        if roll < 0.01:
            reading["unit"] = "psi"
        elif roll < 0.02:
            reading["value"] = high * 2
        elif roll < 0.03:
            reading["quality"] = 10
        elif roll < 0.04:
            reading["timestamp"] = reading["timestamp"][:19]
        elif roll < 0.05:
            del reading["sensor_id"]
        readings.append(reading)
    return readings


def rate(count: int, work: Callable[[], object], repeat: int = 3) -> float:
    """Best readings/s of ``repeat`` runs of ``work``."""
    best = min(_timed(work) for _ in range(repeat))
    return count / best


def _timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def rules_pass(raws: list[Any]) -> int:
    """The rules as the worker's chunk loop applies them: one verdict per reading, then the in-batch repeat check
    on the valid ones. Returns how many readings are valid."""
    judge = ReadingValidator(NOW).judge
    repeat_of = RepeatFinder().repeat_of
    valid = 0
    for position, raw in enumerate(raws):
        verdict = judge(raw)
        if type(verdict) is ValidReading and repeat_of(SYSTEM, verdict[1], verdict[0], position) is None:
            valid += 1
    return valid


def pydantic_per_reading(raws: list[Any]) -> int:
    adapter = TypeAdapter(ReadingIn)
    valid = 0
    for raw in raws:
        try:
            adapter.validate_python(raw)
            valid += 1
        except ValidationError:
            pass
    return valid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readings", type=int, default=200_000)
    args = parser.parse_args()

    readings = make_readings(args.readings)
    payload = json.dumps(readings)
    decoded = json.loads(payload)
    n = len(decoded)

    rules = rate(n, lambda: rules_pass(decoded))
    decode = rate(n, lambda: json.loads(payload))
    per_model = rate(n, lambda: pydantic_per_reading(decoded))
    valid = rules_pass(decoded)

    figures = {
        "readings": n,
        "valid": valid,
        "quarantined": n - valid,
        "rules_readings_per_s": round(rules),
        "json_loads_readings_per_s": round(decode),
        "pydantic_per_reading_readings_per_s": round(per_model),
        "rules_vs_json_loads": round(rules / decode, 2),
        "rules_vs_pydantic_per_reading": round(rules / per_model, 2),
    }
    print(f"reading rules over {n:,} decoded readings ({n - valid:,} quarantined)")
    print(f"  rules                    {rules:>12,.0f} readings/s")
    print(f"  json.loads (reference)   {decode:>12,.0f} readings/s   rules / json.loads = {rules / decode:.2f}")
    print(f"  pydantic per reading *   {per_model:>12,.0f} readings/s   rules / pydantic  = {rules / per_model:.2f}")
    print("  * types and units only: pydantic does less work here than the rules")
    out = REPO_ROOT / ".local" / "bench-validation.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"  written to {Path(out).relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
