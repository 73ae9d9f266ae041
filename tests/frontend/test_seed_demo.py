"""The demo seed: project, people with generated passwords, texts through the import command."""

import importlib.util
import io
import re
import stat
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from annotation.management.commands import seed_demo
from annotation.models import Membership, Project
from core.roles import ADMINS_GROUP, ANNOTATORS_GROUP, AUDITORS_GROUP
from tests.factories import add_examples

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def load_write_env():
    spec = importlib.util.spec_from_file_location("write_env", ROOT / "scripts" / "write_env.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fixture_csv(tmp_path):
    path = tmp_path / "demo.csv"
    path.write_text("text,label\nStocks rally on rate hopes.,Business\n")
    return path


@pytest.fixture
def import_calls(monkeypatch):
    """Stands in for the import pipeline's `import_examples` command (tested with the importer):
    records the call and adds a few texts the way a finished import would."""
    calls = []

    def fake_call_command(name, *args, **kwargs):
        calls.append((name, args, {k: v for k, v in kwargs.items() if k not in ("stdout", "stderr")}))
        project = Project.objects.get(slug=kwargs["project"])
        add_examples(project, ["Stocks rally on rate hopes.", "Team wins the title."])

    monkeypatch.setattr(seed_demo, "call_command", fake_call_command)
    return calls


def run_seed(*args, fixture=None) -> str:
    out = io.StringIO()
    if fixture is not None:
        args = (*args, "--fixture", str(fixture))
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def printed_passwords(output: str) -> dict[str, str]:
    return dict(re.findall(r"^\s+\w+\s+(\S+)\s+(\S+)$", output, flags=re.MULTILINE))


def test_seed_creates_project_people_and_imports_the_fixture(import_calls, fixture_csv):
    output = run_seed(fixture=fixture_csv)

    project = Project.objects.get(slug=seed_demo.PROJECT_SLUG)
    assert project.name == "AG News topics"
    assert list(project.labels.values_list("name", flat=True)) == ["World", "Sports", "Business", "Sci-Tech"]
    assert "topic" in project.instructions
    assert import_calls == [
        (
            "import_examples",
            (str(fixture_csv),),
            {"project": project.slug, "text_column": "text", "label_column": "label"},
        )
    ]

    roles = dict(project.memberships.values_list("user__username", "role"))
    assert roles == {
        "demo-admin": Membership.Role.ADMIN,
        "annotator1": Membership.Role.ANNOTATOR,
        "annotator2": Membership.Role.ANNOTATOR,
        "auditor": Membership.Role.AUDITOR,
    }
    User = get_user_model()
    admin = User.objects.get(username="demo-admin")
    assert admin.is_staff and not admin.is_superuser
    assert admin.groups.filter(name=ADMINS_GROUP).exists()
    assert User.objects.get(username="annotator1").groups.filter(name=ANNOTATORS_GROUP).exists()
    assert User.objects.get(username="auditor").groups.filter(name=AUDITORS_GROUP).exists()

    passwords = printed_passwords(output)
    assert set(passwords) == set(roles)
    assert len(set(passwords.values())) == 4  # generated, all different
    for username, password in passwords.items():
        assert len(password) >= 16
        assert User.objects.get(username=username).check_password(password)


def test_seed_is_idempotent_and_keeps_passwords_unless_asked(import_calls, fixture_csv):
    first = printed_passwords(run_seed(fixture=fixture_csv))
    second_output = run_seed(fixture=fixture_csv)

    assert Project.objects.filter(slug=seed_demo.PROJECT_SLUG).count() == 1
    assert len(import_calls) == 1  # the project already has texts: no second import
    assert Project.objects.get(slug=seed_demo.PROJECT_SLUG).memberships.count() == 4
    assert "unchanged" in second_output
    User = get_user_model()
    assert User.objects.get(username="annotator1").check_password(first["annotator1"])

    reset = printed_passwords(run_seed("--reset-passwords"))
    assert reset["annotator1"] != first["annotator1"]
    assert User.objects.get(username="annotator1").check_password(reset["annotator1"])
    assert not User.objects.get(username="annotator1").check_password(first["annotator1"])


def test_seed_without_examples_skips_the_import(import_calls):
    run_seed("--no-examples")
    assert import_calls == []


def test_seed_refuses_a_missing_fixture_clearly(import_calls, tmp_path):
    with pytest.raises(CommandError, match="missing"):
        run_seed(fixture=tmp_path / "nope.csv")
    assert import_calls == []


@pytest.mark.skipif(
    not (ROOT / seed_demo.FIXTURE).exists(), reason="demo/fixtures/ag_news_demo.csv ships with the import branch"
)
def test_the_default_demo_fixture_is_shipped_with_the_labels_the_project_uses():
    import csv

    with open(ROOT / seed_demo.FIXTURE, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 50
    assert {row["label"] for row in rows} <= set(seed_demo.LABELS)
    assert all(row["text"].strip() for row in rows)


def test_write_env_generates_a_secret_once_with_mode_600(tmp_path):
    ensure_env = load_write_env().ensure_env
    path = tmp_path / ".env"
    assert ensure_env(path) == ["DJANGO_SECRET_KEY", "TALLY_LEDGER_MAC_KEY", "TALLY_CHECKPOINT_SIGNING_KEY"]
    first = path.read_text()
    key = first.splitlines()[0].split("=", 1)[1]
    assert len(key) >= 50
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_env(path) == []
    assert path.read_text() == first

    assert ensure_env(path, docker=True) == ["POSTGRES_PASSWORD", "TALLY_APP_DB_PASSWORD"]
    assert path.read_text().startswith(first)
    assert ensure_env(tmp_path / "other.env") and (tmp_path / "other.env").read_text() != first
