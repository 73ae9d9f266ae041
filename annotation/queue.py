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
    """
    live_claim = Attempt.objects.filter(
        example=OuterRef("pk"), status=Attempt.Status.CLAIMED, lease_expires_at__gt=now
    )
    machine_labeled = Annotation.objects.filter(
        example=OuterRef("pk"), source=Annotation.Source.MACHINE, status=Annotation.Status.ACCEPTED
    )
    worked_on_by_annotator = Attempt.objects.filter(example=OuterRef("pk"), annotator=annotator).exclude(
        status=Attempt.Status.EXPIRED
    )
    overlap = project.annotations_per_example
    if overlap == 1:
        # The common case, written so that PostgreSQL walks example_queue_idx
        # (project, submitted_count, -priority, id) in order and checks the NOT EXISTS only for
        # the first rows: a claim stays a few index probes however large the pool.
        return (
            Example.objects.filter(project=project, submitted_count=0)
            .exclude(Exists(live_claim))
            .exclude(Exists(worked_on_by_annotator))
            .exclude(Exists(machine_labeled))
            .order_by("-priority", "id")
        )
    live_claims = live_claim.order_by().values("example").annotate(n=Count("*")).values("n")
    return (
        Example.objects.filter(project=project, submitted_count__lt=overlap)
        .exclude(Exists(worked_on_by_annotator))
        .exclude(Exists(machine_labeled))
        .annotate(live_claims=Coalesce(Subquery(live_claims, output_field=IntegerField()), Value(0)))
        .filter(live_claims__lt=overlap - F("submitted_count"))
        .order_by("-priority", "id")
    )
