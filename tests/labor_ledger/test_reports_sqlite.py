"""The reports and the Labor Card on SQLite (what `make demo` runs), in a subprocess with its
own SQLite database: the same hand-worked figures as on PostgreSQL."""

import json
import subprocess
import sys

import pytest

from tests.support.processes import ROOT, subprocess_env

pytestmark = pytest.mark.slow

SCRIPT = """
import json
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from tests.labor_ledger.report_helpers import build_scenario
from labor_ledger.reports import build, card as labor_card, writers
from training.hooks import VersionRegistered, version_registered
s = build_scenario()
for v in s["versions"].values():
    version_registered.send(VersionRegistered(version_id=v.pk, project_id=v.project_id))
rows = {int(r["version"]): r for r in build.labor_report(project=s["project"], by="version").frame.to_dict("records")}
annotators = build.labor_report(project=s["project"], by="annotator", version=1).frame
card = labor_card.build_card(project=s["project"], version=s["versions"][2])
print(json.dumps({
    "pay": {v: str(r["pay"]) for v, r in rows.items()},
    "active": {v: str(r["active_seconds"]) for v, r in rows.items()},
    "new_dropped": {v: [r["new_labels"], r["dropped_labels"]] for v, r in rows.items()},
    "recorded": {v: str(r["recorded_active_seconds"]) for v, r in rows.items()},
    "median": str(rows[1]["wage_median"]),
    "total": str(build.labor_report(project=s["project"], by="project").totals["pay"]),
    "v1_top_ups": sorted(str(x) for x in annotators["floor_top_up"]),
    "outvoted": card["labor"]["not_used"]["outvoted"]["labels"],
    "csv_bytes": len(writers.to_csv(build.labor_report(project=s["project"], by="version"))),
}))
"""


def test_reports_on_sqlite_match_the_hand_worked_figures(tmp_path):
    env = subprocess_env(DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}")
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["pay"] == {"1": "0.702000", "2": "0.518000", "3": "0.214667"}
    assert data["active"] == {"1": "70.000", "2": "50.000", "3": "20.000"}
    assert data["new_dropped"] == {"1": [3, 0], "2": [2, 1], "3": [1, 2]}
    assert data["recorded"] == {"1": "100.000", "2": "120.000", "3": "120.000"}
    assert data["median"] == "36.24"
    assert data["total"] == "1.200000"
    assert data["v1_top_ups"] == ["0.290000", "0.392000"]
    assert data["outvoted"] == 1
    assert data["csv_bytes"] > 1000
