"""Request and response shapes of ReadingsFunction: a system's readings at a resolution, and its sensors."""

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from sluice.models.api import ApiModel, QueryInstant
from sluice.models.types import JobId, Quality, SensorId, SystemId

READINGS_PAGE_DEFAULT = 1_000
READINGS_PAGE_MAX = 10_000


class Resolution(StrEnum):
    """How finely a system's readings are shown: each reading (``raw``), or one point per sensor, unit and bucket."""

    RAW = "raw"
    MINUTE = "1m"
    FIVE_MINUTES = "5m"
    HOUR = "1h"
    DAY = "1d"


class ReadingsQuery(ApiModel):
    """The query of ``GET /api/v1/systems/{system_id}/readings``. Unset ``from``, ``to`` and ``resolution`` take
    their defaults (``sluice.domain.readings``), or, with a cursor, the values the cursor's query had."""

    sensor_id: SensorId | None = None
    # "from" is a Python keyword: the attribute is from_, the query parameter from.
    from_: QueryInstant | None = Field(default=None, alias="from")
    to: QueryInstant | None = None
    resolution: Resolution | None = None
    limit: int = Field(default=READINGS_PAGE_DEFAULT, ge=1, le=READINGS_PAGE_MAX)
    cursor: str | None = Field(default=None, max_length=512)


class RawPoint(ApiModel):
    """One stored reading (``resolution=raw``)."""

    sensor_id: SensorId
    time: datetime
    value: float
    unit: str
    quality: Quality
    job_id: JobId


class RollupPoint(ApiModel):
    """The readings of one sensor and unit in one bucket: ``time`` is the bucket's start; ``last`` is the value of
    the bucket's newest reading."""

    sensor_id: SensorId
    time: datetime
    unit: str
    count: int = Field(ge=1)
    min: float
    max: float
    avg: float
    last: float


class ReadingsPage(ApiModel):
    """One page of a system's points, by sensor, then time, then unit; ``next_cursor`` is null on the last page.
    ``from`` and ``to`` are the window the points were chosen in (defaults filled in)."""

    system_id: SystemId
    resolution: Resolution
    from_: datetime = Field(alias="from")
    to: datetime
    items: list[RawPoint] | list[RollupPoint]
    next_cursor: str | None


class SensorView(ApiModel):
    """One sensor of a system: its newest reading, what it sent lately, and whether it still sends."""

    sensor_id: SensorId
    unit: str
    last_value: float
    last_time: datetime
    # Readings of the minutes that began in the hour (day) before the answer: whole minutes of readings_1m.
    readings_last_hour: int = Field(ge=0)
    readings_last_day: int = Field(ge=0)
    # silent: no reading for longer than the system's silent_after_seconds.
    status: Literal["live", "silent"]


class SensorList(ApiModel):
    """Every sensor of a system that has sent a reading, by sensor id, and the system's silence setting."""

    system_id: SystemId
    silent_after_seconds: int = Field(ge=1)
    items: list[SensorView]
