"""Reads, each scoped to what the requesting user may see."""

from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.utils import timezone

from core.roles import READERS

from .models import Annotation, Attempt, Example, Invitation, Label, Membership, Project, ReviewDecision


def projects_visible_to(user) -> QuerySet[Project]:
    if not user.is_authenticated:
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user).distinct()


def project_and_role(*, user, slug: str) -> tuple[Project | None, str | None]:
    """The project of `slug` and the user's role there, or (None, None) if they may not see it.
    One query: every annotator request resolves its project through this."""
    if not user.is_authenticated:
        return None, None
    if user.is_superuser:
        project = Project.objects.filter(slug=slug).first()
        return project, (Membership.Role.ADMIN if project else None)
    membership = Membership.objects.select_related("project").filter(user=user, project__slug=slug).first()
    return (membership.project, membership.role) if membership else (None, None)


def role_in_project(*, user, project: Project) -> str | None:
    if not user.is_authenticated:
        return None
    if user.is_superuser:
        return Membership.Role.ADMIN
    return Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()


def examples_visible_to(*, user, project: Project) -> QuerySet[Example]:
    """Admins and auditors see every example; an annotator only those they worked on."""
    qs = Example.objects.filter(project=project)
    if role_in_project(user=user, project=project) in READERS:
        return qs
    return qs.filter(attempts__annotator=user).distinct()


def annotations_visible_to(*, user, project: Project) -> QuerySet[Annotation]:
    qs = Annotation.objects.filter(project=project).select_related("example").prefetch_related("labels")
    if role_in_project(user=user, project=project) in READERS:
        return qs
    return qs.filter(annotator=user)


def attempts_visible_to(*, user, project: Project) -> QuerySet[Attempt]:
    qs = Attempt.objects.filter(project=project)
    if role_in_project(user=user, project=project) in READERS:
        return qs
    return qs.filter(annotator=user)


def open_claims(*, annotator, project: Project, now) -> QuerySet[Attempt]:
    return Attempt.objects.filter(
        project=project, annotator=annotator, status=Attempt.Status.CLAIMED, lease_expires_at__gt=now
    ).order_by("claimed_at", "id")


def invitation_open(*, token: str, now=None) -> Invitation | None:
    """The invitation a link's token opens, if it is still open (not used, withdrawn or expired)."""
    now = now or timezone.now()
    invitation = Invitation.objects.select_related("project").filter(token_hash=Invitation.hash_token(token)).first()
    return invitation if invitation is not None and invitation.is_open(now) else None


def invitations_pending(*, project: Project, now=None) -> QuerySet[Invitation]:
    now = now or timezone.now()
    return Invitation.objects.filter(
        project=project, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
    ).select_related("created_by")


def members_of(*, project: Project) -> QuerySet[Membership]:
    return Membership.objects.filter(project=project).select_related("user").order_by("user__username")


def labels_offered(project: Project) -> QuerySet[Label]:
    """The labels given anew: the labeling page's buttons, bulk accept (retired ones are not)."""
    return Label.objects.filter(project=project, retired=False).order_by("order", "id")


def labels_with_use(*, project: Project) -> QuerySet[Label]:
    """Every label of the project, retired ones too, with how many accepted labels and gold
    texts carry it (the settings page: retiring one deletes none of them)."""
    used = Annotation.labels.through.objects.filter(label=OuterRef("pk"), annotation__status=Annotation.Status.ACCEPTED)
    return (
        Label.objects.filter(project=project)
        .annotate(
            n_accepted=Subquery(
                used.order_by().values("label").annotate(n=Count("annotation_id")).values("n")[:1],
                output_field=IntegerField(),
            ),
            n_gold=Count("gold_examples", distinct=True),
        )
        .order_by("order", "id")
    )


def review_decisions_of(*, project: Project, example_id: int | None = None) -> QuerySet:
    """The project's review decisions, oldest first (admins and auditors read them)."""
    decisions = ReviewDecision.objects.filter(project=project).order_by("id")
    return decisions if example_id is None else decisions.filter(example_id=example_id)
