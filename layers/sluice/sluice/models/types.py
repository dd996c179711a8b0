"""Constrained types shared by every model: one definition each."""

import unicodedata
from typing import Annotated, Final
from uuid import UUID

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints

# A system's name, as shown in listings and consoles: at most this many characters once trimmed.
SYSTEM_NAME_MAX: Final = 200
# Control characters (NUL among them, which PostgreSQL's text cannot hold), lone surrogates (no UTF-8 for them) and
# the line and paragraph separators: none belongs in a name shown on one line.
_UNPRINTABLE: Final = frozenset({"Cc", "Cs", "Zl", "Zp"})

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


def system_name(text: str) -> str:
    """A system's name as stored: ``text`` without surrounding white space, 1 to ``SYSTEM_NAME_MAX`` characters and
    none of them a control character. Raises ValueError (a 400 naming the field, at the edge)."""
    name = text.strip()
    if not name:
        raise ValueError("must hold a character other than white space")
    if len(name) > SYSTEM_NAME_MAX:
        raise ValueError(f"{len(name)} characters once trimmed; at most {SYSTEM_NAME_MAX}")
    unprintable = next((char for char in name if unicodedata.category(char) in _UNPRINTABLE), None)
    if unprintable is not None:
        raise ValueError(f"must not contain control characters (found U+{ord(unprintable):04X})")
    return name


# How long a system's sensor may stay without a reading before it counts as silent: from a minute to a week
# (migration 0009's CHECK on systems.silent_after_seconds), 10 minutes unless the system sets it.
SILENT_AFTER_MIN_SECONDS: Final = 60
SILENT_AFTER_MAX_SECONDS: Final = 7 * 24 * 3600
SILENT_AFTER_DEFAULT_SECONDS: Final = 600
SilentAfterSeconds = Annotated[
    int,
    Field(
        ge=SILENT_AFTER_MIN_SECONDS,
        le=SILENT_AFTER_MAX_SECONDS,
        description="Seconds a sensor of the system may go without a reading before it counts as silent",
    ),
]

SystemName = Annotated[
    str, AfterValidator(system_name), Field(description="System name, unique per tenant (trimmed, 1..200 characters)")
]
