"""The import service: formats, bad rows, duplicates, gold labels, atomicity, streaming, progress."""

import io
import json
import threading

import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.db import connection, transaction

from annotation.imports import copy, formats, jobs, runs
from annotation.imports.progress import import_progress, progress_key
from annotation.imports.rows import check_columns
from annotation.models import Example, ImportBatch, Label
from core.errors import ValidationFailed
from tests.annotation.import_helpers import AG_NEWS_LABELS, AG_NEWS_MAP, codes, run_import
from tests.factories import add_examples, make_project


def texts(project) -> list[str]:
    return list(Example.objects.filter(project=project).order_by("id").values_list("text", flat=True))


# --- formats ------------------------------------------------------------------------------


def test_csv_with_header_imports_texts_gold_labels_and_extra_columns_as_meta(project):
    content = (
        b"id,text,label,source\n"
        b"7,Loved every minute,positive,imdb\n"
        b'8,"Dull, long, and\nloud",NEGATIVE,rt\n'  # quoted comma and newline; label case ignored
        b"9,No label on this one,,imdb\n"
    )

    batch = run_import(project, content, text_column="text", label_column="label")

    assert batch.status == ImportBatch.Status.SUCCEEDED, batch.error
    assert (batch.rows_read, batch.rows_imported, batch.rows_duplicate, batch.rows_skipped) == (3, 3, 0, 0)
    rows = list(Example.objects.filter(project=project).order_by("id").values_list("text", "gold_label__name", "meta"))
    assert rows == [
        ("Loved every minute", "positive", {"id": "7", "source": "imdb"}),
        ("Dull, long, and\nloud", "negative", {"id": "8", "source": "rt"}),
        ("No label on this one", None, {"id": "9", "source": "imdb"}),
    ]
    assert set(Example.objects.values_list("import_batch", flat=True)) == {batch.pk}
    assert batch.finished_at is not None and batch.started_at is not None


def test_tsv_is_read_without_quoting_like_glue(project):
    content = b'sentence\tlabel\n"quoted" start , fine\t1\nit \'s a "gem"\t0\n'

    batch = run_import(
        project, content, "sst.tsv", text_column="sentence", label_column="label", label_map="0=negative,1=positive"
    )

    assert batch.status == ImportBatch.Status.SUCCEEDED, batch.error
    assert texts(project) == ['"quoted" start , fine', 'it \'s a "gem"']
    assert list(Example.objects.order_by("id").values_list("gold_label__name", flat=True)) == ["positive", "negative"]


def test_jsonl_reads_objects_with_extra_keys_as_meta_and_integer_labels(project):
    Label.objects.filter(project=project, name="positive").update(name="1")
    lines = [
        {"text": "first", "label": 1, "source": {"site": "x", "tags": ["a"]}},
        {"text": "second", "label": "negative"},
    ]
    content = ("\n".join(json.dumps(line) for line in lines) + "\n\n").encode()  # a trailing blank line

    batch = run_import(project, content, "data.jsonl", label_column="label")

    assert batch.status == ImportBatch.Status.SUCCEEDED, batch.error
    assert batch.rows_read == 2
    assert list(Example.objects.order_by("id").values_list("text", "gold_label__name", "meta")) == [
        ("first", "1", {"source": {"site": "x", "tags": ["a"]}}),
        ("second", "negative", {}),
    ]


def test_headerless_csv_joins_columns_by_position_and_maps_labels(admin_user):
    # Three lines as AG's News writes them: class, title, description; backslash escapes.
    content = (
        b'"3","Wall St. Bears Claw Back (Reuters)","Reuters - Short-sellers, Wall Street\'s dwindling\\band of '
        b'ultra-cynics, are seeing green again."\n'
        b'"2","Oil \\$50","Prices hit \\$50 a barrel.\\\\Analysts ""expect"" more."\n'
        b'"4","Only a title",""\n'
    )
    project = make_project(admin=admin_user, name="News", labels=AG_NEWS_LABELS)

    batch = run_import(
        project,
        content,
        "ag.csv",
        has_header=False,
        text_column="2,3",
        label_column="1",
        label_map=AG_NEWS_MAP,
        unescape_backslashes=True,
    )

    assert batch.status == ImportBatch.Status.SUCCEEDED, batch.error
    assert list(Example.objects.order_by("id").values_list("text", "gold_label__name")) == [
        (
            "Wall St. Bears Claw Back (Reuters) Reuters - Short-sellers, Wall Street's dwindling band of "
            "ultra-cynics, are seeing green again.",
            "Business",
        ),
        ('Oil $50 Prices hit $50 a barrel.\nAnalysts "expect" more.', "Sports"),
        ("Only a title", "Sci-Tech"),
    ]
    assert batch.text_column == "2,3" and batch.options["has_header"] is False


def test_utf8_byte_order_mark_is_not_part_of_the_first_column_name(project):
    batch = run_import(project, "\ufefftext,label\nhello,positive\n".encode())

    assert batch.status == ImportBatch.Status.SUCCEEDED, batch.error
    assert texts(project) == ["hello"]


def test_utf16_file_fails_with_a_clear_error(project):
    batch = run_import(project, "text\nhello\n".encode("utf-16"))

    assert batch.status == ImportBatch.Status.FAILED
    assert "UTF-16" in batch.error and "Nothing was imported" in batch.error


def test_unknown_text_column_fails_and_names_the_columns_there_are(project):
    batch = run_import(project, b"sentence,label\nhello,positive\n", text_column="text")

    assert batch.status == ImportBatch.Status.FAILED
    assert "'text'" in batch.error and "'sentence', 'label'" in batch.error
    assert Example.objects.count() == 0
    with pytest.raises(ValidationFailed, match="'sentence'"):
        check_columns(stream=io.BytesIO(b"sentence,label\n"), options=formats.import_options(source_name="a.csv"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source_name": "data.xlsx"}, "Cannot tell the format"),
        ({"source_name": "a.csv", "has_header": False, "text_column": "text"}, "by position"),
        ({"source_name": "a.csv", "label_map": "1World"}, "label map"),
        ({"source_name": "a.csv", "encoding": "utf-16"}, "not ASCII-compatible"),
        ({"source_name": "a.csv", "text_column": " , "}, "Name the text column"),
    ],
)
def test_options_are_validated_with_a_helpful_message(kwargs, message):
    with pytest.raises(ValidationFailed, match=message):
        formats.import_options(**kwargs)


# --- bad rows -------------------------------------------------------------------------------


def test_each_kind_of_bad_row_is_skipped_and_reported_with_its_row_number(project, settings):
    settings.TALLY_MAX_TEXT_LENGTH = 40
    content = b"".join(
        [
            b"text,label\n",
            b"good one,positive\n",  # row 1
            b"   ,positive\n",  # row 2: empty text
            b"caf\xe9 latin-1 byte,positive\n",  # row 3: not UTF-8
            b"fine text,neutral\n",  # row 4: unknown label
            b"x" * 41 + b",negative\n",  # row 5: too long
            b"lonely field\n",  # row 6: label column missing
            b"nul\x00inside,positive\n",  # row 7: NUL
            b"good two,negative\n",  # row 8
        ]
    )

    batch = run_import(project, content, text_column="text", label_column="label")

    assert batch.status == ImportBatch.Status.SUCCEEDED, batch.error
    assert codes(batch) == [
        (2, "empty_text"),
        (3, "undecodable"),
        (4, "unknown_label"),
        (5, "too_long"),
        (6, "missing_column"),
        (7, "nul_character"),
    ]
    assert [entry["line"] for entry in batch.report] == [3, 4, 5, 6, 7, 8]
    assert "neutral" in batch.report[2]["reason"] and "positive" in batch.report[2]["reason"]
    assert "limit is 40" in batch.report[3]["reason"]
    assert texts(project) == ["good one", "good two"]
    assert (batch.rows_read, batch.rows_imported, batch.rows_skipped) == (8, 2, 6)
    assert batch.stats["reasons"] == {
        "empty_text": 1,
        "missing_column": 1,
        "nul_character": 1,
        "too_long": 1,
        "undecodable": 1,
        "unknown_label": 1,
    }


def test_bad_jsonl_lines_are_skipped_and_reported(project, settings):
    settings.TALLY_IMPORT_MAX_LINE_BYTES = 100
    content = b"\n".join(
        [
            b'{"text": "ok one"}',  # row 1
            b'{"text": "broken"',  # row 2: malformed JSON
            b'["text", "a list"]',  # row 3: not an object
            b'{"body": "no text key"}',  # row 4: missing key
            b'{"text": 42}',  # row 5: not a string
            b'{"text": "\xff\xfe"}',  # row 6: not UTF-8
            b'{"text": "' + b"y" * 200 + b'"}',  # row 7: line over the cap
            b'{"text": "nul \\u0000 escaped"}',  # row 8: NUL
            b'{"text": "ok two"}',  # row 9
        ]
    )

    batch = run_import(project, content, "data.jsonl")

    assert codes(batch) == [
        (2, "malformed_json"),
        (3, "malformed_json"),
        (4, "missing_column"),
        (5, "invalid_value"),
        (6, "undecodable"),
        (7, "line_too_long"),
        (8, "nul_character"),
    ]
    assert texts(project) == ["ok one", "ok two"]
    assert batch.rows_read == 9


def test_a_csv_line_too_long_to_hold_fails_the_import_without_reading_it_whole(project, settings):
    settings.TALLY_IMPORT_MAX_LINE_BYTES = 1000
    stream = SipOnlyStream(b"text\nfine\n" + b"x," * 50_000 + b"\nafter\n")
    options = formats.import_options(source_name="a.csv")
    batch, _ = jobs.import_batch_create(project=project, created_by=None, source_name="a.csv", options=options)

    batch = runs.import_run(batch=batch, stream=stream)

    assert batch.status == ImportBatch.Status.FAILED
    assert "Line 3 is longer than 1,000 characters" in batch.error
    assert Example.objects.filter(project=project).count() == 0
    assert sum(stream.requests) < 100_000  # it stopped reading at the long line


def test_report_is_capped_but_counts_stay_exact(project, settings):
    settings.TALLY_IMPORT_REPORT_LIMIT = 3
    content = b"text\n" + b"".join(b'""\n' for _ in range(10)) + b"kept\n"

    batch = run_import(project, content)

    assert len(batch.report) == 3
    assert batch.rows_skipped == 10 and batch.rows_imported == 1
    assert batch.stats["reasons"] == {"empty_text": 10}
    assert batch.stats["report_omitted"] == 7


# --- duplicates and labels -------------------------------------------------------------------------


def test_duplicates_in_the_file_and_in_the_project_are_reported_not_inserted(project, settings):
    settings.TALLY_IMPORT_CHUNK_ROWS = 3  # duplicates across chunks and within one chunk
    (existing,) = add_examples(project, ["Already  here"])
    content = b"text\nnew a\nAlready here\nnew b\nnew c\nnew   a\nnew c\nnew d\n"

    batch = run_import(project, content)

    assert batch.status == ImportBatch.Status.SUCCEEDED, batch.error
    assert codes(batch) == [(2, "duplicate_in_project"), (5, "duplicate_in_file"), (6, "duplicate_in_file")]
    assert batch.report[0]["example"] == existing.pk
    assert texts(project) == ["Already  here", "new a", "new b", "new c", "new d"]
    assert (batch.rows_read, batch.rows_imported, batch.rows_duplicate, batch.rows_skipped) == (7, 4, 3, 0)


def test_reimporting_the_same_file_imports_nothing_new(project):
    content = b"text\none\ntwo\n"
    run_import(project, content)

    again = run_import(project, content)

    assert again.status == ImportBatch.Status.SUCCEEDED
    assert (again.rows_imported, again.rows_duplicate) == (0, 2)
    assert Example.objects.filter(project=project).count() == 2


def test_duplicates_are_judged_per_project(project, admin_user):
    other = make_project(admin=admin_user, name="Other")
    add_examples(other, ["shared text"])

    batch = run_import(project, b"text\nshared text\n")

    assert batch.rows_imported == 1


def test_create_labels_adds_missing_labels_once(project):
    content = b"text,label\na,positive\nb,mixed\nc,mixed\n"

    batch = run_import(project, content, label_column="label", create_labels=True)

    assert batch.status == ImportBatch.Status.SUCCEEDED, batch.error
    assert list(project.labels.values_list("name", flat=True)) == ["positive", "negative", "mixed"]
    assert Example.objects.filter(gold_label__name="mixed").count() == 2
    assert batch.stats["labels_created"] == ["mixed"]


# --- all or nothing ---------------------------------------------------------------------------


def test_a_failure_mid_import_leaves_no_examples_and_a_failed_batch(project, settings, monkeypatch):
    settings.TALLY_IMPORT_CHUNK_ROWS = 10
    real_insert = copy.insert_chunk
    calls = []

    def insert_then_fail(**kwargs):
        calls.append(len(kwargs["rows"]))
        if len(calls) == 2:
            raise RuntimeError("disk full (simulated)")
        real_insert(**kwargs)

    monkeypatch.setattr(copy, "insert_chunk", insert_then_fail)
    content = b"text,label\n" + b"".join(f"row {i},brand-new\n".encode() for i in range(35))

    batch = run_import(project, content, label_column="label", create_labels=True)

    assert calls == [10, 10]  # the first chunk went in, then the second failed
    assert batch.status == ImportBatch.Status.FAILED
    assert "disk full (simulated)" in batch.error and "Nothing was imported" in batch.error
    assert Example.objects.filter(project=project).count() == 0
    assert not project.labels.filter(name="brand-new").exists()  # created inside the transaction
    batch.refresh_from_db()
    assert (batch.status, batch.rows_imported) == (ImportBatch.Status.FAILED, 0)
    assert cache.get(progress_key(batch.pk))["status"] == ImportBatch.Status.FAILED


def test_a_database_error_mid_import_rolls_back_and_the_failure_is_still_recorded(project, settings, monkeypatch):
    settings.TALLY_IMPORT_CHUNK_ROWS = 5
    real_insert = copy.insert_chunk
    calls = []

    def insert_then_break_the_transaction(**kwargs):
        calls.append(1)
        if len(calls) == 2:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 / 0")  # a real error from the database
        real_insert(**kwargs)

    monkeypatch.setattr(copy, "insert_chunk", insert_then_break_the_transaction)
    content = b"text\n" + b"".join(f"row {i}\n".encode() for i in range(12))

    batch = run_import(project, content)

    batch.refresh_from_db()
    assert batch.status == ImportBatch.Status.FAILED
    assert "division by zero" in batch.error
    assert Example.objects.filter(project=project).count() == 0


def test_running_a_finished_batch_again_changes_nothing(project):
    batch = run_import(project, b"text\none\n")

    again = runs.import_run(batch=batch, stream=io.BytesIO(b"text\ntwo\n"))

    assert again.status == ImportBatch.Status.SUCCEEDED
    assert texts(project) == ["one"]


def test_worker_runs_a_stored_upload_and_deletes_it_afterwards(project, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    options = formats.import_options(source_name="up.csv")
    batch, _ = jobs.import_batch_create(
        project=project,
        created_by=None,
        source_name="up.csv",
        options=options,
        upload=ContentFile(b"text\nfrom storage\n", name="up.csv"),
    )
    stored = tmp_path / batch.upload.name
    assert stored.exists()
    # A worker that died mid-import left the batch RUNNING (its transaction rolled back):
    ImportBatch.objects.filter(pk=batch.pk).update(status=ImportBatch.Status.RUNNING)

    batch = runs.import_batch_run(batch_id=batch.pk)

    assert batch.status == ImportBatch.Status.SUCCEEDED, batch.error
    assert texts(project) == ["from storage"]
    assert not stored.exists()
    batch.refresh_from_db()
    assert not batch.upload


def test_a_missing_upload_fails_the_batch(project):
    options = formats.import_options(source_name="up.csv")
    batch, _ = jobs.import_batch_create(project=project, created_by=None, source_name="up.csv", options=options)

    batch = runs.import_batch_run(batch_id=batch.pk)

    assert batch.status == ImportBatch.Status.FAILED and "missing" in batch.error


# --- streaming and progress ----------------------------------------------------------------------


class SipOnlyStream(io.RawIOBase):
    """A binary stream that refuses to be read whole, and records how much each read asked."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)
        self.requests: list[int] = []

    def readable(self):
        return True

    def read(self, size=-1):
        assert size is not None and 0 < size <= 1 << 20, f"read({size}) would load the file whole"
        self.requests.append(size)
        return self._data.read(size)

    def readinto(self, buffer):  # pragma: no cover - the importer calls read()
        raise AssertionError("not used")


@pytest.mark.parametrize("name", ["big.csv", "big.jsonl"])
def test_the_file_is_read_in_bounded_pieces(project, settings, name):
    settings.TALLY_IMPORT_CHUNK_ROWS = 500
    if name.endswith(".csv"):
        data = b"text\n" + b"".join(f"sentence number {i} with some words\n".encode() for i in range(20_000))
    else:
        data = b"".join(json.dumps({"text": f"sentence number {i}"}).encode() + b"\n" for i in range(20_000))
    options = formats.import_options(source_name=name)
    batch, _ = jobs.import_batch_create(project=project, created_by=None, source_name=name, options=options)
    stream = SipOnlyStream(data)

    batch = runs.import_run(batch=batch, stream=stream, bytes_total=len(data))

    assert batch.status == ImportBatch.Status.SUCCEEDED, batch.error
    assert batch.rows_imported == 20_000
    assert len(stream.requests) > 10 and max(stream.requests) <= formats.READ_BUFFER_BYTES
    assert batch.stats["bytes_read"] == len(data)


def test_progress_is_published_to_the_cache_while_the_import_runs(project, settings):
    settings.TALLY_IMPORT_CHUNK_ROWS = 100
    content = b"text\n" + b"".join(f"text {i}\n".encode() for i in range(1000))
    seen = []

    def watch(progress):
        seen.append(cache.get(progress_key(progress.batch_id)))

    batch = run_import(project, content, on_progress=watch)

    running = [p for p in seen if p["status"] == ImportBatch.Status.RUNNING]
    assert len(running) >= 10
    assert [p["rows_read"] for p in running[1:]] == sorted(p["rows_read"] for p in running[1:])
    assert running[-1]["rows_read"] >= 900 and running[-1]["bytes_read"] > 0
    assert running[-1]["bytes_total"] == len(content)
    assert seen[-1]["status"] == ImportBatch.Status.SUCCEEDED
    assert import_progress(batch=batch) is None  # finished: the row has the truth


def test_progress_of_a_running_batch_says_when_it_has_stalled(project, settings):
    options = formats.import_options(source_name="a.csv")
    batch, _ = jobs.import_batch_create(project=project, created_by=None, source_name="a.csv", options=options)
    batch.status = ImportBatch.Status.RUNNING
    cache.set(
        progress_key(batch.pk),
        {
            "batch_id": batch.pk,
            "status": "running",
            "rows_read": 10,
            "rows_imported": 10,
            "rows_duplicate": 0,
            "rows_skipped": 0,
            "bytes_read": 50,
            "bytes_total": 200,
            "updated_at": "2020-01-01T00:00:00+00:00",
        },
    )

    progress = import_progress(batch=batch)

    assert progress["fraction"] == 0.25
    assert progress["stalled"] is True


@pytest.mark.django_db(transaction=True)
def test_a_batch_another_process_is_importing_is_left_to_it():
    project = make_project(name="Busy")
    options = formats.import_options(source_name="a.csv")
    batch, _ = jobs.import_batch_create(project=project, created_by=None, source_name="a.csv", options=options)
    ImportBatch.objects.filter(pk=batch.pk).update(status=ImportBatch.Status.RUNNING)
    locked, release = threading.Event(), threading.Event()

    def live_import():  # holds the batch row as a running import's transaction does
        with transaction.atomic():
            ImportBatch.objects.select_for_update().get(pk=batch.pk)
            locked.set()
            release.wait(10)
        connection.close()

    holder = threading.Thread(target=live_import)
    holder.start()
    assert locked.wait(10)
    try:
        result = runs.import_run(batch=batch, stream=io.BytesIO(b"text\na redelivered message\n"))
    finally:
        release.set()
        holder.join()

    assert result.status == ImportBatch.Status.RUNNING
    assert Example.objects.count() == 0


def test_nested_or_otherwise_unstorable_jsonl_lines_are_bad_rows_with_their_code(project):
    """Issue 15 item 5: one deeply nested line aborted the whole import (RecursionError)."""
    deep = 50_000
    content = b"\n".join(
        [
            b'{"text": "ok one"}',  # row 1
            b'{"text": "deep", "x": ' + b"[" * deep + b"]" * deep + b"}",  # row 2: past the parser
            b'{"text": "deep-ish", "x": ' + b"[" * 70 + b"]" * 70 + b"}",  # row 3: past the limit
            b"[" * deep + b"]" * deep,  # row 4: nested, and not an object
            b'{"text": "nan", "x": NaN}',  # row 5: not JSON (PostgreSQL's jsonb refuses it)
            b'{"text": "inf", "x": 1e400}',  # row 6: a number out of range
            b'{"text": "big", "x": ' + b"9" * 5000 + b"}",  # row 7: past Python's int digits
            b'{"text": "ok two", "x": ' + b"[" * 30 + b"]" * 30 + b"}",  # row 8: nested, within limits
        ]
    )

    batch = run_import(project, content, "data.jsonl")

    assert batch.status == ImportBatch.Status.SUCCEEDED, batch.error
    assert codes(batch) == [
        (2, "too_deep"),
        (3, "too_deep"),
        (4, "too_deep"),
        (5, "malformed_json"),
        (6, "malformed_json"),
        (7, "malformed_json"),
    ]
    assert texts(project) == ["ok one", "ok two"]
    assert batch.rows_read == 8
