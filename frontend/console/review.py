"""Reads for the console's review page (issue 16, item 4): the texts to review, disputed first.

The order: the most disagreement among the annotators' labels (distinct labels given, minus
one), then texts where the current model's prediction is none of the labels given, then the
rest as random spot checks (ordered by the text's sha256, which is unrelated to its content's
order, its import order and its labels). Texts already decided are left out until a new human
label arrives on them. Annotators are
shown by pseudonym (labor_ledger.pseudonyms when a key is configured; otherwise by a number
per project), so the reviewer judges the label, not the person.
"""

from dataclasses import dataclass, field

from django.db.models import Case, Count, Exists, IntegerField, OuterRef, Subquery, Value, When
from django.db.models.functions import Coalesce

from annotation.models import Annotation, Example, Membership, PriorityReason, Project, ReviewDecision
from annotation.review import leading_labels
from labor_ledger import pseudonyms
from training.models import Prediction

Through = Annotation.labels.through
HUMAN_ACCEPTED = {"annotation__source": Annotation.Source.HUMAN, "annotation__status": Annotation.Status.ACCEPTED}


def review_queue(*, project: Project):
    """Undecided texts with at least one accepted human label, in review order."""
    distinct = (
        Through.objects.filter(annotation__example=OuterRef("pk"), **HUMAN_ACCEPTED)
        .order_by()
        .values("annotation__example")
        .annotate(n=Count("label", distinct=True))
        .values("n")
    )
    humans = Annotation.objects.filter(
        example=OuterRef("pk"), source=Annotation.Source.HUMAN, status=Annotation.Status.ACCEPTED
    )
    # Decided: a decision no accepted human label is newer than (a rejected text that was
    # labeled again, or an adjudicated one that got more labels, comes back).
    newer = Annotation.objects.filter(
        example=OuterRef(OuterRef("pk")),
        source=Annotation.Source.HUMAN,
        status=Annotation.Status.ACCEPTED,
        created_at__gt=OuterRef("created_at"),
    )
    decided = ReviewDecision.objects.filter(example=OuterRef("pk")).exclude(Exists(newer))
    predicted = Prediction.objects.filter(example=OuterRef("pk")).values("label_id")[:1]
    agrees = Through.objects.filter(
        annotation__example=OuterRef("pk"), label_id=OuterRef("predicted"), **HUMAN_ACCEPTED
    )
    return (
        Example.objects.filter(project=project)
        .filter(Exists(humans))
        .exclude(Exists(decided))
        .annotate(
            distinct_labels=Coalesce(Subquery(distinct, output_field=IntegerField()), Value(0)),
            predicted=Subquery(predicted, output_field=IntegerField()),
        )
        .annotate(
            model_disagrees=Case(
                When(predicted__isnull=True, then=Value(0)),
                When(Exists(agrees), then=Value(0)),
                default=Value(1),
                output_field=IntegerField(),
            )
        )
        .order_by("-distinct_labels", "-model_disagrees", "text_hash")
    )


@dataclass
class GivenLabel:
    annotation_id: int
    who: str
    labels: list[str]


@dataclass
class ReviewItem:
    example: Example
    why: str  # "disputed", "model disagrees" or "spot check"
    given: list[GivenLabel] = field(default_factory=list)
    leading: list[int] | None = None
    leading_names: list[str] = field(default_factory=list)
    prediction: Prediction | None = None
    routed: str = ""


@dataclass
class ReviewPage:
    item: ReviewItem | None
    position: int
    remaining: int
    disputed: int
    model_disagrees: int
    decided: int


def _who(project: Project, user_ids) -> dict[int, str]:
    if pseudonyms.pseudonyms_available():
        return pseudonyms.pseudonym_map(user_ids)
    order = list(
        Membership.objects.filter(project=project).order_by("created_at", "id").values_list("user_id", flat=True)
    )
    number = {uid: n for n, uid in enumerate(order, start=1)}
    return {uid: f"annotator {number.get(uid, '?')}" for uid in user_ids}


def review_page(*, project: Project, position: int = 0) -> ReviewPage:
    queue = review_queue(project=project)
    remaining = queue.order_by().count()
    disputed = queue.filter(distinct_labels__gt=1).order_by().count()
    model_disagrees = queue.filter(distinct_labels__lte=1, model_disagrees=1).order_by().count()
    decided = ReviewDecision.objects.filter(project=project).values("example").distinct().count()
    position = max(0, min(position, max(remaining - 1, 0)))
    example = queue.select_related("project")[position : position + 1].first() if remaining else None
    item = _item(project, example) if example is not None else None
    return ReviewPage(item, position, remaining, disputed, model_disagrees, decided)


def _item(project: Project, example: Example) -> ReviewItem:
    annotations = list(
        Annotation.objects.filter(example=example, source=Annotation.Source.HUMAN, status=Annotation.Status.ACCEPTED)
        .prefetch_related("labels")
        .order_by("id")
    )
    who = _who(project, {a.annotator_id for a in annotations})
    names = dict(project.labels.values_list("id", "name"))
    if example.distinct_labels > 1:
        why = "disputed"
    elif example.model_disagrees:
        why = "model disagrees"
    else:
        why = "spot check"
    lead = leading_labels(annotations)
    return ReviewItem(
        example=example,
        why=why,
        given=[
            GivenLabel(a.pk, who[a.annotator_id], [lab.name for lab in sorted(a.labels.all(), key=lambda x: x.pk)])
            for a in annotations
        ],
        leading=lead,
        leading_names=[names[i] for i in lead] if lead else [],
        prediction=Prediction.objects.select_related("label").filter(example=example).first(),
        routed=PriorityReason(example.routed_reason).label if example.routed_reason else "",
    )
