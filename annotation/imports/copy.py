"""Writing one chunk of rows into the database: duplicates out, the rest in bulk.

`write_chunk` finds the chunk's texts already in the project (one query per chunk, which also
sees this import's own rows not yet committed: duplicates within the file) and inserts the new
ones with `insert_chunk`: COPY on PostgreSQL, one prepared INSERT per row elsewhere, bypassing
the model layer. It runs inside the import's transaction (runs), so a failure leaves nothing.
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
    """Insert one chunk of new examples: COPY on PostgreSQL (several times faster than a
    multi-row INSERT), elsewhere one prepared INSERT run for every row (SQLite's executemany
    beats bulk_create's 999-parameter statements by far). Like bulk_create, this bypasses
    save(); the columns, and the defaults of fields the import does not fill, come from the model."""
    opts = Example._meta
    others = [f for f in opts.concrete_fields if f.name not in _FILLED]
    defaults = tuple(f.get_db_prep_save(f.get_default(), connection) for f in others)
    columns = ["project_id", "text", "text_hash", "gold_label_id", "meta", "import_batch_id", "created_at"]
    columns += [f.column for f in others]
    quote = connection.ops.quote_name
    table, names = quote(opts.db_table), ", ".join(map(quote, columns))
    now = timezone.now()
    if connection.vendor == "postgresql":
        dumps = json.dumps
        with connection.cursor() as cursor, cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for r in rows:
                meta = dumps(r.meta) if r.meta else "{}"
                copy.write_row((project.pk, r.text, r.text_hash, r.label_id, meta, batch_id, now, *defaults))
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
    existing = _existing_hashes(project.pk, {r.text_hash for r in rows})
    first_row: dict[str, int] = {}
    new: list[Row] = []
    for r in rows:
        if r.text_hash in existing:
            pk, from_batch = existing[r.text_hash]
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
        elif r.text_hash in first_row:
            run.note(r.row, r.line, Skip.DUPLICATE_IN_FILE, f"same text as row {first_row[r.text_hash]} of this file")
        else:
            first_row[r.text_hash] = r.row
            new.append(r)
    if new:
        insert_chunk(project=project, batch_id=batch_id, rows=new)
        run.progress.rows_imported += len(new)
