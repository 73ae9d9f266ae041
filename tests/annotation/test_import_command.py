"""`manage.py import_examples`: end to end on small files, including the shipped demo fixture."""

import io
import json
import os
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from annotation.imports import copy
from annotation.models import Example, ImportBatch
from tests.annotation.import_helpers import AG_NEWS_LABELS, AG_NEWS_MAP, ROOT
from tests.factories import UserFactory, make_project


def run(*args) -> str:
    out = io.StringIO()
    call_command("import_examples", *args, stdout=out)
    return out.getvalue()


def test_command_imports_a_file_and_prints_a_summary_with_the_per_row_report(project, admin_user, tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_bytes(
        b"text,label\nGreat film,positive\n,positive\nGreat   film,negative\nBad film,meh\nOk film,negative\n"
    )

    output = run("--project", project.slug, str(path), "--label-column", "label", "--user", admin_user.username)

    batch = ImportBatch.objects.get()
    assert (batch.status, batch.rows_read, batch.rows_imported) == (ImportBatch.Status.SUCCEEDED, 5, 2)
    assert batch.created_by == admin_user and batch.source_name == "reviews.csv"
    assert sorted(Example.objects.values_list("text", flat=True)) == ["Great film", "Ok film"]
    assert f"Import {batch.pk} of reviews.csv succeeded" in output
    assert "rows read 5; imported 2; duplicates 1; skipped 2" in output
    assert "by reason: duplicate_in_file 1, empty_text 1, unknown_label 1" in output
    assert "row 2 (line 3): empty_text: the text is empty" in output
    assert "row 3 (line 4): duplicate_in_file" in output
    assert "row 4 (line 5): unknown_label: unknown label 'meh'" in output


def test_command_prints_progress_for_long_files(project, tmp_path, settings, monkeypatch):
    settings.TALLY_IMPORT_CHUNK_ROWS = 100
    monkeypatch.setattr("annotation.management.commands.import_examples.PROGRESS_EVERY_SECONDS", 0)
    path = tmp_path / "many.tsv"
    path.write_text("text\n" + "".join(f"line {i}\n" for i in range(500)))

    output = run("--project", project.slug, str(path))

    progress = [line for line in output.splitlines() if "rows read:" in line]
    assert len(progress) >= 4
    assert "100 rows read: 100 new, 0 duplicate, 0 skipped" in progress[0]
    assert "%" in progress[-1]


def test_command_reads_a_headerless_file_by_column_positions(admin_user, tmp_path):
    project = make_project(admin=admin_user, name="News", labels=AG_NEWS_LABELS)
    path = tmp_path / "ag.csv"
    path.write_bytes(b'"3","Stocks up","Markets\\rallied \\$5"\n"1","Talks","Leaders met"\n')

    run(
        "--project",
        project.slug,
        str(path),
        "--no-header",
        "--text-column",
        "2,3",
        "--label-column",
        "1",
        "--label-map",
        AG_NEWS_MAP,
        "--unescape-backslashes",
    )

    assert list(Example.objects.order_by("id").values_list("text", "gold_label__name")) == [
        ("Stocks up Markets rallied $5", "Business"),
        ("Talks Leaders met", "World"),
    ]


def test_command_refuses_bad_arguments_before_creating_a_batch(project, tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(b"sentence\nhello\n")

    with pytest.raises(CommandError, match="'sentence'"):
        run("--project", project.slug, str(path))
    with pytest.raises(CommandError, match="No project"):
        run("--project", "nope", str(path))
    with pytest.raises(CommandError, match="No such file"):
        run("--project", project.slug, str(tmp_path / "missing.csv"))
    assert ImportBatch.objects.count() == 0


def test_command_fails_loudly_and_leaves_nothing_when_the_import_fails(project, tmp_path, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("database went away (simulated)")

    monkeypatch.setattr(copy, "insert_chunk", broken)
    path = tmp_path / "a.csv"
    path.write_bytes(b"text\nhello\n")

    with pytest.raises(CommandError, match="database went away"):
        run("--project", project.slug, str(path))

    assert ImportBatch.objects.get().status == ImportBatch.Status.FAILED
    assert Example.objects.count() == 0


def test_the_demo_fixture_loads_with_the_documented_command_line(db):
    project = make_project(admin=UserFactory(), name="AG News demo", labels=AG_NEWS_LABELS)
    fixture = ROOT / "demo" / "fixtures" / "ag_news_demo.csv"

    output = run("--project", project.slug, str(fixture), "--text-column", "text", "--label-column", "label")

    assert "rows read 300; imported 300; duplicates 0; skipped 0" in output
    assert Example.objects.filter(project=project, gold_label__isnull=False).count() == 300
    assert set(Example.objects.values_list("gold_label__name", flat=True)) == set(AG_NEWS_LABELS)


SQLITE_SCRIPT = """
import io, json
from django.core.management import call_command
from annotation import services
from annotation.models import Example
from django.contrib.auth import get_user_model
call_command("migrate", verbosity=0)
admin = get_user_model().objects.create_user("demo-admin")
project = services.project_create(name="Demo", labels=["World", "Sports", "Business", "Sci-Tech"], created_by=admin)
out = io.StringIO()
call_command("import_examples", "--project", project.slug, "{fixture}", "--text-column", "text",
             "--label-column", "label", stdout=out)
call_command("import_examples", "--project", project.slug, "{extra}", "--label-column", "label", stdout=out)
rows = list(Example.objects.order_by("id").values_list("text", "gold_label__name", "meta"))
print(json.dumps({{"count": len(rows), "last": rows[-2:], "output": out.getvalue()}}))
"""


@pytest.mark.slow
def test_the_demo_import_works_on_sqlite(tmp_path):
    """`make demo` runs on SQLite, where the importer inserts with executemany instead of COPY."""
    extra = tmp_path / "extra.csv"
    extra.write_bytes(b"text,label,source\nA new text,Sports,wire\nA new   text,World,wire\n,World,x\nLast one,,blog\n")
    script = SQLITE_SCRIPT.format(fixture=ROOT / "demo" / "fixtures" / "ag_news_demo.csv", extra=extra)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
    }

    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["count"] == 302
    assert result["last"] == [["A new text", "Sports", {"source": "wire"}], ["Last one", None, {"source": "blog"}]]
    assert "rows read 4; imported 2; duplicates 1; skipped 1" in result["output"]
