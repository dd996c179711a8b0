"""What Grafana does to a PostgreSQL panel's SQL before the database sees it, for tests that run the dashboards of
infra/grafana without a Grafana: the provisioning files' ``$NAME`` expansion, the template variables' interpolation
and the data source's macros.

Each step follows Grafana's documentation and source, cited where it is done. Anything else that looks like a
variable or a macro is an error, never passed through: a panel that starts using ``$__interval`` fails the tests
until this module learns it.
"""

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

# Grafana's provisioning reads $NAME and ${NAME} from its environment in values; $$ is a literal $ ("Provision
# Grafana", "Using environment variables"). An unset variable becomes empty.
_ENV_REFERENCE: Final = re.compile(r"\$\$|\$\{(\w+)\}|\$(\w+)")

# The template service's variable syntaxes: $name, [[name]] and ${name} (with an optional :format, which this
# module refuses). The names are \w+, so $__timeFilter matches too and is left alone when no variable has that name.
_VARIABLE_REFERENCE: Final = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?::([^}]+))?\}")

# The PostgreSQL data source's macro pattern (pkg/tsdb/grafana-postgresql-datasource/macros.go): a name and the
# arguments up to the first closing parenthesis, split on commas and trimmed.
_MACRO_CALL: Final = re.compile(r"\$([_a-zA-Z0-9]+)\(([^)]*)\)")

# What is left of a variable or macro after expansion: always an error.
_LEFTOVER: Final = re.compile(r"\$[\w{]|\[\[")


class GrafanaExpansionError(Exception):
    """SQL that Grafana would expand differently than this module can (an unknown macro or variable)."""


def expand_provisioning(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """A provisioning file's parsed YAML with ``$NAME`` and ``${NAME}`` in its string values replaced from
    ``environ`` (default: this process's environment), as Grafana does when it reads the file."""
    env = os.environ if environ is None else environ
    if isinstance(value, str):
        return _ENV_REFERENCE.sub(lambda m: "$" if m[0] == "$$" else env.get(m[1] or m[2], ""), value)
    if isinstance(value, list):
        return [expand_provisioning(item, env) for item in value]
    if isinstance(value, dict):
        return {key: expand_provisioning(item, env) for key, item in value.items()}
    return value


@dataclass(frozen=True)
class Variable:
    """A template variable's selection: one value, or several (a multi-value or All selection, or a repeated panel's
    value of a multi-value variable, which Grafana quotes the same way)."""

    value: str | Sequence[str]
    multi: bool = False


def rfc3339(moment: datetime) -> str:
    """``moment`` in UTC as Go's ``time.RFC3339Nano`` writes it, the format of the macros' times: seconds, then a
    fraction only when there is one, without trailing zeros, and ``Z``."""
    utc = moment.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += "." + f"{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def interpolate_variables(sql: str, variables: Mapping[str, Variable]) -> str:
    """The template service's replacement with the SQL data sources' ``interpolateVariable``
    (packages/grafana-sql, SqlDatasource): a single value goes in as it is, its single quotes doubled; a multi-value
    variable's values each go in quoted, joined by commas. Names that are no variable are left for the macros."""

    def replace(match: re.Match[str]) -> str:
        name = match[1] or match[2] or match[4]
        variable = variables.get(name)
        if variable is None:
            return match[0]
        if match[3] or match[5]:
            raise GrafanaExpansionError(f"variable format {match[0]!r} is not supported here")
        values = [variable.value] if isinstance(variable.value, str) else list(variable.value)
        if variable.multi:
            return ",".join(_quote(value) for value in values)
        if len(values) != 1:
            raise GrafanaExpansionError(f"${name} is single-valued but has {len(values)} values")
        return values[0].replace("'", "''")

    return _VARIABLE_REFERENCE.sub(replace, sql)


def expand_macros(sql: str, start: datetime, end: datetime) -> str:
    """The PostgreSQL data source's macros for the time range ``start`` to ``end``; an unknown one is an error, as
    it is in Grafana ("unknown macro")."""

    def replace(match: re.Match[str]) -> str:
        name, args = match[1], [arg.strip() for arg in match[2].split(",")]
        if name == "__timeFilter":
            if not args[0]:
                raise GrafanaExpansionError(f"{match[0]}: missing time column argument")
            return f"{args[0]} BETWEEN '{rfc3339(start)}' AND '{rfc3339(end)}'"
        if name == "__timeFrom":
            return f"'{rfc3339(start)}'"
        if name == "__timeTo":
            return f"'{rfc3339(end)}'"
        raise GrafanaExpansionError(f"unknown macro {match[0]!r}")

    return _MACRO_CALL.sub(replace, sql)


def expand_sql(sql: str, variables: Mapping[str, Variable], start: datetime, end: datetime) -> str:
    """A panel's SQL as the database receives it: variables first (Grafana's front end), then macros (its back
    end). Fails on anything left that looks like a variable or macro."""
    expanded = expand_macros(interpolate_variables(sql, variables), start, end)
    leftover = _LEFTOVER.search(expanded)
    if leftover is not None:
        context = expanded[max(0, leftover.start() - 30) : leftover.end() + 30]
        raise GrafanaExpansionError(f"unexpanded variable or macro near {context!r}")
    return expanded
