"""Readings as the validation rules see them: plain tuples on the hot path, one verdict each."""

from datetime import datetime
from enum import StrEnum
from typing import NamedTuple
from uuid import UUID


class Unit(StrEnum):
    """Units a reading may carry."""

    BAR = "bar"
    CELSIUS = "celsius"
    LPM = "lpm"
    RPM = "rpm"


class QuarantineReason(StrEnum):
    """Why a reading went to quarantine instead of ``readings``."""

    INVALID_UNIT = "invalid_unit"
    OUT_OF_RANGE = "out_of_range"
    LOW_QUALITY = "low_quality"
    INVALID_TIMESTAMP = "invalid_timestamp"
    SYSTEM_NOT_FOUND = "system_not_found"
    DUPLICATE = "duplicate"
    PARSE_ERROR = "parse_error"


class ValidReading(NamedTuple):
    """A reading that passed every rule, in the column order of ``readings`` (less system and job)."""

    time: datetime
    sensor_id: UUID
    value: float
    unit: str
    quality: int


class Rejection(NamedTuple):
    """The verdict on a reading that failed a rule: which rule, which field, what was expected and what came."""

    reason: QuarantineReason
    field: str | None
    expected: str
    got: str

    @property
    def message(self) -> str:
        """One line a person can act on."""
        where = f"{self.field}: " if self.field else ""
        return f"{where}expected {self.expected}, got {self.got}"

    def as_details(self) -> dict[str, str | None]:
        """The ``reason_details`` stored with the quarantine row."""
        return {"field": self.field, "expected": self.expected, "got": self.got, "message": self.message}


Verdict = ValidReading | Rejection
