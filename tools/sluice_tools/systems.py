"""The systems register: which machines a tenant owns. Readings for any other system are quarantined."""

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import psycopg


@dataclass(frozen=True, slots=True)
class RegisteredSystem:
    """One row of ``systems``."""

    id: UUID
    tenant_id: str
    name: str
    created_at: datetime


def add_system(
    conn: psycopg.Connection, tenant_id: str, name: str, system_id: UUID | None = None
) -> tuple[RegisteredSystem, bool]:
    """Register ``name`` for the tenant (with ``system_id`` when given and free); a registered name keeps its id.
    True when the system is new."""
    if not tenant_id.strip() or not name.strip():
        raise ValueError("a system needs a tenant and a name")
    with conn.transaction():
        existing = conn.execute(
            "SELECT id, tenant_id, name, created_at FROM systems WHERE tenant_id = %s AND name = %s", (tenant_id, name)
        ).fetchone()
        if existing is not None:
            return RegisteredSystem(*existing), False
        # A wanted id that is taken (by another tenant's system, say) is not an error: the system gets a new one.
        row = conn.execute(
            "INSERT INTO systems (id, tenant_id, name) VALUES (COALESCE(%s, gen_random_uuid()), %s, %s)"
            " ON CONFLICT DO NOTHING RETURNING id, tenant_id, name, created_at",
            (system_id, tenant_id, name),
        ).fetchone()
        row = (
            row
            or conn.execute(
                "INSERT INTO systems (tenant_id, name) VALUES (%s, %s) RETURNING id, tenant_id, name, created_at",
                (tenant_id, name),
            ).fetchone()
        )
    if row is None:
        raise LookupError(f"system {name!r} of tenant {tenant_id!r} could not be registered")
    return RegisteredSystem(*row), True


def list_systems(conn: psycopg.Connection, tenant_id: str) -> list[RegisteredSystem]:
    """The tenant's systems, oldest first."""
    rows = conn.execute(
        "SELECT id, tenant_id, name, created_at FROM systems WHERE tenant_id = %s ORDER BY created_at, name",
        (tenant_id,),
    ).fetchall()
    return [RegisteredSystem(*row) for row in rows]
