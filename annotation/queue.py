"""Which example an annotator gets next: the one replaceable place for queue order.

The training app writes Example.priority from the current model's uncertainty, with a share
of positions given to random and gold picks for quality control (training.ml.sampling); until
a model has scored the pool every priority is 0 and the order is oldest first. Examples whose
label an admin accepted from the model (machine labels) are not offered again.
"""

from datetime import datetime

from django.db.models import Count, Exists, F, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from .models import Annotation, Attempt, Example, Project


def candidate_examples(*, project: Project, annotator, now: datetime) -> QuerySet[Example]:
    """Examples this annotator may claim now, best first.

    Open to claim: fewer accepted annotations plus live claims than the project's
    overlap, and never worked on by this annotator before (an expired claim excepted).
    Every condition is a NOT EXISTS probe on an indexed column, so PostgreSQL can walk the
    `-priority, id` index and stop at the first open example instead of scoring the pool.
    """
    overlap = project.annotations_per_example
    live_claims = Attempt.objects.filter(
        example=OuterRef("pk"), status=Attempt.Status.CLAIMED, lease_expires_at__gt=now
    )
    machine_labeled = Annotation.objects.filter(
        example=OuterRef("pk"), source=Annotation.Source.MACHINE, status=Annotation.Status.ACCEPTED
    )
    worked_on_by_annotator = Attempt.objects.filter(example=OuterRef("pk"), annotator=annotator).exclude(
        status=Attempt.Status.EXPIRED
    )
    # Routing by doubt (annotation.review) asks for extra labels on some texts.
    wanted = overlap + F("extra_annotations") if project.doubt_routing else overlap
    qs = (
        Example.objects.filter(project=project, submitted_count__lt=wanted)
        .exclude(Exists(worked_on_by_annotator))
        .exclude(Exists(machine_labeled))
    )
    if overlap == 1 and not project.doubt_routing:
        qs = qs.exclude(Exists(live_claims))
    else:
        n_live = live_claims.order_by().values("example").annotate(n=Count("*")).values("n")
        qs = qs.annotate(live_claims=Coalesce(Subquery(n_live, output_field=IntegerField()), Value(0))).filter(
            live_claims__lt=wanted - F("submitted_count")
        )
    return qs.order_by("-priority", "id")


def next_example(*, project: Project, annotator, now: datetime) -> Example | None:
    """The example to hand out next, or None.

    With overlap (or routing by doubt), examples other annotators have started come first, so
    agreement sets complete; then never-labeled ones, through the partial index on submitted_count = 0.
    """
    for choices in next_example_choices(project=project, annotator=annotator, now=now):
        example = choices.first()
        if example is not None:
            return example
    return None


def next_example_choices(*, project: Project, annotator, now: datetime) -> list[QuerySet[Example]]:
    """next_example's candidates, in the order it tries them: the first of the first non-empty
    one is the example handed out (claim_next sends them as one INSERT ... SELECT)."""
    candidates = candidate_examples(project=project, annotator=annotator, now=now)
    fresh = candidates.filter(submitted_count=0)
    if project.annotations_per_example > 1 or project.doubt_routing:
        return [candidates.filter(submitted_count__gt=0), fresh]
    return [fresh]
