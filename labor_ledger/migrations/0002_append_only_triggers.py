"""PostgreSQL refuses UPDATE and DELETE on the ledger's append-only tables.

A row-level BEFORE trigger raises for every UPDATE or DELETE of a ledger entry, a settlement
or a pay policy version, whatever client issues it (the ORM, raw SQL, psql). TRUNCATE is a
table owner's operation and is not covered: production should run the web and worker
processes as a role granted only SELECT and INSERT on these tables (docs/ledger.md).

On other databases (SQLite for the demo) the operation does nothing; the models' save(),
delete() and queryset update()/delete() refuse changes there.
"""

from django.db import migrations

TABLES = ["labor_ledger_ledgerentry", "labor_ledger_settlement", "labor_ledger_paypolicy"]

FUNCTION = """
CREATE OR REPLACE FUNCTION labor_ledger_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'labor ledger: % on % refused, the table is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation',
              HINT = 'Correct an entry with a new reversing entry; never edit or delete one.';
END;
$$;
"""

TRIGGER = """
CREATE TRIGGER {table}_append_only
BEFORE UPDATE OR DELETE ON {table}
FOR EACH ROW EXECUTE FUNCTION labor_ledger_refuse_change();
"""


class PostgresOnlyRunSQL(migrations.RunSQL):
    """RunSQL that runs on PostgreSQL and is a no-op elsewhere."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    dependencies = [("labor_ledger", "0001_initial")]

    operations = [
        PostgresOnlyRunSQL(
            sql=[FUNCTION] + [TRIGGER.format(table=t) for t in TABLES],
            reverse_sql=[f"DROP TRIGGER IF EXISTS {t}_append_only ON {t};" for t in TABLES]
            + ["DROP FUNCTION IF EXISTS labor_ledger_refuse_change();"],
        )
    ]
