"""The systems register behind `sluice systems add|list`."""

from uuid import UUID

import psycopg
import pytest

from sluice_tools.local.stack import register_demo_system
from sluice_tools.systems import SystemRegistrationError, add_system, list_systems

pytestmark = pytest.mark.db

WANTED = UUID("3f0c9a52-6a7e-4c43-9a55-2c8f1b7d9e01")


def test_a_system_is_added_once_and_listed_per_tenant(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    first, new = add_system(conn, "demo", "press-17", WANTED)
    again, new_again = add_system(conn, "demo", "press-17")
    other, _ = add_system(conn, "other", "press-17")

    assert (first.id, new) == (WANTED, True)
    assert (again.id, new_again) == (WANTED, False)
    assert other.id != WANTED
    assert [system.name for system in list_systems(conn, "demo")] == ["press-17"]
    assert [system.id for system in list_systems(conn, "other")] == [other.id]


def test_a_wanted_id_that_is_taken_is_an_error_never_another_id(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    add_system(conn, "demo", "press-17", WANTED)

    with pytest.raises(SystemRegistrationError, match=f"system_id_taken: system id {WANTED} is registered already"):
        add_system(conn, "acme", "press-1", WANTED)
    with pytest.raises(SystemRegistrationError, match="registered as 'press-17'"):
        add_system(conn, "demo", "press-18", WANTED)
    with pytest.raises(SystemRegistrationError, match="name_taken"):
        add_system(conn, "demo", "press-17", UUID("7d2e4b1a-5c3f-4e60-9a81-b2c3d4e5f607"))

    assert [
        (system.tenant_id, system.name) for system in (*list_systems(conn, "demo"), *list_systems(conn, "acme"))
    ] == [("demo", "press-17")]


def test_a_name_the_api_would_refuse_is_refused(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    with pytest.raises(SystemRegistrationError, match="control characters"):
        add_system(conn, "demo", "press\n17")


@pytest.mark.parametrize(("tenant", "name"), [("", "press"), ("demo", " ")])
def test_a_system_needs_a_tenant_and_a_name(
    conn: psycopg.Connection[tuple[object, ...]], tenant: str, name: str
) -> None:
    with pytest.raises(ValueError, match="needs a tenant and a name"):
        add_system(conn, tenant, name)


def test_the_local_stack_starts_with_its_demo_system_renamed(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    first = register_demo_system(conn, "demo", "press-17")
    conn.execute("UPDATE systems SET name = 'press-17 (hall 2)' WHERE id = %s", (WANTED,))

    again = register_demo_system(conn, "demo", "press-17")

    assert first == (str(WANTED), None)
    assert again[0] == str(WANTED)
    assert again[1] is not None
    assert "registered as 'press-17 (hall 2)'" in again[1]
