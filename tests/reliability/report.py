"""`make reliability`'s last step: the figures every suite left in .local/reliability/, printed as one summary
(the source of docs/reliability.md's tables)."""

import json
import sys
from typing import Any

from .figures import FIGURES_DIR

SUITES = (
    "faults", "hostile", "access", "schemathesis", "stateful", "load", "drop_bounds", "lost_events", "notifications",
)  # fmt: skip


def summary(figures: dict[str, dict[str, Any]]) -> list[str]:
    """One line per fault scenario and per suite, then the totals the issue asks for."""
    lines: list[str] = []
    scenarios = figures.get("faults", {}).get("scenarios", {})
    accepted = lost = duplicated = 0
    for name, result in scenarios.items():
        accepted += result["accepted_readings"]
        lost += result["lost"]
        duplicated += result["duplicated"]
        verdict = "ok" if result["ok"] else "FAILED"
        lines.append(
            f"fault  {name:<58} {verdict:<6} accepted {result['accepted_readings']:>9,}  lost {result['lost']}"
            f"  duplicated {result['duplicated']}  unexpected {result['unexpected']}"
            f"  job mismatches {len(result['job_mismatches'])}"
            f"  rollup mismatches {len(result.get('rollup_mismatches', []))}"
        )
    for suite in SUITES[1:]:
        found = figures.get(suite)
        if found is None:
            lines.append(f"suite  {suite:<58} no figures (not run)")
            continue
        shown = {k: v for k, v in found.items() if isinstance(v, int | float | str) and k != "recorded_at"}
        lines.append(f"suite  {suite:<58} " + "  ".join(f"{k} {v}" for k, v in sorted(shown.items())))
    lines.append(
        f"total  scenarios {len(scenarios)}, readings accepted {accepted:,}, lost {lost}, duplicated {duplicated}"
    )
    return lines


def main() -> int:
    figures = {}
    for suite in SUITES:
        path = FIGURES_DIR / f"{suite}.json"
        if path.exists():
            figures[suite] = json.loads(path.read_text())
    for line in summary(figures):
        print(line)
    return 0 if figures else 1


if __name__ == "__main__":
    sys.exit(main())
