"""Writing one chunk of rows into the database: duplicates out, the rest in bulk.

PostgreSQL: `insert_chunk` COPYs the chunk into a temporary staging table (no WAL, no index),
then one `INSERT ... SELECT ... ON CONFLICT (project, text_hash) DO NOTHING RETURNING` probes
for duplicates and inserts the new rows together (the unique index is walked once per row,
not once for a probe and again for the insert) and marks the staging rows it inserted;
`write_chunk` reads those marks, and looks up only the texts that were not inserted, to write
the per-row report. Elsewhere (SQLite): `write_chunk` finds the chunk's texts already in the
project with one query (which also sees this import's own rows not yet committed: duplicates
within the file) and `insert_chunk` runs one prepared INSERT per row for the new ones. Both
bypass the model layer and run inside the import's transaction (runs), so a failure leaves
nothing.
"""

import json

from django.db import connection
from django.utils import timezone

from annotation.models import Example, Project

from .errors import Skip
from .progress import ImportRun
from .rows import Row

# Example fields the importer fills itself; any other column gets its model default.
_FILLED = {"id", "project", "text", "text_hash", "gold_label", "meta", "import_batch", "created_at"}


def insert_chunk(*, project: Project, batch_id: int, rows: list[Row]) -> None:
    """Insert one chunk of examples. PostgreSQL: every row of the chunk, through the staging
    table, each text at most once and none already in the project (the rows inserted are
    marked in the staging table: `_inserted_hashes`). Elsewhere: the chunk's new rows, already
    de-duplicated by `write_chunk`, with one prepared INSERT run for every row (SQLite's
    executemany beats bulk_create's 999-parameter statements by far). Like bulk_create, this
    bypasses save(); the columns, and the defaults of fields the import does not fill, come
    from the model."""
    opts = Example._meta
    others = [f for f in opts.concrete_fields if f.name not in _FILLED]
    defaults = tuple(f.get_db_prep_save(f.get_default(), connection) for f in others)
    columns = ["project_id", "text", "text_hash", "gold_label_id", "meta", "import_batch_id", "created_at"]
    columns += [f.column for f in others]
    quote = connection.ops.quote_name
    table, names = quote(opts.db_table), ", ".join(map(quote, columns))
    now = timezone.now()
    if connection.vendor == "postgresql":
        _insert_chunk_postgres(project.pk, batch_id, rows, table, names, now, defaults)
        return
    created_at = connection.ops.adapt_datetimefield_value(now)
    adapt_json = connection.ops.adapt_json_value
    placeholders = ", ".join(["%s"] * len(columns))
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} ({names}) VALUES ({placeholders})",  # noqa: S608 -- names from the model
            [
                (
                    project.pk,
                    r.text,
                    r.text_hash,
                    r.label_id,
                    adapt_json(r.meta, None) if r.meta else "{}",
                    batch_id,
                    created_at,
                    *defaults,
                )
                for r in rows
            ],
        )


# The import's staging table: temporary (this session only, no WAL), dropped at the commit or
# rollback of the import's transaction, emptied for every chunk.
_STAGE = "tally_import_stage"


def _insert_chunk_postgres(project_id, batch_id, rows, table, names, now, defaults) -> None:
    """COPY the chunk into the staging table, then one statement: insert its rows in file
    order (so ids follow the file), skipping a text already in the project or earlier in the
    chunk (ON CONFLICT on the unique (project, text_hash) index: the probe and the insert in
    one walk of the index), and mark the staging rows of the texts it inserted."""
    dumps = json.dumps
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} (n integer NOT NULL, text text NOT NULL, "
            "text_hash varchar(64) NOT NULL, gold_label_id bigint, meta jsonb NOT NULL, "
            "inserted boolean NOT NULL DEFAULT false) ON COMMIT DROP"
        )
        cursor.execute(f"TRUNCATE {_STAGE}")
        with cursor.copy(f"COPY {_STAGE} (n, text, text_hash, gold_label_id, meta) FROM STDIN") as copy:
            for r in rows:
                copy.write_row((r.row, r.text, r.text_hash, r.label_id, dumps(r.meta) if r.meta else "{}"))
        filled = ", ".join(["%s"] * len(defaults))
        cursor.execute(
            f"WITH ins AS (INSERT INTO {table} ({names}) "  # noqa: S608 -- names from the model
            f"SELECT %s, s.text, s.text_hash, s.gold_label_id, s.meta, %s, %s{', ' + filled if filled else ''} "
            f"FROM {_STAGE} s ORDER BY s.n "
            "ON CONFLICT (project_id, text_hash) DO NOTHING RETURNING text_hash) "
            f"UPDATE {_STAGE} s SET inserted = true FROM ins WHERE s.text_hash = ins.text_hash",
            [project_id, batch_id, now, *defaults],
        )


def _inserted_hashes() -> set[str]:
    """The texts `_insert_chunk_postgres` inserted from the chunk in the staging table."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT text_hash FROM {_STAGE} WHERE inserted")  # noqa: S608 -- a constant
        return {text_hash for (text_hash,) in cursor.fetchall()}


def _existing_hashes(project_id: int, hashes: set[str]) -> dict[str, tuple[int, int | None]]:
    """text_hash -> (example id, import batch id) of the chunk's hashes already in the project:
    one query on the unique (project, text_hash) index. Raw SQL: the ORM would prepare each of
    the chunk's thousands of parameters one by one."""
    opts = Example._meta
    quote = connection.ops.quote_name
    select = (
        f"SELECT {quote('text_hash')}, {quote('id')}, {quote('import_batch_id')} "  # noqa: S608 -- model names
        f"FROM {quote(opts.db_table)} WHERE {quote('project_id')} = %s AND {quote('text_hash')} "
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One text parameter split by the server: cheaper than adapting a 2,000-item array.
            cursor.execute(select + "= ANY(string_to_array(%s, ','))", [project_id, ",".join(hashes)])
        else:
            cursor.execute(select + f"IN ({', '.join(['%s'] * len(hashes))})", [project_id, *hashes])
        return {text_hash: (pk, batch_id) for text_hash, pk, batch_id in cursor.fetchall()}


def write_chunk(run: ImportRun, project: Project, rows: list[Row]) -> None:
    """Note the chunk's duplicates (of the project, of earlier rows of the file) on `run`, insert the rest."""
    if not rows:
        return
    batch_id = run.batch.pk
    if connection.vendor == "postgresql":
        _write_chunk_postgres(run, project, rows)
        return
    existing = _existing_hashes(project.pk, {r.text_hash for r in rows})
    first_row: dict[str, int] = {}
    new: list[Row] = []
    for r in rows:
        if r.text_hash in existing:
            _note_existing(run, r, existing[r.text_hash], batch_id)
        elif r.text_hash in first_row:
            run.note(r.row, r.line, Skip.DUPLICATE_IN_FILE, f"same text as row {first_row[r.text_hash]} of this file")
        else:
            first_row[r.text_hash] = r.row
            new.append(r)
    if new:
        insert_chunk(project=project, batch_id=batch_id, rows=new)
        run.progress.rows_imported += len(new)


def _write_chunk_postgres(run: ImportRun, project: Project, rows: list[Row]) -> None:
    """Insert the whole chunk (the database skips duplicates), then report what it skipped,
    in row order, exactly as the probe-first path does: a text inserted by this chunk is a
    duplicate of its first row; a text not inserted was there before the chunk, from an
    earlier chunk of this file or from the project (one lookup of those texts only)."""
    batch_id = run.batch.pk
    insert_chunk(project=project, batch_id=batch_id, rows=rows)
    inserted = _inserted_hashes()
    skipped = {r.text_hash for r in rows if r.text_hash not in inserted}
    existing = _existing_hashes(project.pk, skipped) if skipped else {}
    first_row: dict[str, int] = {}
    for r in rows:
        if r.text_hash not in inserted:
            if r.text_hash in existing:
                _note_existing(run, r, existing[r.text_hash], batch_id)
            else:  # cannot happen under the project's lock; never count a row twice or lose it
                run.note(r.row, r.line, Skip.DUPLICATE_IN_PROJECT, "same text as an example already in the project")
        elif r.text_hash in first_row:
            run.note(r.row, r.line, Skip.DUPLICATE_IN_FILE, f"same text as row {first_row[r.text_hash]} of this file")
        else:
            first_row[r.text_hash] = r.row
    run.progress.rows_imported += len(first_row)


def _note_existing(run: ImportRun, r: Row, found: tuple[int, int | None], batch_id: int) -> None:
    pk, from_batch = found
    if from_batch == batch_id:
        run.note(r.row, r.line, Skip.DUPLICATE_IN_FILE, "same text as an earlier row of this file", example=pk)
    else:
        run.note(
            r.row,
            r.line,
            Skip.DUPLICATE_IN_PROJECT,
            f"same text as example {pk}, already in the project",
            example=pk,
        )
