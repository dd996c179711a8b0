"""Where reliability runs leave their figures: one JSON file per suite under .local/reliability/, read back by
`python -m tests.reliability.report` (which `make reliability` runs last) and quoted in docs/reliability.md."""

import json
import time
from pathlib import Path
from typing import Any

from ..paths import REPO_ROOT

FIGURES_DIR = REPO_ROOT / ".local" / "reliability"


def record_figures(name: str, figures: dict[str, Any]) -> Path:
    """Write ``figures`` (JSON-serialisable) as ``name``'s result of this run, stamped with the time."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    path = FIGURES_DIR / f"{name}.json"
    stamped = {"recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures}
    path.write_text(json.dumps(stamped, indent=2, sort_keys=True, default=str) + "\n")
    return path
