"""tests/grafana.py expands SQL as Grafana documents it (the examples below are those of Grafana's PostgreSQL
documentation and of its macro engine's source), and refuses what it does not know rather than pass it on."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ..grafana import GrafanaExpansionError, Variable, expand_provisioning, expand_sql, rfc3339

# The range of the documentation's examples.
START = datetime(2017, 4, 21, 5, 1, 17, tzinfo=UTC)
END = datetime(2017, 4, 21, 5, 6, 17, tzinfo=UTC)


def test_the_time_macros_expand_to_the_documented_literals() -> None:
    sql = "SELECT 1 WHERE $__timeFilter(dateColumn) AND $__timeFrom() < $__timeTo()"

    assert expand_sql(sql, {}, START, END) == (
        "SELECT 1 WHERE dateColumn BETWEEN '2017-04-21T05:01:17Z' AND '2017-04-21T05:06:17Z'"
        " AND '2017-04-21T05:01:17Z' < '2017-04-21T05:06:17Z'"
    )


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (START, "2017-04-21T05:01:17Z"),
        (START + timedelta(milliseconds=120), "2017-04-21T05:01:17.12Z"),
        (START - timedelta(milliseconds=1), "2017-04-21T05:01:16.999Z"),
        (datetime(2017, 4, 21, 7, 1, 17, tzinfo=timezone(timedelta(hours=2))), "2017-04-21T05:01:17Z"),
    ],
)
def test_times_are_written_in_utc_as_go_writes_rfc3339_nano(moment: datetime, text: str) -> None:
    assert rfc3339(moment) == text


def test_the_macro_arguments_are_trimmed_and_end_at_the_first_parenthesis() -> None:
    assert expand_sql("$__timeFilter( bucket )", {}, START, END).startswith("bucket BETWEEN")
    # Grafana's pattern stops at the first ')': an expression with parentheses is cut, as it is in Grafana.
    cut = expand_sql("$__timeFilter(time_bucket('1 minute', time))", {}, START, END)
    assert cut == "time_bucket('1 minute' BETWEEN '2017-04-21T05:01:17Z' AND '2017-04-21T05:06:17Z')"


def test_a_single_value_goes_in_as_it_is_with_its_quotes_doubled() -> None:
    variables = {"tenant": Variable("o'brien")}

    assert expand_sql("tenant_id = '$tenant' OR '${tenant}' = '[[tenant]]'", variables, START, END) == (
        "tenant_id = 'o''brien' OR 'o''brien' = 'o''brien'"
    )


def test_a_multi_value_variable_goes_in_quoted_and_comma_separated() -> None:
    variables = {"sensor": Variable(["a", "b'c"], multi=True), "one": Variable(["x"], multi=True)}

    assert expand_sql("IN ($sensor) AND IN ($one)", variables, START, END) == "IN ('a','b''c') AND IN ('x')"


def test_a_longer_name_is_another_variable() -> None:
    with pytest.raises(GrafanaExpansionError, match=r"\$systems"):
        expand_sql("'$systems'", {"system": Variable("s")}, START, END)


@pytest.mark.parametrize(
    "sql",
    [
        "$__timeGroup(time, '5m')",  # a macro this module does not expand
        "$__unixEpochFilter(time)",
        "time > $__interval_ms",  # a global variable of Grafana's front end
        "$__from",
        "tenant = '$host'",  # no such variable
        "${sensor:csv}",  # a format
        "${sensor.value}",  # a property
        "[[host]]",
    ],
)
def test_anything_else_that_grafana_would_expand_is_an_error(sql: str) -> None:
    with pytest.raises(GrafanaExpansionError):
        expand_sql(sql, {"sensor": Variable(["a"], multi=True)}, START, END)


def test_a_single_valued_variable_with_several_values_is_an_error() -> None:
    with pytest.raises(GrafanaExpansionError, match="single-valued"):
        expand_sql("$system", {"system": Variable(["a", "b"])}, START, END)


def test_provisioning_values_take_the_environment_and_keep_a_doubled_dollar() -> None:
    document = {"url": "$HOST:${PORT}", "nested": [{"password": "$SECRET"}], "cost": "$$5", "port": 5432}

    expanded = expand_provisioning(document, {"HOST": "db", "PORT": "6432", "SECRET": "$x"})

    assert expanded == {"url": "db:6432", "nested": [{"password": "$x"}], "cost": "$5", "port": 5432}
    assert expand_provisioning("$UNSET", {}) == ""
