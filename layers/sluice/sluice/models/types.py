"""Constrained types shared by every model: one definition each."""

from typing import Annotated
from uuid import UUID

from pydantic import AwareDatetime, Field, StringConstraints

SensorId = Annotated[UUID, Field(description="Sensor identifier (UUID)")]
SystemId = Annotated[UUID, Field(description="Hydraulic system identifier (UUID)")]
JobId = Annotated[UUID, Field(description="Ingest job identifier (UUID)")]
TenantId = Annotated[
    str,
    # Tenants name S3 prefixes (incoming/<tenant>/, drops/<tenant>/), so no slashes, spaces or dots first.
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"),
    Field(description="Owning tenant"),
]
Principal = Annotated[str, StringConstraints(min_length=1, max_length=256), Field(description="JWT subject")]
Quality = Annotated[int, Field(ge=0, le=100, description="Signal quality, 0..100")]
UtcTimestamp = Annotated[AwareDatetime, Field(description="RFC 3339 timestamp with an offset")]
