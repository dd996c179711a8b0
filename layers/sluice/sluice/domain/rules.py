"""The reading rules' thresholds, in one place (the platform's ISO 4413-based table, in docs/architecture.md)."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Final

#: Accepted range per unit, both ends inclusive.
UNIT_RANGES: Final[Mapping[str, tuple[float, float]]] = MappingProxyType(
    {
        "bar": (0.0, 700.0),
        "celsius": (-40.0, 120.0),
        "lpm": (0.0, 1000.0),
        "rpm": (0.0, 6000.0),
    }
)

#: Quality is a 0..100 score; below ``MIN_QUALITY`` the reading is quarantined as ``low_quality``. (The platform's
#: tiers above it, good >= 90 and acceptable >= 70, name scores; no rule depends on them.)
QUALITY_BOUNDS: Final = (0, 100)
MIN_QUALITY: Final = 50

#: Clock skew tolerated for devices whose clocks run ahead.
MAX_FUTURE_SKEW: Final = timedelta(minutes=5)
#: Readings older than this many calendar years are refused (the retention horizon).
MAX_AGE_YEARS: Final = 5


@dataclass(frozen=True, slots=True)
class ReadingRules:
    """The thresholds one validation run applies; the defaults are the table above."""

    unit_ranges: Mapping[str, tuple[float, float]] = field(default_factory=lambda: UNIT_RANGES)
    min_quality: int = MIN_QUALITY
    max_future_skew: timedelta = MAX_FUTURE_SKEW
    max_age_years: int = MAX_AGE_YEARS


DEFAULT_RULES: Final = ReadingRules()
