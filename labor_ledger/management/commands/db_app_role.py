"""Create or update the PostgreSQL role the application runs as, with least privilege.

Run as the database owner (the role that ran `migrate`), after every migrate:

    DATABASE_URL=postgres://owner@db/tally python manage.py db_app_role tally_app --password-env TALLY_APP_DB_PASSWORD

The role logs in, is not a superuser, owns nothing, and may:
- SELECT and INSERT on the append-only ledger tables (entries, settlements, pay policies):
  no UPDATE, DELETE or TRUNCATE, and since it owns no table it cannot disable their triggers;
- SELECT, INSERT, UPDATE and DELETE on every other table of the project (the chain head and
  balances included: appends move them);
- use the sequences.
It is idempotent: privileges it should not have are revoked first, so re-running it after a
migration gives new tables their grants. docs/security-operations.md.
"""

import os

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from psycopg import sql

from labor_ledger.models import LedgerCheckpoint, LedgerEntry, PayPolicy, Settlement

APPEND_ONLY = (LedgerEntry, PayPolicy, Settlement, LedgerCheckpoint)


def append_only_tables() -> list[str]:
    return [m._meta.db_table for m in APPEND_ONLY]


def grant(role: str, *, password: str | None = None) -> None:
    """Create `role` if needed and give it exactly the application's privileges."""
    ident = sql.Identifier(role)
    ledger = set(append_only_tables())
    tables = sorted(connection.introspection.table_names(include_views=False))
    with connection.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT").format(ident))
        cur.execute(sql.SQL("ALTER ROLE {} NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS").format(ident))
        if password:
            cur.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(ident, sql.Literal(password)))
        database = sql.Identifier(connection.settings_dict["NAME"])
        cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, ident))
        cur.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(ident))
        for table in tables:
            t = sql.Identifier(table)
            cur.execute(sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(t, ident))
            privileges = "SELECT, INSERT" if table in ledger else "SELECT, INSERT, UPDATE, DELETE"
            cur.execute(sql.SQL("GRANT " + privileges + " ON TABLE {} TO {}").format(t, ident))
        cur.execute(sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(ident))


class Command(BaseCommand):
    help = "Create or update the application's least-privilege PostgreSQL role (run as the owner, after migrate)."

    def add_arguments(self, parser):
        parser.add_argument("role", help="the role's name, e.g. tally_app")
        parser.add_argument("--password-env", help="name of the environment variable holding its password")

    def handle(self, *args, role, password_env=None, **options):
        if connection.vendor != "postgresql":
            raise CommandError("Roles and grants exist on PostgreSQL only.")
        password = os.environ.get(password_env) if password_env else None
        if password_env and not password:
            raise CommandError(f"{password_env} is not set.")
        if not apps.ready:
            raise CommandError("Django is not set up.")
        grant(role, password=password)
        self.stdout.write(
            f"{role}: SELECT, INSERT on {', '.join(append_only_tables())}; SELECT, INSERT, UPDATE, DELETE elsewhere."
        )
