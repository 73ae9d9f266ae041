"""Routing by doubt (issue 16, item 3): after a label is submitted, ask for one more annotator
on the text when the current model is unsure of it, or when a label disagrees with a confident
model or with another label. The rule reads the model's prediction (training's); the routing
itself, with its budget and cap, is annotation's (annotation.review.example_route_for_doubt).

Runs in the submit's transaction through annotation's attempt_closed hook. A project with
routing off costs one attribute read.
"""

from annotation import hooks
from annotation import review as annotation_review
from annotation.models import Annotation, PriorityReason

from .models import Prediction


def doubt_reason(*, project, prediction: Prediction | None, label_sets: list[frozenset[int]]) -> str | None:
    """Why a labeled text needs another annotator, or None. `label_sets`: its accepted human labels."""
    if any(s != label_sets[0] for s in label_sets[1:]):
        return PriorityReason.DISAGREEMENT  # the annotators disagree with each other
    if prediction is None:
        return None
    if prediction.margin < project.doubt_margin:
        return PriorityReason.DOUBT
    if prediction.confidence >= project.doubt_confidence and any(prediction.label_id not in s for s in label_sets):
        return PriorityReason.DISAGREEMENT  # a label disagrees with a confident model
    return None


def route_by_doubt(event: hooks.AttemptClosed) -> bool:
    annotation = event.annotation
    if annotation is None or not event.attempt.project.doubt_routing:
        return False
    project = event.attempt.project
    accepted = (
        Annotation.objects.filter(
            example_id=annotation.example_id, source=Annotation.Source.HUMAN, status=Annotation.Status.ACCEPTED
        )
        .prefetch_related("labels")
        .order_by("id")
    )
    label_sets = [frozenset(label.pk for label in a.labels.all()) for a in accepted]
    if not label_sets or len(label_sets) >= project.doubt_max_annotators:
        return False
    prediction = Prediction.objects.filter(example_id=annotation.example_id).first()
    reason = doubt_reason(project=project, prediction=prediction, label_sets=label_sets)
    if reason is None:
        return False
    return annotation_review.example_route_for_doubt(example_id=annotation.example_id, reason=reason)
