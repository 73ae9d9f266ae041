"""What annotation announces to the apps above it (training, labor_ledger).

annotation owns the work records (attempts, instruction readings, labels and their review)
and never imports the apps that pay for them or learn from them: it sends one of these events
and they answer through the handlers they connect in `AppConfig.ready()`. Handlers run in the
caller's transaction, so the work and, say, its ledger entries commit together or not at all;
a handler that must see committed data (training's retraining trigger) defers itself with
`transaction.on_commit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.hooks import Hook

if TYPE_CHECKING:
    from .models import Annotation, Attempt, InstructionReading, ReviewSession
    from .models_welfare import Break


@dataclass(frozen=True)
class AttemptClosed:
    """An attempt was submitted, skipped or expired (its status and times are final)."""

    attempt: Attempt
    annotation: Annotation | None
    acting_user_id: int | None


@dataclass(frozen=True)
class ReadingClosed:
    """A stretch of reading the instructions ended (its active and wall seconds are final)."""

    reading: InstructionReading


@dataclass(frozen=True)
class ReviewClosed:
    """A stretch of reviewing ended (its active and wall seconds are final)."""

    session: ReviewSession


@dataclass(frozen=True)
class AnnotationStatusChanged:
    """A label was retracted, rejected or accepted again, by its annotator or a reviewer."""

    annotation: Annotation
    previous_status: str
    acting_user_id: int | None
    reason: str


@dataclass(frozen=True)
class LabelsChanged:
    """The accepted labels of a project changed (a new label, or a status change). `label_ids`:
    the labels a new submission added; None when the change is not one submission's (a status
    change, a review), and the receiver must read what changed."""

    project_id: int
    label_ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ExamplesImported:
    """An import committed new examples to a project (sent after commit)."""

    project_id: int
    batch_id: int
    rows_imported: int


@dataclass(frozen=True)
class BreakClosed:
    """A break ended (annotation.welfare.break_end); its credited and paid seconds are final."""

    brk: Break


attempt_closed: Hook[AttemptClosed] = Hook("attempt_closed")
reading_closed: Hook[ReadingClosed] = Hook("reading_closed")
review_closed: Hook[ReviewClosed] = Hook("review_closed")
annotation_status_changed: Hook[AnnotationStatusChanged] = Hook("annotation_status_changed")
labels_changed: Hook[LabelsChanged] = Hook("labels_changed")
examples_imported: Hook[ExamplesImported] = Hook("examples_imported")
break_closed: Hook[BreakClosed] = Hook("break_closed")
