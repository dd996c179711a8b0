"""The systems register's pure rules: names, the registration's decisions and its retry, paging and the figures
shown, with an in-memory store standing in for TimescaleDB."""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from pydantic import ValidationError

from sluice.domain.pages import encode_cursor
from sluice.domain.systems import (
    RECENT_WINDOW,
    Registered,
    SystemFigures,
    SystemRow,
    decide_registration,
    find_system,
    list_systems,
    recent_since,
    register_system,
    show_system,
    update_system,
)
from sluice.errors import (
    InvalidRequestError,
    NameTakenError,
    NotFoundError,
    StorageUnavailableError,
    SystemIdTakenError,
)
from sluice.models.api import SystemCreate, SystemQuery, SystemUpdate
from sluice.models.types import SYSTEM_NAME_MAX, system_name

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
MINE, THEIRS = "demo", "other"


# --- names --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("press-17", "press-17"),
        ("  press 17\t", "press 17"),
        ("é" * SYSTEM_NAME_MAX, "é" * SYSTEM_NAME_MAX),
        ("泵 3 🛠", "泵 3 🛠"),
    ],
)
def test_a_name_is_kept_trimmed(sent: str, stored: str) -> None:
    assert system_name(sent) == stored


@pytest.mark.parametrize(
    ("sent", "reason"),
    [
        ("", "white space"),
        (" \t\n ", "white space"),
        ("x" * (SYSTEM_NAME_MAX + 1), "at most 200"),
        ("press\n17", "U+000A"),
        ("press\x0017", "U+0000"),
        ("press\x7f17", "U+007F"),
        ("press\u202817", "U+2028"),
        ("press\ud80017", "U+D800"),
    ],
    ids=["empty", "blank", "201 characters", "line break", "NUL", "DEL", "line separator", "lone surrogate"],
)
def test_a_name_that_cannot_be_shown_on_one_line_is_refused(sent: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        system_name(sent)


def test_a_registration_names_the_field_at_fault_and_refuses_unknown_members() -> None:
    with pytest.raises(ValidationError) as caught:
        SystemCreate.model_validate_json('{"name": " ", "id": "press-17", "tenant_id": "other"}', strict=True)

    assert {error["loc"][0] for error in caught.value.errors()} == {"name", "id", "tenant_id"}


def test_a_change_takes_a_name_a_silence_or_both_and_nothing_else() -> None:
    assert SystemUpdate.model_validate_json('{"name": " press-18 "}', strict=True).name == "press-18"
    assert SystemUpdate.model_validate_json('{"silent_after_seconds": 60}', strict=True).name is None
    with pytest.raises(ValidationError):
        SystemUpdate.model_validate_json(f'{{"name": "press-18", "id": "{uuid4()}"}}', strict=True)
    with pytest.raises(ValidationError, match="send name, silent_after_seconds or both"):
        SystemUpdate.model_validate_json('{"name": null}', strict=True)


@pytest.mark.parametrize("seconds", [59, 604_801, 0, -600])
def test_a_silence_out_of_its_range_is_refused_naming_the_field(seconds: int) -> None:
    for model, body in (
        (SystemCreate, f'{{"name": "p", "silent_after_seconds": {seconds}}}'),
        (SystemUpdate, f'{{"silent_after_seconds": {seconds}}}'),
    ):
        with pytest.raises(ValidationError) as caught:
            model.model_validate_json(body, strict=True)
        assert [error["loc"] for error in caught.value.errors()] == [("silent_after_seconds",)]


def test_a_registration_is_silent_after_ten_minutes_unless_it_says_otherwise() -> None:
    assert SystemCreate(name="p").silent_after_seconds == 600
    assert SystemCreate(name="p", silent_after_seconds=604_800).silent_after_seconds == 604_800


# --- deciding a registration that conflicted ------------------------------------------------------------------------


def row(name: str = "press-17", tenant: str = MINE, system_id: UUID | None = None, silent: int = 600) -> SystemRow:
    return SystemRow(id=system_id or uuid4(), tenant_id=tenant, name=name, created_at=NOW, silent_after_seconds=silent)


def test_the_same_name_and_id_again_finds_the_system() -> None:
    held = row()

    decided = decide_registration(MINE, SystemCreate(name="press-17", id=held.id), held, held)

    assert decided == Registered(held, created=False)


def test_a_name_alone_finds_the_tenants_system_of_that_name() -> None:
    named = row()

    assert decide_registration(MINE, SystemCreate(name="press-17"), None, named) == Registered(named, created=False)


def test_an_id_of_another_tenant_is_taken_without_a_word_about_it() -> None:
    theirs = row("secret-line", THEIRS)

    with pytest.raises(SystemIdTakenError) as caught:
        decide_registration(MINE, SystemCreate(name="press-17", id=theirs.id), theirs, None)

    said = f"{caught.value.message} {caught.value.details}"
    assert THEIRS not in said.replace("another", "")
    assert "secret-line" not in said
    assert caught.value.details[0].field == "id"


def test_an_id_of_the_tenant_under_another_name_is_taken_and_names_it() -> None:
    mine = row("press-17")

    with pytest.raises(SystemIdTakenError, match="registered as 'press-17'"):
        decide_registration(MINE, SystemCreate(name="press-18", id=mine.id), mine, None)


def test_a_name_of_another_system_with_a_wanted_id_is_taken() -> None:
    named = row("press-17")

    with pytest.raises(NameTakenError) as caught:
        decide_registration(MINE, SystemCreate(name="press-17", id=uuid4()), None, named)

    assert caught.value.details[0].field == "name"


def test_a_conflict_that_is_gone_asks_for_another_insert() -> None:
    assert decide_registration(MINE, SystemCreate(name="press-17", id=uuid4()), None, None) is None
    assert decide_registration(MINE, SystemCreate(name="press-17"), None, None) is None


# --- the store's part, in memory ------------------------------------------------------------------------------------


@dataclass
class MemoryStore:
    """Systems in a list, with the unique id and (tenant, name) of the real table; ``renamed_on_conflict`` renames
    the conflicting row away as a concurrent PATCH would, that many times; ``always_renamed`` has each conflicting
    row renamed away before it is read and another renamed into its place before the next insert."""

    rows: list[SystemRow] = field(default_factory=list)
    figures_of: dict[UUID, SystemFigures] = field(default_factory=dict)
    renamed_on_conflict: int = 0
    always_renamed: bool = False
    inserts: int = 0
    figures_asked: list[tuple[str, list[UUID], datetime]] = field(default_factory=list)

    def insert(self, tenant_id: str, name: str, system_id: UUID | None, silent_after_seconds: int) -> SystemRow | None:
        self.inserts += 1
        wanted = system_id or uuid4()
        clash = [r for r in self.rows if r.id == wanted or (r.tenant_id, r.name) == (tenant_id, name)]
        if clash and self.always_renamed:
            return None
        if clash and self.renamed_on_conflict:
            self.renamed_on_conflict -= 1
            self.rows = [replace(r, name=f"{r.name}-moved") if r in clash else r for r in self.rows]
            return None
        if clash:
            return None
        self.rows.append(row(name, tenant_id, wanted, silent_after_seconds))
        return self.rows[-1]

    def by_id(self, system_id: UUID) -> SystemRow | None:
        return next((r for r in self.rows if r.id == system_id), None)

    def by_name(self, tenant_id: str, name: str) -> SystemRow | None:
        if self.always_renamed:
            return None
        return next((r for r in self.rows if (r.tenant_id, r.name) == (tenant_id, name)), None)

    def tenant_system(self, tenant_id: str, system_id: UUID) -> SystemRow | None:
        return next((r for r in self.rows if (r.tenant_id, r.id) == (tenant_id, system_id)), None)

    def list_rows(self, tenant_id: str, limit: int, after_name: str | None) -> list[SystemRow]:
        mine = sorted((r for r in self.rows if r.tenant_id == tenant_id), key=lambda r: r.name)
        return [r for r in mine if after_name is None or r.name > after_name][:limit]

    def update(
        self, tenant_id: str, system_id: UUID, name: str | None, silent_after_seconds: int | None
    ) -> SystemRow | None:
        found = self.tenant_system(tenant_id, system_id)
        if found is None:
            return None
        if name is not None and self.by_name(tenant_id, name) not in (None, found):
            raise NameTakenError("taken")
        changed = replace(
            found,
            name=found.name if name is None else name,
            silent_after_seconds=found.silent_after_seconds if silent_after_seconds is None else silent_after_seconds,
        )
        self.rows = [changed if r == found else r for r in self.rows]
        return changed

    def figures(self, tenant_id: str, system_ids: Sequence[UUID], since: datetime) -> Mapping[UUID, SystemFigures]:
        self.figures_asked.append((tenant_id, list(system_ids), since))
        return {system_id: self.figures_of[system_id] for system_id in system_ids if system_id in self.figures_of}


def test_a_registration_is_inserted_once_and_found_after() -> None:
    store = MemoryStore()

    first = register_system(store, MINE, SystemCreate(name="press-17"))
    again = register_system(store, MINE, SystemCreate(name="press-17"))

    assert (first.created, again.created, again.system) == (True, False, first.system)


def test_a_conflicting_row_renamed_away_meanwhile_is_inserted_past() -> None:
    store = MemoryStore(rows=[row("press-17")], renamed_on_conflict=1)

    registered = register_system(store, MINE, SystemCreate(name="press-17"))

    assert registered.created
    assert store.inserts == 2


def test_a_registration_that_keeps_meeting_renames_is_a_fault_to_retry() -> None:
    store = MemoryStore(rows=[row("press-17")], always_renamed=True)

    with pytest.raises(StorageUnavailableError, match="kept conflicting"):
        register_system(store, MINE, SystemCreate(name="press-17"))

    assert store.inserts == 3


def test_only_the_tenants_own_system_is_found_or_renamed() -> None:
    theirs = row("their-press", THEIRS)
    store = MemoryStore(rows=[theirs])

    with pytest.raises(NotFoundError, match="in this tenant"):
        find_system(store, MINE, str(theirs.id))
    with pytest.raises(NotFoundError, match="no system press-17 in this tenant"):
        find_system(store, MINE, "press-17")
    with pytest.raises(NotFoundError, match="in this tenant"):
        update_system(store, MINE, str(theirs.id), SystemUpdate(name="mine"))
    assert store.rows == [theirs]


def test_a_change_sets_what_it_names_and_keeps_the_rest() -> None:
    mine = row("press-17", silent=600)
    store = MemoryStore(rows=[mine])

    silenced = update_system(store, MINE, str(mine.id), SystemUpdate(silent_after_seconds=120))
    renamed = update_system(store, MINE, str(mine.id), SystemUpdate(name="press-17b"))

    assert (silenced.name, silenced.silent_after_seconds) == ("press-17", 120)
    assert (renamed.name, renamed.silent_after_seconds) == ("press-17b", 120)
    assert show_system(store, renamed, NOW).silent_after_seconds == 120


# --- listing ----------------------------------------------------------------------------------------------------


def test_a_listing_pages_by_name_with_figures_for_the_shown_systems_only() -> None:
    rows = [row(name) for name in ("c", "a", "b")]
    shown_figures = SystemFigures(last_reading_at=NOW, readings_24h=12, pending_quarantine=1)
    store = MemoryStore(rows=rows, figures_of={rows[1].id: shown_figures})

    first = list_systems(store, MINE, SystemQuery(limit=2), NOW)
    second = list_systems(store, MINE, SystemQuery(limit=2, cursor=first.next_cursor), NOW)

    assert [item.name for item in first.items] == ["a", "b"]
    assert (first.items[0].readings_24h, first.items[1].readings_24h) == (12, 0)
    assert [item.name for item in second.items] == ["c"]
    assert second.next_cursor is None
    # The row read past the page only says that there is more: no figures are read for it.
    assert store.figures_asked[0] == (MINE, [rows[1].id, rows[2].id], NOW - RECENT_WINDOW)
    assert timedelta(hours=24) == RECENT_WINDOW


def test_the_recent_readings_are_counted_in_whole_minutes_from_the_one_24_hours_back() -> None:
    # The per-minute rollup answers the count: the minute that holds the moment 24 hours back counts whole.
    assert recent_since(datetime(2026, 11, 20, 8, 0, 42, 500_000, tzinfo=UTC)) == datetime(
        2026, 11, 19, 8, 0, tzinfo=UTC
    )
    assert recent_since(NOW) == NOW - RECENT_WINDOW


@pytest.mark.parametrize(
    "cursor",
    [encode_cursor("quarantine", {"before_id": 4}), encode_cursor("systems", {"after_name": 4}), "not-a-cursor"],
)
def test_a_cursor_this_listing_did_not_hand_out_is_refused(cursor: Any) -> None:
    with pytest.raises(InvalidRequestError, match="cursor"):
        list_systems(MemoryStore(), MINE, SystemQuery(cursor=cursor), NOW)
