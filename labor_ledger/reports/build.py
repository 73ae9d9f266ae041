"""Labor reports for auditors: the ledger grouped per model version, annotator, period or
project (`labor_report`), each built with pandas from ONE SQL query (reports/sql.py, shaped in
reports/frames.py) and written as CSV, Parquet or JSON (reports/writers.py).

Every figure comes from the ledger's own entries (labor_ledger_ledgerentry), so totals equal the
ledger's sums: a report by annotator adds up to the sum of all entries, and to the balances.
Each report names the chain head (seq, hash) it was computed from: the query and the head are
read in one REPEATABLE READ transaction, so two auditors holding reports with the same head read
the same books.

Model versions (training.ModelVersion) pin the annotations they were trained on
(training.ManifestEntry). The labor *embodied* in a version is what the ledger holds on those
annotations: the time of the attempts behind them and the pay for them, each annotation counted
once however many versions reused it. Money that the ledger books per annotator and period
rather than per label (floor top-ups, bonuses, adjustments) is *allocated* to a version at the
annotator's average rate per hour worked: an annotator's top-ups divided by all their hours
worked in the project, times their hours worked on the version's labels. docs/labor-card.md.

Reports only read. The per-version report reads the labor index that the worker writes when a
version is registered (labor_ledger/labor_index.py); a version without one yet is refused with
`labor_index.VersionNotIndexed`, never computed here. On PostgreSQL it reads the labor summary
written right after (labor_ledger/labor_summary.py: rows stamped with a ledger position, plus
the entries after it), or the full statement for versions not summarized yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
from django.utils import timezone

from annotation.models import Project
from labor_ledger.pseudonyms import pseudonym_key, pseudonym_map
from training.models import ModelVersion

from .columns import (
    ANNOTATOR_COLUMNS,
    GROUP_COLUMNS,
    MONEY_COLUMNS,
    MONEY_PLACES,
    RATE_WEIGHT_PLACES,
    SECONDS_PLACES,
    VERSION_COLUMNS,
)
from .frames import as_decimal, column_totals, derive, group_rows, version_rows, versions_frame
from .sql import LedgerHead, consistent_read, fetch_frame, grouped_sql, ledger_checkpoint, ledger_head

BY_CHOICES = ("version", "annotator", "period", "project")
REPORT_FORMAT_VERSION = 1


class ReportError(ValueError):
    """A report that cannot be made as asked (unknown grouping, version, format)."""


# --- the reports -------------------------------------------------------------------------------


@dataclass
class Report:
    kind: str
    project: Project
    head: LedgerHead
    frame: pd.DataFrame
    generated_at: datetime
    version: int | None = None
    pseudonymized: bool = False
    totals: dict | None = None
    notes: list[str] = field(default_factory=list)
    checkpoint: dict | None = None  # the latest signed checkpoint (sql.ledger_checkpoint)

    @property
    def currency(self) -> str:
        return self.project.currency

    @property
    def filename_stem(self) -> str:
        scope = f"-v{self.version}" if self.version is not None else ""
        return f"{self.project.slug}-labor{scope}-by-{self.kind}"

    def metadata(self) -> dict:
        return {
            "report": f"labor by {self.kind}",
            "format_version": REPORT_FORMAT_VERSION,
            "project": self.project.slug,
            "model_version": self.version,
            "currency": self.currency,
            "ledger_head": self.head.as_dict(),
            "ledger_checkpoint": self.checkpoint,
            "generated_at": self.generated_at.isoformat(),
            "pseudonymized": self.pseudonymized,
            "notes": self.notes,
        }


def _identity(frame: pd.DataFrame, *, pseudonymize: bool) -> pd.DataFrame:
    """Annotators by username, or by keyed pseudonym (then no id, name or email at all)."""
    if pseudonymize:
        names = pseudonym_map(frame["annotator_id"].unique().tolist())
        frame.insert(0, "annotator", frame["annotator_id"].map(names))
        return frame.drop(columns=["annotator_id", "username"], errors="ignore")
    frame.insert(0, "annotator", frame.pop("username"))
    return frame


def _resolve_version(project: Project, version: int | None):
    if version is None:
        return None
    found = ModelVersion.objects.filter(project=project, sequence=version).first()
    if found is None:
        raise ReportError(f"Project {project.slug} has no model version {version}.")
    return found


def _annotator_rows(raw: pd.DataFrame, *, pseudonymize: bool) -> pd.DataFrame:
    """One row per annotator, by username (or keyed pseudonym), in ANNOTATOR_COLUMNS order."""
    raw["below_floor_before_top_up"] = (raw["counted_seconds"] > 0) & (raw["pay_before_top_up"] < raw["floor_amount"])
    frame = raw.sort_values("username").reset_index(drop=True)
    frame = _identity(frame, pseudonymize=pseudonymize)
    order = ["annotator", *(["annotator_id"] if not pseudonymize else [])]
    return frame[order + [c for c in ANNOTATOR_COLUMNS if c not in order]]


def _grouped_report(project: Project, *, by: str, version: int | None, pseudonymize: bool) -> Report:
    mv = _resolve_version(project, version)
    params = {"project": project.pk, "version": mv.pk if mv else None}
    with consistent_read():
        head = ledger_head(project)
        raw = fetch_frame(grouped_sql(by=by, scoped=mv is not None), params)
    generated = timezone.now()
    as_decimal(raw, [c for c in raw.columns if c.endswith("_seconds")], SECONDS_PLACES)
    as_decimal(raw, [c for c in raw.columns if c in MONEY_COLUMNS], MONEY_PLACES)
    as_decimal(raw, ["floor_rate_weight"], RATE_WEIGHT_PLACES)
    for c in ("labels", "examples", "entries", "periods_topped_up"):
        raw[c] = raw[c].astype("int64")
    derive(raw)
    notes = []
    if mv is not None:
        notes.append(
            f"Scope: the {mv.n_annotations} labels model version {mv.sequence} was trained on. Floor top-ups, "
            "bonuses and adjustments are allocated to it at each annotator's average rate per hour worked "
            "(allocated_* columns); direct_pay is what the ledger booked on its labels."
        )
    if by == "annotator":
        frame = _annotator_rows(raw, pseudonymize=pseudonymize)
    else:
        keys = ["period"] if by == "period" else []
        frame = group_rows(raw, keys=keys)
        if by == "period":
            frame["period"] = pd.to_datetime(frame["period"]).dt.date
            frame = frame.sort_values("period").reset_index(drop=True)
        else:
            frame.insert(0, "project", project.slug)
        lead = ["period"] if by == "period" else ["project"]
        frame = frame[lead + GROUP_COLUMNS]
        if len(frame) == 1 and by == "project" and not len(raw):
            frame = frame.iloc[0:0]
    report = Report(
        kind=by,
        project=project,
        head=head,
        frame=frame,
        generated_at=generated,
        version=mv.sequence if mv else None,
        pseudonymized=pseudonymize and by == "annotator",
        notes=notes,
    )
    report.totals = column_totals(frame, by=by)
    return report


def _version_report(project: Project, *, version: int | None) -> Report:
    mv = _resolve_version(project, version)
    head, raw, meta = versions_frame(project, upto=mv.sequence if mv else None)
    generated = timezone.now()
    frame = version_rows(raw, meta)
    if mv is not None:
        frame = frame[frame["version"] == mv.sequence].reset_index(drop=True)
    frame = frame[VERSION_COLUMNS]
    notes = [
        "Each row is the labor embodied in one model version: the ledger's entries on the labels it was "
        "trained on, each label counted once. Versions share labels, so rows do not add up across versions.",
        "Floor top-ups, bonuses and adjustments are allocated at each annotator's average rate per hour worked.",
        "recorded_* and <category>_* columns: all time on the books before the version's training set was read.",
    ]
    return Report(kind="version", project=project, head=head, frame=frame, generated_at=generated,
                  version=mv.sequence if mv else None, notes=notes)  # fmt: skip


def labor_report(
    *, project: Project, by: str = "version", version: int | None = None, pseudonymize: bool = False
) -> Report:
    """The labor report of a project grouped `by` version, annotator, period or project,
    optionally scoped to one model version's labels, optionally pseudonymized."""
    if by not in BY_CHOICES:
        raise ReportError(f"Group by one of: {', '.join(BY_CHOICES)}.")
    if pseudonymize:
        pseudonym_key()  # fail before any work when no key is configured
    if by == "version":
        report = _version_report(project, version=version)
    else:
        report = _grouped_report(project, by=by, version=version, pseudonymize=pseudonymize)
    report.checkpoint = ledger_checkpoint(project)
    return report
