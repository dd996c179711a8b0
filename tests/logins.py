"""Login users of the database's group roles, made the way ``sluice serve`` makes its own, for tests that run a
function as the user it runs as in AWS."""

from collections.abc import Iterator
from contextlib import contextmanager
from uuid import uuid4

import psycopg
from psycopg import sql

from sluice_tools.local.stack import DatabaseLogin, ensure_database_logins, login_dsn


@contextmanager
def group_login(dsn: str, parameter: str, group: str, name: str) -> Iterator[str]:
    """The DSN of a new login user in ``group`` (the secret the stack's ``parameter`` names would hold); the user is
    dropped afterwards, its connections ended first."""
    login = DatabaseLogin(parameter, f"sluice_test_{uuid4().hex[:8]}_{name}", group, name[0])
    password = ensure_database_logins(dsn, logins=[login])
    yield login_dsn(dsn, login, password)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (login.user,))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login.user)))
