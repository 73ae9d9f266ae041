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
    live_claims = (
        Attempt.objects.filter(example=OuterRef("pk"), status=Attempt.Status.CLAIMED, lease_expires_at__gt=now)
        .order_by()
        .values("example")
        .annotate(n=Count("*"))
        .values("n")
    )
    machine_labeled = Annotation.objects.filter(
        example=OuterRef("pk"), source=Annotation.Source.MACHINE, status=Annotation.Status.ACCEPTED
    )
    worked_on_by_annotator = Attempt.objects.filter(example=OuterRef("pk"), annotator=annotator).exclude(
        status=Attempt.Status.EXPIRED
    )
    return (
        Example.objects.filter(project=project, submitted_count__lt=project.annotations_per_example)
        .exclude(Exists(worked_on_by_annotator))
        .exclude(Exists(machine_labeled))
        .annotate(live_claims=Coalesce(Subquery(live_claims, output_field=IntegerField()), Value(0)))
        .filter(live_claims__lt=project.annotations_per_example - F("submitted_count"))
        .order_by("-priority", "id")
    )
