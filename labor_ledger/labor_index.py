"""The per-version labor index: derived data the labor ledger keeps about training's model versions.

A model version's manifest (training.ManifestEntry) never changes once the version is
registered, so how its training labels differ from its parent's never changes either. Those
differences (VersionLabelDelta, one row per label added or dropped) and a marker that they are
complete (VersionLaborIndex) are written once, by whoever registers the version, right after it
commits: training announces `training.hooks.version_registered` from the worker, and
`LaborLedgerConfig.ready()` connects `version_registered` below to it. Versions registered
before that hook existed are indexed once by `manage.py labor_index_backfill`. Right after
indexing, the same handler writes the project's labor summary (labor_summary.py: each version's
labor rows stamped with the ledger position), which the per-version report reads.

Reads never write: the Labor Card, the labor API and the reports only read the index, and
refuse plainly (`VersionNotIndexed`, HTTP 409) for a version whose index is not there yet.
docs/labor-card.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import connection, transaction
from django.db.models import Q, Sum, Value
from django.utils import timezone

from core.errors import Conflict
from training.models import ModelVersion

from . import labor_summary
from .models import VersionLabelDelta, VersionLaborIndex

logger = logging.getLogger(__name__)

BACKFILL_COMMAND = "manage.py labor_index_backfill"


class VersionNotIndexed(Conflict):
    """A report or card needs model versions whose labor index is not written yet."""

    code = "version_not_indexed"

    def __init__(self, *, project_slug: str, sequences: list[int]):
        self.sequences = sequences
        named = ", ".join(str(s) for s in sequences)
        plural = "s" if len(sequences) > 1 else ""
        super().__init__(
            f"Model version{plural} {named} of project {project_slug} {'are' if plural else 'is'} not indexed yet: "
            "the worker writes a version's labor index right after registering it (versions registered "
            f"before that are indexed by `{BACKFILL_COMMAND}`). Nothing is computed on read; try again shortly."
        )


# --- writing (the worker, after a version commits; the backfill command) -----------------------


_DELTA_INSERT = """
INSERT INTO labor_ledger_versionlabeldelta (version_id, annotation_id, annotator_id, human, sign)
SELECT %(version)s, a.id, a.annotator_id, a.source = 'human', d.sign
FROM (
  SELECT COALESCE(cur.annotation_id, par.annotation_id) AS annotation_id,
         CASE WHEN par.annotation_id IS NULL THEN 1 ELSE -1 END AS sign
  FROM (SELECT DISTINCT m.annotation_id FROM training_manifestentry m WHERE m.version_id = %(version)s) cur
  FULL JOIN (SELECT DISTINCT m.annotation_id FROM training_manifestentry m WHERE m.version_id = %(parent)s) par
    ON par.annotation_id = cur.annotation_id
  WHERE cur.annotation_id IS NULL OR par.annotation_id IS NULL
) d
JOIN annotation_annotation a ON a.id = d.annotation_id
"""


def versions_index(
    *, project_id: int, upto: int | None = None, progress: Callable[[int, int, int], object] | None = None
) -> int:
    """Compute the label deltas (VersionLabelDelta) of every model version of the project (up
    to sequence `upto`) that has none yet, in sequence order (a delta reads its parent's
    manifest), each in its own transaction; returns how many.

    One ordered merge of the version's manifest with its parent's on their unique index.
    Concurrent callers (the worker and the backfill command) wait on the version's row lock and
    find the work done. `progress(done, total, sequence)` is called before each version."""
    todo = ModelVersion.objects.filter(project_id=project_id).exclude(
        pk__in=VersionLaborIndex.objects.values("version_id")
    )
    if upto is not None:
        todo = todo.filter(sequence__lte=upto)
    done = 0
    waiting = list(todo.order_by("sequence").values_list("pk", "parent_id", "sequence"))
    for version_id, parent_id, sequence in waiting:
        if progress is not None:
            progress(done, len(waiting), sequence)
        started = timezone.now()
        with transaction.atomic():
            ModelVersion.objects.select_for_update().filter(pk=version_id).values_list("pk").first()
            if VersionLaborIndex.objects.filter(version_id=version_id).exists():
                continue
            with connection.cursor() as cursor:
                cursor.execute(_DELTA_INSERT, {"version": version_id, "parent": parent_id})
            counts = VersionLabelDelta.objects.filter(version_id=version_id).aggregate(
                added=Sum(Value(1), filter=Q(sign=1)), dropped=Sum(Value(1), filter=Q(sign=-1))
            )
            now = timezone.now()
            VersionLaborIndex.objects.create(
                version_id=version_id,
                added=counts["added"] or 0,
                dropped=counts["dropped"] or 0,
                seconds=(now - started).total_seconds(),
                computed_at=now,
            )
        done += 1
    return done


def version_registered(event) -> None:
    """training.hooks.version_registered handler (the worker, after the version committed):
    index that version and any earlier unindexed ones of its project.

    A failure here must not fail the training run that already committed its version: it is
    logged, the version stays unindexed (its card and reports say so), and the backfill command
    (or the next version's registration) writes it."""
    sequence = ModelVersion.objects.filter(pk=event.version_id).values_list("sequence", flat=True).first()
    if sequence is None:
        return  # gone again (its project deleted) before the hook ran
    try:
        done = versions_index(project_id=event.project_id, upto=sequence)
    except Exception:
        logger.exception(
            "labor ledger: indexing model version %s of project %s failed; run %s",
            event.version_id,
            event.project_id,
            BACKFILL_COMMAND,
        )
        return
    if done:
        logger.info("labor ledger: indexed the labels of %d model versions (up to v%d)", done, sequence)
    # Then the version's labor figures as of now (and every earlier version's, rolled forward),
    # which the per-version report reads instead of the whole ledger (labor_summary.py).
    labor_summary.summarize_quietly(project_id=event.project_id)


# --- reading ----------------------------------------------------------------------------------


def unindexed_sequences(*, project_id: int, upto: int | None = None) -> list[int]:
    """Sequences of the project's model versions (up to `upto`) whose index is not written yet."""
    versions = ModelVersion.objects.filter(project_id=project_id).exclude(
        pk__in=VersionLaborIndex.objects.values("version_id")
    )
    if upto is not None:
        versions = versions.filter(sequence__lte=upto)
    return list(versions.order_by("sequence").values_list("sequence", flat=True))


def projects_with_unindexed():
    """Ids of the projects that have a model version without an index (a values queryset)."""
    return (
        ModelVersion.objects.exclude(pk__in=VersionLaborIndex.objects.values("version_id"))
        .values("project_id")
        .distinct()
    )


def require_indexed(*, project, upto: int | None = None) -> None:
    """Raise VersionNotIndexed when a version up to `upto` (all when None) has no index yet."""
    missing = unindexed_sequences(project_id=project.pk, upto=upto)
    if missing:
        raise VersionNotIndexed(project_slug=project.slug, sequences=missing)
