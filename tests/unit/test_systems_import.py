"""`sluice systems import`'s reading of the CSV and its handling of each answer, with a stand-in for the API (the
end-to-end tests run it against a real local stack)."""

import io
from pathlib import Path
from typing import Any

import pytest

from sluice_tools.systems import Answer, ImportAbortedError, csv_rows, import_systems, register_row, summary

SYSTEM = "3f0c9a52-6a7e-4c43-9a55-2c8f1b7d9e01"


def rows(text: str) -> list[tuple[int, Any]]:
    return list(csv_rows(io.StringIO(text)))


def test_rows_are_read_by_the_header_with_their_line_numbers() -> None:
    read = rows(f'name,id\npress-17,{SYSTEM}\n\n"press 18, hall 2",\n')

    assert read == [(2, {"name": "press-17", "id": SYSTEM}), (4, {"name": "press 18, hall 2", "id": ""})]


def test_a_row_of_the_wrong_width_is_invalid_and_the_rest_are_read() -> None:
    read = rows("id,name\na,b,c\n,press-1\n")

    assert read[0][0] == 2
    assert "3 fields, expected 2" in read[0][1]
    assert read[1] == (3, {"id": "", "name": "press-1"})


@pytest.mark.parametrize("text", ["", "name\npress-17\n", "id,name,site\n"])
def test_a_file_without_the_id_name_header_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="header id,name"):
        rows(text)


class FakeApi:
    """Answers queued per call; records the bodies sent."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.sent: list[dict[str, Any]] = []

    def __call__(self, body: dict[str, Any]) -> Answer:
        self.sent.append(body)
        return self.answers.pop(0)


def view(name: str = "press-17") -> dict[str, Any]:
    return {"id": SYSTEM, "name": name}


def error(code: str, field: str, reason: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": code, "details": [{"field": field, "reason": reason}]}}


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (Answer(201, None, view()), "created"),
        (Answer(200, None, view()), "exists"),
        (Answer(409, None, error("name_taken", "name", "system x has this name")), "name_taken"),
        (Answer(409, None, error("system_id_taken", "id", "another system has this id")), "system_id_taken"),
        (Answer(400, None, error("invalid_request", "id", "Input should be a valid UUID")), "invalid"),
        (Answer(500, None, None), "failed"),
    ],
)
def test_each_answer_is_a_rows_outcome(answer: Answer, outcome: str) -> None:
    api = FakeApi(answer)

    found = register_row(api, 7, {"id": f" {SYSTEM} ", "name": "press-17"}, lambda _: None)

    assert (found.line, found.outcome) == (7, outcome)
    assert api.sent == [{"name": "press-17", "id": SYSTEM}]
    if outcome not in {"created", "exists"}:
        assert found.reason


def test_a_rate_limit_or_an_outage_is_waited_out_and_the_row_sent_again() -> None:
    api = FakeApi(Answer(429, 12, None), Answer(503, 5, None), Answer(201, None, view()))
    waits: list[float] = []

    found = register_row(api, 2, {"id": "", "name": "press-17"}, waits.append)

    assert (found.outcome, waits) == ("created", [12, 5])
    assert api.sent == [{"name": "press-17"}] * 3


def test_an_outage_that_lasts_fails_the_row() -> None:
    api = FakeApi(*[Answer(503, 5, None)] * 6)

    assert register_row(api, 2, {"id": "", "name": "press-17"}, lambda _: None).outcome == "failed"


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_stops_the_import(status: int) -> None:
    with pytest.raises(ImportAbortedError, match=f"refused the token \\({status}\\)"):
        register_row(
            FakeApi(Answer(status, None, error("forbidden", "scope", "no"))), 2, {"id": "", "name": "x"}, print
        )


def test_the_import_reports_every_row_and_a_summary(tmp_path: Path) -> None:
    path = tmp_path / "systems.csv"
    path.write_text(f"\ufeffid,name\n{SYSTEM},press-17\nnot,a,row\n,press-18\n", encoding="utf-8")
    api = FakeApi(Answer(201, None, view()), Answer(200, None, view("press-18")))
    printed: list[str] = []

    outcomes = import_systems(path, api, printed.append)

    assert [(outcome.line, outcome.outcome) for outcome in outcomes] == [(2, "created"), (3, "invalid"), (4, "exists")]
    assert printed[0] == f"line 2: created         {SYSTEM}  press-17"
    assert summary(outcomes) == "3 row(s): 1 created, 1 exists, 1 invalid"
