"""Constrained types shared by every model: one definition each."""

from typing import Annotated
from uuid import UUID

from pydantic import AwareDatetime, Field, StringConstraints

SensorId = Annotated[UUID, Field(description="Sensor identifier (UUID)")]
SystemId = Annotated[UUID, Field(description="Hydraulic system identifier (UUID)")]
JobId = Annotated[UUID, Field(description="Ingest job identifier (UUID)")]
TenantId = Annotated[str, StringConstraints(min_length=1, max_length=128), Field(description="Owning tenant")]
Principal = Annotated[str, StringConstraints(min_length=1, max_length=256), Field(description="JWT subject")]
Quality = Annotated[int, Field(ge=0, le=100, description="Signal quality, 0..100")]
UtcTimestamp = Annotated[AwareDatetime, Field(description="RFC 3339 timestamp with an offset")]
