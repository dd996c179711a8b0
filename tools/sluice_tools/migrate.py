"""``sluice-migrate up|down|status``: the migration runner's command line (the runner itself is
``sluice.adapters.migrations``)."""

import argparse
import sys
from collections.abc import Sequence

import psycopg

from sluice.adapters.migrations import Migration, MigrationRunner, load_migrations
from sluice.errors import MigrationError
from sluice_tools.settings import get_migration_settings


def main(argv: Sequence[str] | None = None) -> int:
    """``sluice-migrate up|down|status``: move the schema at $SLUICE_DB_DSN."""
    parser = argparse.ArgumentParser(prog="sluice-migrate", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="apply pending migrations")
    up.add_argument("--to", type=int, default=None, metavar="VERSION", help="stop at this version")
    down = commands.add_parser("down", help="revert migrations (one step unless --to is given)")
    down.add_argument("--to", type=int, default=None, metavar="VERSION", help="revert down to this version")
    commands.add_parser("status", help="list migrations and whether they are applied")
    args = parser.parse_args(argv)

    settings = get_migration_settings()
    migrations = load_migrations(settings.migrations_dir)
    runner = MigrationRunner(settings.db_dsn, migrations)
    try:
        if args.command == "up":
            moved = runner.up(args.to)
            print(_summary("applied", moved))
        elif args.command == "down":
            current = max((a.version for a in runner.applied()), default=0)
            moved = runner.down(max(current - 1, 0) if args.to is None else args.to)
            print(_summary("reverted", moved))
        else:
            applied = {a.version: a for a in runner.applied()}
            for m in migrations:
                state = (
                    f"applied {applied[m.version].applied_at:%Y-%m-%d %H:%M:%S}" if m.version in applied else "pending"
                )
                print(f"{m.version:04d}_{m.name}: {state}")
    except (MigrationError, psycopg.Error) as exc:
        print(f"sluice-migrate: {exc}", file=sys.stderr)
        return 1
    return 0


def _summary(verb: str, moved: Sequence[Migration]) -> str:
    if not moved:
        return f"nothing {verb}: schema is up to date" if verb == "applied" else f"nothing {verb}"
    return "\n".join(f"{verb} {m.version:04d}_{m.name}" for m in moved)


if __name__ == "__main__":
    sys.exit(main())
