"""The systems register: which machines a tenant owns, and what has lately reached Sluice for each.

A system's id is what devices send with their readings, so an id names one system in the whole deployment: a tenant
may register the ids its devices already use, unless another tenant holds one (``system_id_taken``, never saying
whose). Names are unique per tenant.

Registration is idempotent, so a client that timed out may simply send its request again:

- ``{"name", "id"}`` that is registered as sent: 200 with the system (nothing changes);
- ``{"name"}`` alone, a name the tenant registered already: 200 with that system, whatever its id. A name is the
  key a client without an id has; a second client naming the same system learns from the 200 that it was there;
- an id the tenant registered under another name: 409 ``system_id_taken``, naming the name it has (the tenant's
  own), since a retry of this request would have found its own name there; PATCH renames;
- a name another of the tenant's systems has: 409 ``name_taken``.

The store writes with ``INSERT .. ON CONFLICT DO NOTHING``, so of two requests racing for one id or name one
inserts and the other finds the winner's row and is decided here like any later request.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from uuid import UUID

from sluice.domain.pages import bad_cursor, decode_cursor, encode_cursor, fill_page
from sluice.errors import NameTakenError, NotFoundError, Problem, StorageUnavailableError, SystemIdTakenError
from sluice.models.api import SystemCreate, SystemPage, SystemQuery, SystemUpdate, SystemView

SYSTEMS_CURSOR = "systems"
# readings_24h counts the readings of this window before the answer, in whole minutes (recent_since).
RECENT_WINDOW = timedelta(hours=24)
# A conflicting row can be renamed between the insert that met it and the read that looks for it: read again, at
# most this many times (each a rename racing this very registration).
_REGISTER_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class SystemRow:
    """One row of ``systems``."""

    id: UUID
    tenant_id: str
    name: str
    created_at: datetime
    silent_after_seconds: int


@dataclass(frozen=True, slots=True)
class SystemFigures:
    """What has lately reached Sluice for one system."""

    last_reading_at: datetime | None = None
    readings_24h: int = 0
    pending_quarantine: int = 0


@dataclass(frozen=True, slots=True)
class Registered:
    """A registration's answer: the system, and whether this request created it (201) or found it (200)."""

    system: SystemRow
    created: bool


class SystemStore(Protocol):
    """Where systems are kept, and the figures read about them."""

    def insert(self, tenant_id: str, name: str, system_id: UUID | None, silent_after_seconds: int) -> SystemRow | None:
        """Insert the system (with a new id when ``system_id`` is None); None when an id or name conflicts."""
        ...

    def by_id(self, system_id: UUID) -> SystemRow | None:
        """The system with this id, of whichever tenant (for deciding a registration only, never shown)."""
        ...

    def by_name(self, tenant_id: str, name: str) -> SystemRow | None:
        """The tenant's system of this name."""
        ...

    def tenant_system(self, tenant_id: str, system_id: UUID) -> SystemRow | None:
        """The tenant's system with this id."""
        ...

    def list_rows(self, tenant_id: str, limit: int, after_name: str | None) -> list[SystemRow]:
        """The tenant's systems by name, after ``after_name``."""
        ...

    def update(
        self, tenant_id: str, system_id: UUID, name: str | None, silent_after_seconds: int | None
    ) -> SystemRow | None:
        """Set the tenant's system's name and silence setting, each unless None; None when it has no system with
        this id. Raises NameTakenError."""
        ...

    def figures(self, tenant_id: str, system_ids: Sequence[UUID], since: datetime) -> Mapping[UUID, SystemFigures]:
        """Each system's figures, its readings counted in the minutes that begin at ``since`` or later."""
        ...


def decide_registration(
    tenant_id: str, request: SystemCreate, holder: SystemRow | None, named: SystemRow | None
) -> Registered | None:
    """The answer to a registration whose insert conflicted, given the row holding the wanted id (if one was sent)
    and the tenant's row of the wanted name. None when neither conflicts any longer (renamed meanwhile): insert
    again."""
    if request.id is not None and holder is not None:
        if holder.tenant_id != tenant_id:
            raise SystemIdTakenError(
                f"system id {request.id} is registered already",
                [Problem(field="id", reason="another system has this id: devices must send an id of their own")],
            )
        if holder.name != request.name:
            raise SystemIdTakenError(
                f"system id {request.id} is registered as {holder.name!r}",
                [Problem(field="id", reason=f"this tenant's system {holder.name!r} has it; PATCH it to rename it")],
            )
        return Registered(holder, created=False)
    if named is not None:
        if request.id is None:
            return Registered(named, created=False)
        raise NameTakenError(
            f"the tenant has a system named {request.name!r} already",
            [Problem(field="name", reason=f"system {named.id} has this name")],
        )
    return None


def register_system(store: SystemStore, tenant_id: str, request: SystemCreate) -> Registered:
    """Register a system for the tenant, or find the one this request registered before (see the module)."""
    for _ in range(_REGISTER_ATTEMPTS):
        inserted = store.insert(tenant_id, request.name, request.id, request.silent_after_seconds)
        if inserted is not None:
            return Registered(inserted, created=True)
        holder = None if request.id is None else store.by_id(request.id)
        named = store.by_name(tenant_id, request.name)
        decided = decide_registration(tenant_id, request, holder, named)
        if decided is not None:
            return decided
    raise StorageUnavailableError(f"registering {request.name!r} kept conflicting with renames of other systems")


def update_system(store: SystemStore, tenant_id: str, system_id: str, request: SystemUpdate) -> SystemRow:
    """Rename one of the tenant's systems or set its silence (``PATCH /api/v1/systems/{system_id}``); 404 for any
    other id."""
    found = store.update(tenant_id, _system_id(system_id), request.name, request.silent_after_seconds)
    if found is None:
        raise _not_found(system_id)
    return found


def find_system(store: SystemStore, tenant_id: str, system_id: str) -> SystemRow:
    """One of the tenant's systems; 404 for an id of another tenant, an unknown one or one that is no UUID."""
    found = store.tenant_system(tenant_id, _system_id(system_id))
    if found is None:
        raise _not_found(system_id)
    return found


def list_systems(store: SystemStore, tenant_id: str, query: SystemQuery, now: datetime) -> SystemPage:
    """One page of the tenant's systems by name, with their figures."""
    after_name = None if query.cursor is None else _after_name(decode_cursor(SYSTEMS_CURSOR, query.cursor))
    rows = store.list_rows(tenant_id, query.limit + 1, after_name)
    # Figures for the rows that can be shown only: the row past the page tells only that there is more.
    figures = store.figures(tenant_id, [row.id for row in rows[: query.limit]], recent_since(now))
    shown, following = fill_page((system_view(row, figures.get(row.id)) for row in rows), query.limit)
    return SystemPage(
        items=shown,
        next_cursor=encode_cursor(SYSTEMS_CURSOR, {"after_name": shown[-1].name}) if following else None,
    )


def show_system(store: SystemStore, system: SystemRow, now: datetime) -> SystemView:
    """One system with its figures."""
    figures = store.figures(system.tenant_id, [system.id], recent_since(now))
    return system_view(system, figures.get(system.id))


def recent_since(now: datetime) -> datetime:
    """Where ``readings_24h`` starts: the minute that holds the moment ``RECENT_WINDOW`` before ``now``. The count
    comes from the per-minute rollup, so it takes whole minutes, that one included: up to a minute more than 24
    hours, never a reading of the window less."""
    return (now - RECENT_WINDOW).replace(second=0, microsecond=0)


def system_view(row: SystemRow, figures: SystemFigures | None) -> SystemView:
    """A system as the API shows it."""
    shown = figures or SystemFigures()
    return SystemView(
        id=row.id,
        name=row.name,
        created_at=row.created_at,
        silent_after_seconds=row.silent_after_seconds,
        last_reading_at=shown.last_reading_at,
        readings_24h=shown.readings_24h,
        pending_quarantine=shown.pending_quarantine,
    )


def _system_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise _not_found(text) from None


def _not_found(system_id: str) -> NotFoundError:
    return NotFoundError(f"no system {system_id} in this tenant")


def _after_name(position: dict[str, object]) -> str:
    after_name = position.get("after_name")
    if not isinstance(after_name, str) or not after_name:
        raise bad_cursor()
    return after_name
