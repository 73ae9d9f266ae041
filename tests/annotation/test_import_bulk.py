"""The PostgreSQL bulk path of the import (issue 18, item 4): COPY into a staging table, then
one INSERT ... ON CONFLICT DO NOTHING that probes and inserts together. What it must keep: every
duplicate reported as the probe-first path reported it (kind, reason, the example it repeats),
ids in the file's order, and nothing left behind in the session."""

import pytest
from django.db import connection

from annotation.imports import copy
from annotation.models import Example, ImportBatch
from tests.annotation.import_helpers import run_import
from tests.factories import add_examples, make_project

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="the COPY path is PostgreSQL's")


def csv(*lines: str) -> bytes:
    return ("text,label\n" + "".join(f"{line}\n" for line in lines)).encode()


def test_every_kind_of_duplicate_is_reported_with_its_reason_and_example(project, settings):
    settings.TALLY_IMPORT_CHUNK_ROWS = 4
    (old,) = add_examples(project, ["kept before"])
    content = csv(
        "alpha,positive",  # 1 new
        "kept  before,positive",  # 2 in the project (whitespace runs collapse)
        "beta,",  # 3 new, no gold label
        "alpha,negative",  # 4 earlier row of the same chunk
        "gamma,positive",  # 5 new (second chunk)
        "beta,positive",  # 6 earlier chunk of this file
        "kept before,",  # 7 in the project again
        "gamma,",  # 8 earlier row of the same chunk
        ",positive",  # 9 empty text: a bad row, not a duplicate
        "delta,positive",  # 10 new (third chunk)
    )

    batch = run_import(project, content, label_column="label")

    assert batch.status == ImportBatch.Status.SUCCEEDED, batch.error
    assert (batch.rows_read, batch.rows_imported, batch.rows_duplicate, batch.rows_skipped) == (10, 4, 5, 1)
    beta = Example.objects.get(project=project, text="beta")
    assert [(e["row"], e["code"], e["reason"], e.get("example")) for e in batch.report] == [
        (2, "duplicate_in_project", f"same text as example {old.pk}, already in the project", old.pk),
        (4, "duplicate_in_file", "same text as row 1 of this file", None),
        (6, "duplicate_in_file", "same text as an earlier row of this file", beta.pk),
        (7, "duplicate_in_project", f"same text as example {old.pk}, already in the project", old.pk),
        (8, "duplicate_in_file", "same text as row 5 of this file", None),
        (9, "empty_text", "the text is empty", None),
    ]
    assert batch.stats["reasons"] == {"duplicate_in_file": 3, "duplicate_in_project": 2, "empty_text": 1}
    # the first occurrence is the one kept, with its own gold label; ids follow the file
    rows = list(Example.objects.filter(project=project, import_batch=batch).order_by("id"))
    assert [(e.text, e.gold_label.name if e.gold_label else None) for e in rows] == [
        ("alpha", "positive"),
        ("beta", None),
        ("gamma", "positive"),
        ("delta", "positive"),
    ]


def test_the_same_texts_in_another_project_are_imported_there(project, admin_user):
    other = make_project(admin=admin_user, name="Other")
    add_examples(other, ["shared", "also shared"])

    batch = run_import(project, csv("shared,", "also shared,", "shared,"), label_column="label")

    assert (batch.rows_imported, batch.rows_duplicate) == (2, 1)
    assert Example.objects.filter(project=other).count() == 2


def test_a_file_of_one_text_repeated_across_many_chunks_imports_it_once(project, settings):
    settings.TALLY_IMPORT_CHUNK_ROWS = 7
    batch = run_import(project, csv(*["same text,positive"] * 50), label_column="label")

    assert (batch.rows_read, batch.rows_imported, batch.rows_duplicate) == (50, 1, 49)
    assert Example.objects.filter(project=project).count() == 1
    first = Example.objects.get(project=project)
    in_chunk = [e for e in batch.report if e["reason"] == "same text as row 1 of this file"]
    later = [e for e in batch.report if e.get("example") == first.pk]
    assert len(in_chunk) == 6 and len(later) == 43


@pytest.mark.django_db(transaction=True)  # the import's own transaction commits: ON COMMIT DROP
def test_the_staging_table_does_not_outlive_the_import(project):
    run_import(project, csv("one,", "two,"), label_column="label")
    again = run_import(project, csv("two,", "three,"), label_column="label")  # same session, fresh table

    assert (again.rows_imported, again.rows_duplicate) == (1, 1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [f"pg_temp.{copy._STAGE}"])
        assert cursor.fetchone() == (None,)
