"""EventBridge schedule expressions, so the local runtime can fire template.yaml's scheduled functions on time.

``rate(...)`` and six-field ``cron(...)`` expressions are read the way AWS documents them; everything is UTC.
What AWS offers but the local runtime does not (``at(...)``, ``L``, ``W``, ``#``) raises, so a template that uses it
fails loudly instead of silently running on a different schedule.
"""

import calendar
import re
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

# Rate schedules count from here; see _next_rate for why the epoch and not the rule's creation.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RATE = re.compile(r"rate\(\s*(\d+)\s+([a-z]+)\s*\)")
_CRON = re.compile(r"cron\((.*)\)", re.DOTALL)
_RATE_UNITS: Mapping[str, timedelta] = {
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
}
# One element of a cron list once names became numbers: ``*``, ``a`` or ``a-b``, optionally followed by ``/step``.
_ELEMENT = re.compile(r"(?:(\*)|(\d+)(?:-(\d+))?)(?:/(\d+))?")
# AWS's last-day (``L``, ``LW``, ``L-3``, ``6L``), nearest-weekday (``15W``) and nth-weekday (``6#3``) forms.
_UNSUPPORTED = re.compile(r"L|LW|L-\d+|\d+[LW]|\d+#\d+")
# Spelled out rather than taken from calendar.month_abbr, which follows the locale.
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
# AWS numbers weekdays from Sunday = 1, unlike Python (Monday = 0) and Unix cron (Sunday = 0).
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_LAST_YEAR = 2199


class ScheduleError(ValueError):
    """A schedule expression the local runtime cannot read (message says why)."""


@dataclass(frozen=True, slots=True)
class _CronField:
    """How one cron field is spelled: its name in messages, its bounds and the names it accepts."""

    name: str
    low: int
    high: int
    names: Mapping[str, int] = field(default_factory=dict)


_MINUTES = _CronField("minutes", 0, 59)
_HOURS = _CronField("hours", 0, 23)
_DAY_OF_MONTH = _CronField("day-of-month", 1, 31)
_MONTH = _CronField("month", 1, 12, {name: number for number, name in enumerate(_MONTHS, start=1)})
_DAY_OF_WEEK = _CronField("day-of-week", 1, 7, {name: number for number, name in enumerate(_WEEKDAYS, start=1)})
_YEAR = _CronField("year", 1970, _LAST_YEAR)


@dataclass(frozen=True, slots=True)
class _Cron:
    """A parsed cron expression: the allowed values of each field, ascending, so the next one is a bisect away."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    # Exactly one of these is None: the field written ``?``, which then places no constraint.
    days: tuple[int, ...] | None
    months: tuple[int, ...]
    weekdays: tuple[int, ...] | None
    years: tuple[int, ...]

    def day_matches(self, year: int, month: int, day: int) -> bool:
        """Whether the day-of-month or day-of-week field (whichever is not ``?``) allows this day."""
        if self.days is not None:
            return day in self.days
        return self.weekdays is not None and _aws_weekday(date(year, month, day)) in self.weekdays


@dataclass(frozen=True, slots=True)
class Schedule:
    """A parsed EventBridge schedule expression that knows when it fires next."""

    expression: str
    # A rate's period or a cron's fields, derived from ``expression`` in __post_init__ and kept out of the
    # constructor so the two cannot disagree.
    _rule: timedelta | _Cron = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The dataclass is frozen; this is the one place its derived field is filled in.
        object.__setattr__(self, "_rule", _parse(self.expression))

    def next_after(self, moment: datetime) -> datetime:
        """The first firing time strictly after `moment` (aware UTC datetime in, aware UTC out)."""
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"{self.expression!r}: next_after needs an aware datetime, got naive {moment}")
        if isinstance(self._rule, timedelta):
            return _next_rate(self._rule, moment)
        return _next_cron(self._rule, self.expression, moment)


def parse_schedule(expression: str) -> Schedule:
    """Read an EventBridge ``rate(...)`` or ``cron(...)`` expression; raise ScheduleError for anything else."""
    return Schedule(expression)


def _aws_weekday(day: date) -> int:
    """The day-of-week number AWS cron uses for `day`: Sunday = 1 ... Saturday = 7."""
    return (day.weekday() + 1) % 7 + 1


def _parse(expression: str) -> timedelta | _Cron:
    text = expression.strip()
    if rate := _RATE.fullmatch(text):
        return _parse_rate(expression, int(rate.group(1)), rate.group(2))
    if cron := _CRON.fullmatch(text):
        return _parse_cron(expression, cron.group(1))
    if text.startswith("at("):
        raise ScheduleError(f"{expression!r}: one-time at(...) schedules are not supported locally")
    raise ScheduleError(f"{expression!r}: not a schedule expression; expected rate(value unit) or cron(six fields)")


def _parse_rate(expression: str, value: int, unit: str) -> timedelta:
    singular = unit.removesuffix("s")
    if singular not in _RATE_UNITS:
        raise ScheduleError(f"{expression!r}: rate unit must be minute(s), hour(s) or day(s), not {unit!r}")
    if value < 1:
        raise ScheduleError(f"{expression!r}: rate value must be a positive integer")
    # AWS refuses "rate(1 minutes)" and "rate(5 minute)"; refusing them here keeps a bad template from deploying.
    if (value == 1) != (unit == singular):
        expected = singular if value == 1 else f"{singular}s"
        raise ScheduleError(f"{expression!r}: a rate of {value} needs the unit {expected!r}, not {unit!r}")
    return value * _RATE_UNITS[singular]


def _parse_cron(expression: str, body: str) -> _Cron:
    parts = body.split()
    if len(parts) != 6:
        raise ScheduleError(
            f"{expression!r}: cron needs six fields (minutes hours day-of-month month day-of-week year), "
            f"got {len(parts)}"
        )
    minutes, hours, day_of_month, month, day_of_week, year = parts
    # AWS requires one day field to be "?": with both set it would be ambiguous whether both or either must match.
    if (day_of_month == "?") == (day_of_week == "?"):
        raise ScheduleError(f"{expression!r}: exactly one of day-of-month and day-of-week must be '?'")
    return _Cron(
        minutes=_parse_field(expression, minutes, _MINUTES),
        hours=_parse_field(expression, hours, _HOURS),
        days=None if day_of_month == "?" else _parse_field(expression, day_of_month, _DAY_OF_MONTH),
        months=_parse_field(expression, month, _MONTH),
        weekdays=None if day_of_week == "?" else _parse_field(expression, day_of_week, _DAY_OF_WEEK),
        years=_parse_field(expression, year, _YEAR),
    )


def _parse_field(expression: str, text: str, spec: _CronField) -> tuple[int, ...]:
    def fail(reason: str) -> ScheduleError:
        return ScheduleError(f"{expression!r}: {spec.name} field {text!r}: {reason}")

    allowed: set[int] = set()
    for raw in text.split(","):
        element = raw.upper()
        # Names become numbers first, so "MON-FRI" is an ordinary range and "FRIL" reads as the unsupported "6L".
        if spec.names:
            element = re.sub("|".join(spec.names), lambda name: str(spec.names[name.group(0)]), element)
        match = _ELEMENT.fullmatch(element)
        if match is None:
            if _UNSUPPORTED.fullmatch(element):
                raise fail("L, W and # are AWS features the local runtime does not support")
            if raw == "?":
                raise fail("'?' is only allowed alone in day-of-month or day-of-week")
            raise fail(f"{raw!r} is not a value, range or step")
        star, start_text, end_text, step_text = match.groups()
        if star:
            start, end = spec.low, spec.high
        else:
            start = int(start_text)
            # "a/n" means every n-th value from a to the field's end; a bare "a" means just a.
            end = int(end_text) if end_text else (spec.high if step_text else start)
        step = int(step_text) if step_text else 1
        for bound in (start, end):
            if not spec.low <= bound <= spec.high:
                raise fail(f"{bound} is outside {spec.low}-{spec.high}")
        if start > end:
            raise fail(f"range {start}-{end} runs backwards")
        if step < 1:
            raise fail("a step must be a positive integer")
        allowed.update(range(start, end + 1, step))
    return tuple(sorted(allowed))


def _next_rate(period: timedelta, moment: datetime) -> datetime:
    # AWS counts a rate from when the rule was created, which a local run cannot know; counting from the Unix epoch
    # instead makes runs predictable (rate(1 hour) fires on the hour, rate(1 day) at midnight UTC) and repeatable.
    # Periods are whole minutes, so every multiple lands on a whole minute. Integer microseconds keep it exact.
    elapsed = (moment - _EPOCH) // timedelta(microseconds=1)
    step = period // timedelta(microseconds=1)
    return _EPOCH + timedelta(microseconds=(elapsed // step + 1) * step)


def _at_least(values: tuple[int, ...], value: int) -> int | None:
    """The smallest of the ascending `values` that is >= `value`, or None."""
    index = bisect_left(values, value)
    return values[index] if index < len(values) else None


def _next_cron(cron: _Cron, expression: str, moment: datetime) -> datetime:
    # Walk forward field by field, largest first: when a field has no allowed value left, carry into the next larger
    # one and reset the smaller ones. Each pass moves strictly forward, so even a yearly cron takes a few dozen steps.
    utc = moment.astimezone(UTC)
    if utc.year > _LAST_YEAR:
        raise ScheduleError(f"{expression!r}: never fires after {moment.isoformat()}")
    start = utc.replace(second=0, microsecond=0) + timedelta(minutes=1)  # strictly after the moment
    year, month, day, hour, minute = start.year, start.month, start.day, start.hour, start.minute
    while True:
        next_year = _at_least(cron.years, year)
        if next_year is None:
            raise ScheduleError(f"{expression!r}: never fires after {moment.isoformat()}")
        if next_year != year:
            year, month, day, hour, minute = next_year, 1, 1, 0, 0
        next_month = _at_least(cron.months, month)
        if next_month is None:
            year, month, day, hour, minute = year + 1, 1, 1, 0, 0
            continue
        if next_month != month:
            month, day, hour, minute = next_month, 1, 0, 0
        last_day = calendar.monthrange(year, month)[1]
        next_day = next((d for d in range(day, last_day + 1) if cron.day_matches(year, month, d)), None)
        if next_day is None:
            # Month 13 finds no allowed month next pass and carries into the year.
            month, day, hour, minute = month + 1, 1, 0, 0
            continue
        if next_day != day:
            day, hour, minute = next_day, 0, 0
        next_hour = _at_least(cron.hours, hour)
        if next_hour is None:
            # Past the month's last day, the day search finds nothing next pass and carries into the month.
            day, hour, minute = day + 1, 0, 0
            continue
        if next_hour != hour:
            hour, minute = next_hour, 0
        next_minute = _at_least(cron.minutes, minute)
        if next_minute is None:
            hour, minute = hour + 1, 0
            continue
        return datetime(year, month, day, hour, next_minute, tzinfo=UTC)
