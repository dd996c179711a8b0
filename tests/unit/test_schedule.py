"""EventBridge schedule expressions: rates aligned to the epoch, six-field crons with AWS's conventions (weekday 1 is
Sunday, one day field is '?'), the first firing strictly after a moment, and loud refusals for what runs only on AWS."""

import calendar
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sluice_tools.local.schedule import Schedule, ScheduleError, parse_schedule


def at(text: str) -> datetime:
    """An aware UTC datetime from ISO text without an offset."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def next_after(expression: str, moment: str) -> datetime:
    return parse_schedule(expression).next_after(at(moment))


# 2026-03-10 is a Tuesday; the epoch (1970-01-01) was a Thursday.
@pytest.mark.parametrize(
    ("expression", "moment", "expected"),
    [
        ("rate(1 minute)", "2026-03-10T12:34:56", "2026-03-10T12:35:00"),
        ("rate(1 minute)", "2026-03-10T12:35:00", "2026-03-10T12:36:00"),
        ("rate(5 minutes)", "2026-03-10T12:34:56.999999", "2026-03-10T12:35:00"),
        ("rate(5 minutes)", "2026-03-10T12:35:00", "2026-03-10T12:40:00"),
        ("rate(90 minutes)", "2026-03-10T12:34:00", "2026-03-10T13:30:00"),
        ("rate(1 hour)", "2026-03-10T12:34:00", "2026-03-10T13:00:00"),
        ("rate(2 hours)", "2026-03-10T12:00:00", "2026-03-10T14:00:00"),
        ("rate(2 hours)", "2026-03-10T23:59:59", "2026-03-11T00:00:00"),
        ("rate(1 day)", "2026-03-10T12:34:00", "2026-03-11T00:00:00"),
        ("rate(1 day)", "2026-12-31T00:00:00", "2027-01-01T00:00:00"),
        ("rate(7 days)", "2026-03-10T12:34:00", "2026-03-12T00:00:00"),
        ("rate(7 days)", "2026-03-12T00:00:00", "2026-03-19T00:00:00"),
    ],
)
def test_a_rate_fires_on_multiples_of_its_period_counted_from_the_epoch(
    expression: str, moment: str, expected: str
) -> None:
    assert next_after(expression, moment) == at(expected)


@given(
    value=st.integers(min_value=1, max_value=500),
    unit=st.sampled_from(["minute", "hour", "day"]),
    moment=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2199, 1, 1), timezones=st.just(UTC)),
)
def test_a_rate_fires_within_one_period_after_the_moment_on_a_whole_multiple(
    value: int, unit: str, moment: datetime
) -> None:
    period = value * {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}[unit]
    expression = f"rate({value} {unit}{'s' if value > 1 else ''})"

    fired = parse_schedule(expression).next_after(moment)

    assert moment < fired <= moment + period
    assert (fired - datetime(1970, 1, 1, tzinfo=UTC)) % period == timedelta(0)
    assert fired.tzinfo is UTC


@pytest.mark.parametrize(
    ("expression", "moment", "expected"),
    [
        # Noon daily.
        ("cron(0 12 * * ? *)", "2026-03-10T09:00:00", "2026-03-10T12:00:00"),
        ("cron(0 12 * * ? *)", "2026-03-10T12:00:00", "2026-03-11T12:00:00"),
        ("cron(0 12 * * ? *)", "2026-03-10T11:59:59.999999", "2026-03-10T12:00:00"),
        # Every quarter hour, carrying across hour, day and year.
        ("cron(0/15 * * * ? *)", "2026-03-10T12:07:00", "2026-03-10T12:15:00"),
        ("cron(0/15 * * * ? *)", "2026-03-10T12:45:00", "2026-03-10T13:00:00"),
        ("cron(*/15 * * * ? *)", "2026-12-31T23:50:00", "2027-01-01T00:00:00"),
        ("cron(10-40/10 * * * ? *)", "2026-03-10T12:40:00", "2026-03-10T13:10:00"),
        ("cron(5,55 * * * ? *)", "2026-03-10T12:05:00", "2026-03-10T12:55:00"),
        # 6pm on weekdays: Friday 2026-03-13 rolls to Monday.
        ("cron(0 18 ? * MON-FRI *)", "2026-03-10T17:00:00", "2026-03-10T18:00:00"),
        ("cron(0 18 ? * MON-FRI *)", "2026-03-13T18:00:00", "2026-03-16T18:00:00"),
        ("cron(0 18 ? * 2-6 *)", "2026-03-13T18:00:00", "2026-03-16T18:00:00"),
        # 8am on the first of the month.
        ("cron(0 8 1 * ? *)", "2026-03-10T12:00:00", "2026-04-01T08:00:00"),
        ("cron(0 8 1 * ? *)", "2026-12-15T00:00:00", "2027-01-01T08:00:00"),
        # Leap days only.
        ("cron(0 0 29 2 ? *)", "2026-01-01T00:00:00", "2028-02-29T00:00:00"),
        ("cron(0 0 29 FEB ? *)", "2028-02-29T00:00:00", "2032-02-29T00:00:00"),
        # A day of month some months lack.
        ("cron(0 0 31 * ? *)", "2026-03-31T00:00:00", "2026-05-31T00:00:00"),
        # Every other weekday from Monday (2 = Monday): Mon, Wed, Fri.
        ("cron(0 0 ? * 2/2 *)", "2026-03-11T00:00:00", "2026-03-13T00:00:00"),
        ("cron(0 0 ? * 2/2 *)", "2026-03-13T00:00:00", "2026-03-16T00:00:00"),
        # A fixed year.
        ("cron(30 6 1 1 ? 2030)", "2026-03-10T00:00:00", "2030-01-01T06:30:00"),
        ("cron(0 0 1 1 ? 2027-2029/2)", "2027-01-01T00:00:00", "2029-01-01T00:00:00"),
        ("cron(0 0 1 1 ? *)", "2198-06-01T00:00:00", "2199-01-01T00:00:00"),
    ],
)
def test_a_cron_fires_at_the_first_matching_minute_strictly_after_the_moment(
    expression: str, moment: str, expected: str
) -> None:
    assert next_after(expression, moment) == at(expected)


@pytest.mark.parametrize(
    ("day_of_week", "python_weekday"),
    [("1", 6), ("2", 0), ("3", 1), ("4", 2), ("5", 3), ("6", 4), ("7", 5)],
)
def test_weekday_numbers_count_from_sunday_as_one_like_aws(day_of_week: str, python_weekday: int) -> None:
    fired = next_after(f"cron(0 9 ? * {day_of_week} *)", "2026-03-10T12:00:00")

    assert fired.weekday() == python_weekday
    assert at("2026-03-10T12:00:00") < fired <= at("2026-03-17T09:00:00")


@pytest.mark.parametrize(
    ("named", "numbered"),
    [
        ("cron(0 0 1 JUL ? *)", "cron(0 0 1 7 ? *)"),
        ("cron(0 0 1 jul ? *)", "cron(0 0 1 7 ? *)"),
        ("cron(0 0 1 Jan,Apr,JUL,oct ? *)", "cron(0 0 1 1,4,7,10 ? *)"),
        ("cron(0 0 1 MAR-MAY ? *)", "cron(0 0 1 3-5 ? *)"),
        ("cron(0 0 ? * SUN *)", "cron(0 0 ? * 1 *)"),
        ("cron(0 0 ? * sat *)", "cron(0 0 ? * 7 *)"),
        ("cron(0 0 ? * WED,fri *)", "cron(0 0 ? * 4,6 *)"),
        ("cron(0 0 ? * MON/2 *)", "cron(0 0 ? * 2,4,6 *)"),
    ],
)
def test_month_and_weekday_names_mean_their_numbers(named: str, numbered: str) -> None:
    moment = at("2026-03-10T12:00:00")
    for _ in range(6):
        fired = parse_schedule(named).next_after(moment)
        assert fired == parse_schedule(numbered).next_after(moment)
        moment = fired


def test_a_moment_exactly_on_a_firing_time_returns_the_next_one() -> None:
    schedule = parse_schedule("cron(0 12 * * ? *)")
    noon = at("2026-03-10T12:00:00")

    assert schedule.next_after(noon) == at("2026-03-11T12:00:00")
    assert schedule.next_after(noon - timedelta(microseconds=1)) == noon


def test_the_result_is_utc_on_a_whole_minute_whatever_the_moments_offset() -> None:
    schedule = parse_schedule("cron(0 12 * * ? *)")
    # 13:30 at +02:00 is 11:30 UTC, so noon UTC the same day is next.
    moment = datetime(2026, 3, 10, 13, 30, 17, 123456, tzinfo=timezone(timedelta(hours=2)))

    fired = schedule.next_after(moment)

    assert fired == at("2026-03-10T12:00:00")
    assert fired.tzinfo is UTC
    assert (fired.second, fired.microsecond) == (0, 0)


def test_a_naive_moment_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse_schedule("rate(5 minutes)").next_after(datetime(2026, 3, 10, 12, 0))


@pytest.mark.parametrize(
    ("expression", "moment"),
    [
        ("cron(0 0 31 2 ? *)", "2026-01-01T00:00:00"),  # February never has 31 days
        ("cron(0 0 1 1 ? 2030)", "2030-01-01T00:00:00"),  # its only firing is the moment itself
        ("cron(0 0 1 1 ? 2027)", "2028-06-01T00:00:00"),
        ("cron(59 23 31 12 ? *)", "2199-12-31T23:59:00"),  # the last minute AWS allows
        ("cron(0 0 * * ? *)", "2300-01-01T00:00:00"),
    ],
)
def test_a_cron_that_never_fires_again_raises(expression: str, moment: str) -> None:
    with pytest.raises(ScheduleError, match="never fires"):
        next_after(expression, moment)


@pytest.mark.parametrize(
    "expression",
    [
        "cron(15 10 ? * 6L 2026)",
        "cron(0 0 L * ? *)",
        "cron(0 0 LW * ? *)",
        "cron(0 0 L-3 * ? *)",
        "cron(0 0 15W * ? *)",
        "cron(0 0 ? * 6#3 *)",
        "cron(0 0 ? * FRI#3 *)",
        "cron(0 0 ? * FRIL *)",
        "cron(0 0 ? * 1,6L *)",
    ],
)
def test_last_weekday_and_nth_forms_are_refused_as_unsupported_locally(expression: str) -> None:
    with pytest.raises(ScheduleError, match="not support"):
        parse_schedule(expression)


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "garbage",
        "every 5 minutes",
        "at(2026-03-10T12:00:00)",
        # Rates.
        "rate(1 minutes)",
        "rate(5 minute)",
        "rate(1 hours)",
        "rate(2 hour)",
        "rate(1 days)",
        "rate(7 day)",
        "rate(0 minutes)",
        "rate(-1 minutes)",
        "rate(1.5 hours)",
        "rate(5 weeks)",
        "rate(5 Minutes)",
        "rate(5minutes)",
        "rate(5 minutes",
        "rate()",
        # Crons: shape.
        "cron()",
        "cron(0 12 * * ?)",
        "cron(0 12 * * ? * *)",
        "cron(0 12 * * ? *",
        "cron 0 12 * * ? *",
        # Crons: the day fields.
        "cron(0 12 * * * *)",
        "cron(0 12 ? * ? *)",
        "cron(0 12 1 * 2 *)",
        # Crons: bounds.
        "cron(60 * * * ? *)",
        "cron(0 24 * * ? *)",
        "cron(0 0 0 * ? *)",
        "cron(0 0 32 * ? *)",
        "cron(0 0 1 0 ? *)",
        "cron(0 0 1 13 ? *)",
        "cron(0 0 ? * 0 *)",
        "cron(0 0 ? * 8 *)",
        "cron(0 0 1 * ? 1969)",
        "cron(0 0 1 * ? 2200)",
        # Crons: syntax.
        "cron(*/0 * * * ? *)",
        "cron(30-10 * * * ? *)",
        "cron(0 0 ? * FRI-MON *)",
        "cron(0 0 1 ? ? *)",
        "cron(? 0 1 * ? *)",
        "cron(0 0 1 FOO ? *)",
        "cron(0 0 ? * MONDAY *)",
        "cron(0 0 1 JAN-* ? *)",
        "cron(1,,2 * * * ? *)",
        "cron(1- * * * ? *)",
        "cron(/5 * * * ? *)",
        "cron(0 0 ? JAN JAN *)",
    ],
)
def test_invalid_expressions_raise_a_schedule_error_naming_the_expression(expression: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(expression)

    assert repr(expression) in str(caught.value)


def test_a_schedule_keeps_its_expression_and_compares_by_it() -> None:
    schedule = parse_schedule("rate(5 minutes)")

    assert schedule.expression == "rate(5 minutes)"
    assert schedule == Schedule("rate(5 minutes)")
    assert hash(schedule) == hash(Schedule("rate(5 minutes)"))
    assert repr(schedule) == "Schedule(expression='rate(5 minutes)')"


def test_constructing_a_schedule_directly_validates_it_too() -> None:
    with pytest.raises(ScheduleError):
        Schedule("rate(5 minute)")


def test_surrounding_whitespace_is_tolerated() -> None:
    assert next_after("  cron( 0 12 * * ? * ) \n", "2026-03-10T09:00:00") == at("2026-03-10T12:00:00")


# ---------------------------------------------------------------------------------------------------------------------
# Property: for crons of '*' and single numbers, the walk agrees with a day-by-day, minute-by-minute search.

_MAX_FEBRUARY = 29


def _aws_weekday(day: date) -> int:
    return (day.weekday() + 1) % 7 + 1


def _brute_force_next(fields: dict[str, int | None], moment: datetime, last_year: int) -> datetime | None:
    """The first matching minute after `moment`, by checking each day and then each minute of a matching day."""
    day = moment.date()
    while day.year <= last_year:
        if (
            (fields["year"] is None or day.year == fields["year"])
            and (fields["month"] is None or day.month == fields["month"])
            and (fields["dom"] is None or day.day == fields["dom"])
            and (fields["dow"] is None or _aws_weekday(day) == fields["dow"])
        ):
            midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
            for hour in range(24) if fields["hours"] is None else [fields["hours"]]:
                for minute in range(60) if fields["minutes"] is None else [fields["minutes"]]:
                    candidate = midnight + timedelta(hours=hour, minutes=minute)
                    if candidate > moment:
                        return candidate
        day += timedelta(days=1)
    return None


def _field(values: st.SearchStrategy[int]) -> st.SearchStrategy[int | None]:
    return st.one_of(st.none(), values)


@st.composite
def _star_or_number_fields(draw: st.DrawFn) -> dict[str, int | None]:
    """Each cron field as None (``*``, or ``?`` for the unconstrained day field) or one number."""
    fields = {
        "minutes": draw(_field(st.integers(0, 59))),
        "hours": draw(_field(st.integers(0, 23))),
        "dom": draw(_field(st.integers(1, 31))),
        "month": draw(_field(st.integers(1, 12))),
        "dow": draw(_field(st.integers(1, 7))),
        "year": draw(_field(st.integers(2000, 2040))),
    }
    # AWS allows only one day field; the other is '?'.
    fields["dow" if draw(st.booleans()) else "dom"] = None
    return fields


def _spell(fields: dict[str, int | None], name: str, star: str = "*") -> str:
    value = fields[name]
    return star if value is None else str(value)


@settings(deadline=None, max_examples=150)
@given(
    fields=_star_or_number_fields(),
    moment=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 12, 31), timezones=st.just(UTC)),
)
def test_a_cron_of_stars_and_numbers_fires_at_the_first_minute_matching_every_field(
    fields: dict[str, int | None], moment: datetime
) -> None:
    day, month = fields["dom"], fields["month"]
    # A day no month can hold never fires with any year; that case has its own test above.
    month_length = _MAX_FEBRUARY if month == 2 else calendar.monthrange(2001, month or 1)[1]
    assume(day is None or month is None or day <= month_length)
    # With both day fields unconstrained, spell day-of-month '*' and day-of-week '?'.
    day_of_week = "?" if fields["dow"] is None else _spell(fields, "dow")
    day_of_month = _spell(fields, "dom", star="?" if day_of_week != "?" else "*")
    expression = (
        f"cron({_spell(fields, 'minutes')} {_spell(fields, 'hours')} {day_of_month} {_spell(fields, 'month')} "
        f"{day_of_week} {_spell(fields, 'year')})"
    )
    year = fields["year"]
    expected = _brute_force_next(fields, moment, last_year=2199 if year is None else year)

    if expected is None:
        with pytest.raises(ScheduleError):
            parse_schedule(expression).next_after(moment)
        return
    fired = parse_schedule(expression).next_after(moment)

    assert fired > moment
    assert fired == expected
    assert (fired.second, fired.microsecond) == (0, 0)
    for name, actual in [
        ("minutes", fired.minute),
        ("hours", fired.hour),
        ("dom", fired.day),
        ("month", fired.month),
        ("dow", _aws_weekday(fired.date())),
        ("year", fired.year),
    ]:
        assert fields[name] is None or actual == fields[name]
