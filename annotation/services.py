"""Writes for the annotation domain. Views and tasks call these; nothing else writes.

annotation owns the work records (attempts, instruction readings, labels and their review)
and the one rule that credits active time to them. It never imports the apps above it: what
happened is announced through annotation/hooks.py, in the same transaction, so the ledger's
entries commit with the work.

Every function that measures time takes an optional `now` so tests can drive the clock;
in production it is always the server's own `timezone.now()`, never a browser's number.
"""

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone
from django.utils.text import slugify

from core import sqlcompose
from core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from core.roles import LABELERS

from . import hooks, welfare
from .models import (
    ActivityClock,
    Annotation,
    Attempt,
    Example,
    InstructionReading,
    Invitation,
    Label,
    Membership,
    Project,
    ReviewSession,
)
from .models_welfare import WelfarePolicy
from .queue import next_example, next_example_choices
from .selectors import open_claims

MILLI = Decimal("0.001")


def text_hash(text: str) -> str:
    """Duplicates are judged on whitespace-normalised text."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()


def _seconds(delta: timedelta) -> Decimal:
    # Exact (integer microseconds) and rounded down, so the active pieces of an attempt never
    # add up to more than its wall-clock span (rounding each piece to nearest could).
    micro = max(delta // timedelta(microseconds=1), 0)
    return (Decimal(micro) / 1_000_000).quantize(MILLI, rounding=ROUND_DOWN)


# --- Projects, labels, members ---------------------------------------------------------


def _unique_slug(name: str) -> str:
    base = slugify(name)[:70] or "project"
    slug, n = base, 2
    while Project.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


def _clean_label_names(names: Sequence[str]) -> list[str]:
    cleaned = [n.strip() for n in names]
    if not cleaned or any(not n for n in cleaned):
        raise ValidationFailed("A project needs at least one label, and label names cannot be empty.")
    if len(set(cleaned)) != len(cleaned):
        raise ValidationFailed("Label names must be unique within a project.")
    if any(len(n) > 100 for n in cleaned):
        raise ValidationFailed("Label names are at most 100 characters.")
    return cleaned


@transaction.atomic
def project_create(
    *,
    name: str,
    labels: Sequence[str],
    created_by,
    instructions: str = "",
    label_mode: str = Project.LabelMode.SINGLE,
    annotations_per_example: int = 1,
    currency: str = "USD",
    slug: str | None = None,
) -> Project:
    label_names = _clean_label_names(labels)
    project = Project(
        name=name.strip(),
        slug=slug or _unique_slug(name),
        instructions=instructions,
        label_mode=label_mode,
        annotations_per_example=annotations_per_example,
        currency=currency.upper(),
        created_by=created_by,
    )
    project.full_clean()
    project.save()
    Label.objects.bulk_create(
        Label(project=project, name=label_name, order=i) for i, label_name in enumerate(label_names)
    )
    if created_by is not None:
        Membership.objects.create(project=project, user=created_by, role=Membership.Role.ADMIN)
    return project


ROUTING_FIELDS = {"doubt_routing", "doubt_margin", "doubt_confidence", "doubt_max_annotators", "doubt_budget"}


@transaction.atomic
def project_update(*, project: Project, **fields) -> Project:
    """Name, instructions, overlap, and the label mode while nothing is labeled yet (a
    single-label project's labels would not read as multi-label ones, nor the reverse)."""
    allowed = {"name", "instructions", "annotations_per_example", "label_mode", *ROUTING_FIELDS}
    unknown = set(fields) - allowed
    if unknown:
        raise ValidationFailed(f"These fields cannot be changed here: {', '.join(sorted(unknown))}.")
    Project.objects.select_for_update().filter(pk=project.pk).first()  # one change at a time
    if fields.get("label_mode", project.label_mode) != project.label_mode and project.annotations.exists():
        raise Conflict("The label mode is fixed once the project has labels.", code="label_mode_fixed")
    if "name" in fields:
        fields["name"] = fields["name"].strip()
    for field, value in fields.items():
        setattr(project, field, value)
    try:
        project.full_clean()
    except DjangoValidationError as exc:
        raise ValidationFailed("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
    project.save()
    return project


@transaction.atomic
def label_create(*, project: Project, name: str) -> Label:
    (name,) = _clean_label_names([name])
    if project.labels.filter(name=name).exists():
        raise Conflict(f"The label {name!r} already exists in this project.")
    order = project.labels.count()
    return Label.objects.create(project=project, name=name, order=order)


def _label_for_change(*, project: Project, label_id: int) -> Label:
    label = Label.objects.select_for_update().filter(project=project, pk=label_id).first()
    if label is None:
        raise NotFound("No such label in this project.")
    return label


@transaction.atomic
def label_rename(*, project: Project, label_id: int, name: str) -> Label:
    """A new name for a label. Annotations point at the label, not its name, so every label
    already given (and the ledger entries of that work) follows the new name."""
    label = _label_for_change(project=project, label_id=label_id)
    (name,) = _clean_label_names([name])
    if project.labels.filter(name=name).exclude(pk=label.pk).exists():
        raise Conflict(f"The label {name!r} already exists in this project.", code="label_exists")
    label.name = name
    label.save(update_fields=["name"])
    return label


@transaction.atomic
def label_retire(*, project: Project, label_id: int, now: datetime | None = None) -> Label:
    """Stop offering a label for new labels. Nothing is deleted: annotations that carry it keep
    it (and still train and evaluate the model), as do gold labels and the ledger; the
    labeling page, new submissions and bulk accept no longer offer it. A project keeps one
    label offered. Undone by label_restore."""
    label = _label_for_change(project=project, label_id=label_id)
    if label.retired:
        return label
    if not project.labels.filter(retired=False).exclude(pk=label.pk).exists():
        raise Conflict("A project keeps at least one label to offer.", code="last_label")
    label.retired = True
    label.retired_at = now or timezone.now()
    label.save(update_fields=["retired", "retired_at"])
    return label


@transaction.atomic
def label_restore(*, project: Project, label_id: int) -> Label:
    """Offer a retired label again."""
    label = _label_for_change(project=project, label_id=label_id)
    if label.retired:
        label.retired = False
        label.retired_at = None
        label.save(update_fields=["retired", "retired_at"])
    return label


@transaction.atomic
def membership_set(*, project: Project, user, role: str, actor=None, now: datetime | None = None) -> Membership:
    """Give `user` a role in the project (adding them if needed). A role that may not label
    (auditor) closes the person's open claims and reading there first (`member_work_close`)."""
    if role not in Membership.Role.values:
        raise ValidationFailed(f"Unknown role {role!r}; use one of {', '.join(Membership.Role.values)}.")
    if role not in LABELERS:
        member_work_close(project=project, user=user, actor=actor, now=now)
    membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    return membership


def _member_for_change(*, project: Project, user) -> Membership:
    membership = Membership.objects.select_for_update().filter(project=project, user=user).first()
    if membership is None:
        raise NotFound("This person is not a member of the project.")
    return membership


def _keep_an_admin(*, project: Project, membership: Membership) -> None:
    if membership.role != Membership.Role.ADMIN:
        return
    admins = Membership.objects.select_for_update().filter(project=project, role=Membership.Role.ADMIN)
    if admins.exclude(pk=membership.pk).count() == 0:
        raise Conflict("A project keeps at least one admin: make someone else admin first.", code="last_admin")


@transaction.atomic
def member_set_role(*, project: Project, user, role: str, actor=None, now: datetime | None = None) -> Membership:
    """Change an existing member's role. The last admin cannot be demoted; a member who no
    longer labels has their open claims closed (their time credited up to their last activity)."""
    membership = _member_for_change(project=project, user=user)
    if role != Membership.Role.ADMIN:
        _keep_an_admin(project=project, membership=membership)
    return membership_set(project=project, user=user, role=role, actor=actor, now=now)


@transaction.atomic
def member_remove(*, project: Project, user, actor=None, now: datetime | None = None) -> None:
    """Take someone out of a project. Their open claims and instruction reading are closed
    first, their time credited up to their last activity; their labels, attempts and ledger
    entries stay (they are the project's records, and the ledger is append-only)."""
    membership = _member_for_change(project=project, user=user)
    _keep_an_admin(project=project, membership=membership)
    member_work_close(project=project, user=user, actor=actor, now=now)
    membership.delete()


@transaction.atomic
def member_work_close(*, project: Project, user, actor=None, now: datetime | None = None) -> int:
    """Close a person's open claims in a project as revoked (the text goes back to the pool;
    wall time runs to their last activity, and the ledger records it, naming `actor`, through
    the attempt_closed hook) and their open instruction reading. Returns the claims closed."""
    now = now or timezone.now()
    claims = Attempt.objects.select_for_update(of=("self",)).filter(
        project=project, annotator=user, status=Attempt.Status.CLAIMED
    )
    closed = 0
    for attempt in claims.select_related("project", "example"):
        attempt.status = Attempt.Status.REVOKED
        attempt.finished_at = now
        attempt.wall_seconds = _seconds(attempt.last_active_at - (attempt.shown_at or attempt.claimed_at))
        attempt.save(update_fields=["status", "finished_at", "wall_seconds"])
        hooks.attempt_closed.send(
            hooks.AttemptClosed(attempt=attempt, annotation=None, acting_user_id=actor.pk if actor else None)
        )
        closed += 1
    reading = _open_reading(project=project, annotator=user)
    if reading is not None:
        _close_reading(reading, end=reading.last_active_at)
    return closed


# --- Invitations ---------------------------------------------------------------------------


INVITATION_DAYS = 7


@transaction.atomic
def invitation_create(
    *, project: Project, role: str, created_by, note: str = "", now: datetime | None = None
) -> tuple[Invitation, str]:
    """A one-time invitation link's token (returned once, stored only as its hash)."""
    now = now or timezone.now()
    if role not in Membership.Role.values:
        raise ValidationFailed(f"Unknown role {role!r}; use one of {', '.join(Membership.Role.values)}.")
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        project=project,
        role=role,
        note=note.strip()[:200],
        token_hash=Invitation.hash_token(token),
        created_by=created_by,
        created_at=now,
        expires_at=now + timedelta(days=INVITATION_DAYS),
    )
    return invitation, token


def _open_invitation(token: str, now: datetime) -> Invitation:
    invitation = (
        Invitation.objects.select_for_update()
        .select_related("project")
        .filter(token_hash=Invitation.hash_token(token))
        .first()
    )
    if invitation is None or not invitation.is_open(now):
        raise NotFound("This invitation does not exist, was used already, was withdrawn or has expired.")
    return invitation


@transaction.atomic
def invitation_accept(*, token: str, user, now: datetime | None = None) -> Membership:
    """The person holding the link joins the project with the invitation's role. Once only."""
    now = now or timezone.now()
    invitation = _open_invitation(token, now)
    if Membership.objects.filter(project=invitation.project, user=user).exists():
        raise Conflict("You are already a member of this project.", code="already_member")
    membership = membership_set(project=invitation.project, user=user, role=invitation.role, now=now)
    invitation.accepted_at = now
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    return membership


@transaction.atomic
def invitation_signup(*, token: str, username: str, password: str, now: datetime | None = None):
    """A new account for the holder of an open invitation, who then joins its project. The
    only way to an account besides an operator's `manage.py tally_user add`: there is no
    self-registration, and an invitation makes one account at most."""
    now = now or timezone.now()
    _open_invitation(token, now)  # a bad link creates nothing
    User = get_user_model()
    user = User(username=username.strip())
    try:
        user.full_clean(exclude=["password"])
        validate_password(password, user)
    except DjangoValidationError as exc:
        raise ValidationFailed(" ".join(exc.messages)) from exc
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError as exc:
        raise ValidationFailed("A user with that username already exists.") from exc
    invitation_accept(token=token, user=user, now=now)
    return user


@transaction.atomic
def invitation_revoke(*, project: Project, invitation_id: int, now: datetime | None = None) -> Invitation:
    invitation = Invitation.objects.select_for_update().filter(project=project, pk=invitation_id).first()
    if invitation is None:
        raise NotFound("No such invitation.")
    if invitation.accepted_at is None and invitation.revoked_at is None:
        invitation.revoked_at = now or timezone.now()
        invitation.save(update_fields=["revoked_at"])
    return invitation


# --- Accounts for operators (manage.py tally_user) ----------------------------------------


@transaction.atomic
def account_create(*, username: str, email: str = "") -> tuple[object, str]:
    """A new active account with a random one-time password (returned once, to be shown once).
    For operators at the command line, who may know which usernames exist; the console adds
    people by invitation instead."""
    User = get_user_model()
    password = secrets.token_urlsafe(12)
    user = User(username=username.strip(), email=email.strip())
    try:
        user.full_clean(exclude=["password"])
    except DjangoValidationError as exc:
        raise ValidationFailed(" ".join(exc.messages)) from exc
    user.set_password(password)
    user.save()
    return user, password


# --- The queue: claims with a lease ------------------------------------------------------


def _lease_end(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.TALLY_CLAIM_LEASE_SECONDS)


@transaction.atomic
def claim_next(
    *, project: Project, annotator, exclude_attempt_ids: Sequence[int] = (), now: datetime | None = None
) -> Attempt | None:
    """Hand the annotator an example: an open claim they do not hold in the page yet, else a new one.

    Returns None when nothing is left for this annotator. At most TALLY_MAX_OPEN_CLAIMS
    claims are open per annotator (the text on screen and the one prefetched behind it).
    """
    now = now or timezone.now()
    _lock_project_queue(project)
    policy, rows = _policy_and_claims(project=project, annotator=annotator, now=now)
    # None unless the project is sensitive; else the person's clock is locked, before any expiry
    gate = welfare.gate_for(policy, project=project, annotator=annotator, now=now)
    if any(a.lease_expires_at <= now for a in rows):
        attempts_expire(project=project, now=now)
    held = [a for a in rows if a.annotator_id == annotator.pk and a.lease_expires_at > now]
    for attempt in held:
        if attempt.pk not in exclude_attempt_ids:
            return attempt
    if len(held) >= settings.TALLY_MAX_OPEN_CLAIMS:
        raise Conflict("Finish or skip the texts you already hold before claiming another.", code="too_many_claims")
    attempt = Attempt(
        project=project,
        annotator=annotator,
        claimed_at=now,
        lease_expires_at=_lease_end(now),
        last_active_at=now,
    )
    if gate is None and connection.vendor == "postgresql":
        return _claimed_in_one_statement(attempt, now)
    example = next_example(project=project, annotator=annotator, now=now)
    example = gate.screen(example) if gate else example  # exposure limits, opt-outs
    if example is None:
        return None
    attempt.example = example
    attempt.save(force_insert=True)
    return attempt


def _policy_and_claims(*, project: Project, annotator, now: datetime) -> tuple[WelfarePolicy | None, list[Attempt]]:
    """The project's welfare policy if it is sensitive (welfare.sensitive_policy), and the
    claims attempts_expire would close and the annotator's open ones (unlocked; claim_next
    expires the former, locked, as before). On PostgreSQL one read (the hot path, issue 18):
    read after the queue's lock, like the separate reads it replaces, so a policy changed while
    the claim waited for the lock is seen."""
    claims = (
        Attempt.objects.filter(project=project, status=Attempt.Status.CLAIMED)
        .filter(Q(lease_expires_at__lte=now) | Q(annotator=annotator))
        .order_by()
    )
    if connection.vendor != "postgresql":
        return welfare.sensitive_policy(project), list(claims.order_by("claimed_at", "id"))
    policy_model = WelfarePolicy
    policy_names = [f.attname for f in policy_model._meta.concrete_fields]
    claim_names = [f.attname for f in Attempt._meta.concrete_fields]
    claims_sql, claims_params = claims.query.sql_with_params()
    columns = [f'w."{policy_model._meta.get_field(n).column}"' for n in policy_names]
    columns += [f'a."{Attempt._meta.get_field(n).column}"' for n in claim_names]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(columns)} FROM (SELECT 1) AS one "  # noqa: S608
            f"LEFT JOIN {welfare.SENSITIVE_POLICY_SQL} LEFT JOIN ({claims_sql}) AS a ON TRUE "
            "ORDER BY a.claimed_at, a.id",
            (project.pk, *claims_params),
        )
        rows = cursor.fetchall()
    n = len(policy_names)
    first = rows[0]
    policy = None if first[0] is None else sqlcompose.from_row(policy_model, policy_names, first[:n])
    held = [sqlcompose.from_row(Attempt, claim_names, row[n:]) for row in rows if row[n] is not None]
    return policy, held


def _claimed_in_one_statement(attempt: Attempt, now: datetime) -> Attempt | None:
    """PostgreSQL, a project that is not sensitive: the queue's next example (queue.next_example,
    its choices in order) and the attempt's insert in one INSERT ... SELECT (the hot path, issue
    18); the attempt comes back with its example. None when nothing is left for the annotator."""
    project = attempt.project
    choices = next_example_choices(project=project, annotator=attempt.annotator, now=now)
    example_names = [f.attname for f in Example._meta.concrete_fields]
    example_columns = ", ".join(f'"{Example._meta.get_field(n).column}"' for n in example_names)
    branches, params = [], []
    for rank, choice in enumerate(choices):
        choice_sql, choice_params = choice[:1].query.sql_with_params()
        branches.append(f"SELECT {rank} AS rank, {example_columns} FROM ({choice_sql}) AS c{rank}")  # noqa: S608
        params += choice_params
    attempt_names = [f.attname for f in Attempt._meta.concrete_fields]
    insert, insert_params = sqlcompose.insert_select_sql(
        attempt, source="e", columns={"example_id": "e.id"}, returning=attempt_names
    )
    statement = (
        f"WITH e AS (SELECT {example_columns} FROM ({' UNION ALL '.join(branches)}) AS choices "  # noqa: S608
        f"ORDER BY rank LIMIT 1), a AS ({insert}) "
        f"SELECT a.*, e.* FROM a JOIN e ON e.id = a.example_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, (*params, *insert_params))
        row = cursor.fetchone()
    if row is None:
        return None
    n = len(attempt_names)
    claimed = sqlcompose.from_row(Attempt, attempt_names, row[:n])
    claimed.project, claimed.annotator = project, attempt.annotator
    claimed.example = sqlcompose.from_row(Example, example_names, row[n:])
    return claimed


# Claims in one project are handed out one at a time: a transaction-scoped advisory lock, held
# for the few milliseconds a claim takes. Row locks on examples (SKIP LOCKED) would hand out
# nothing while the training worker rewrites the pool's priorities, which locks every row.
_CLAIM_LOCK_NAMESPACE = 0x7A11  # "tally"


def _lock_project_queue(project: Project) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_CLAIM_LOCK_NAMESPACE, project.pk % 2**31])
    # SQLite: the demo's IMMEDIATE transactions already serialise writers (config/settings/local.py).


def _locked_open_attempt(*, attempt_id: int, annotator) -> Attempt:
    # Lock the attempt row only (`of`): without it PostgreSQL also locks the joined project and
    # example rows, so every submit in a project queued behind the others on the one project
    # row and deadlocked against claims (found by `make bench-peers` at 8 clients).
    role = Membership.objects.filter(project=OuterRef("project_id"), user=OuterRef("annotator_id")).values("role")
    attempt = (
        Attempt.objects.select_for_update(of=("self",))
        .select_related("project", "example")
        .annotate(member_role=Subquery(role[:1]))
        .filter(pk=attempt_id)
        .first()
    )
    # Someone else's attempt is answered exactly like a missing one: ids leak nothing.
    if attempt is None or attempt.annotator_id != annotator.pk:
        raise NotFound("No such attempt.")
    # The role is checked on every action, not only at claim time: a person demoted to auditor
    # (or removed) while holding a claim can no longer be credited or paid for it.
    if attempt.member_role not in LABELERS and not annotator.is_superuser:
        raise Forbidden("Your role in this project no longer allows labeling.", code="not_a_labeler")
    return attempt


def _credit_active_time(record: Attempt | InstructionReading, now: datetime) -> None:
    """The one rule for active time, for attempts and instruction readings alike: a heartbeat
    vouches for the gap before it, up to TALLY_HEARTBEAT_MAX_GAP_SECONDS; a later one (the
    annotator was idle or the tab hidden) vouches for one heartbeat interval only.

    One person, one clock: the span credited is the one ending at `now`, and only its part
    after the person's activity watermark (ActivityClock, locked here, after the record's own
    row and before the ledger's chain head). Credited spans are therefore disjoint, whatever
    tabs, claims, readings and projects are open, and never add up to more than wall time."""
    gap = now - record.last_active_at
    if gap > timedelta(seconds=settings.TALLY_HEARTBEAT_MAX_GAP_SECONDS):
        gap = timedelta(seconds=settings.TALLY_HEARTBEAT_INTERVAL_SECONDS)
    credited_until = _advanced_clock(record.annotator_id, now=now) if gap > timedelta(0) else None
    if credited_until is None:  # SQLite, a first credit, or nothing to credit: lock, then advance
        clock = _locked_clock(record.annotator_id, now=now)
        credited_until = clock.credited_until
        if min(gap, now - credited_until) > timedelta(0):
            ActivityClock.objects.filter(pk=clock.pk).update(credited_until=now)
    gap = min(gap, now - credited_until)
    if gap > timedelta(0):
        record.active_seconds = (record.active_seconds + _seconds(gap)).quantize(MILLI)
    record.last_active_at = max(now, record.last_active_at)


def _advanced_clock(user_id: int, *, now: datetime) -> datetime | None:
    """PostgreSQL: lock the person's clock and move it to `now` in one statement (the hot path,
    issue 18); returns the watermark it had, or None when the person has no clock yet. The same
    as _locked_clock and the update below it when the span to credit is positive: the watermark
    moves to max(watermark, now), which is `now` exactly when some of the span is credited."""
    if connection.vendor != "postgresql":
        return None
    table = ActivityClock._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS c SET credited_until = GREATEST(old.credited_until, %s) "  # noqa: S608
            f"FROM (SELECT user_id, credited_until FROM {table} WHERE user_id = %s FOR UPDATE) AS old "
            "WHERE c.user_id = old.user_id RETURNING old.credited_until",
            [now, user_id],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def _locked_clock(user_id: int, *, now: datetime) -> ActivityClock:
    clock = ActivityClock.objects.select_for_update().filter(pk=user_id).first()
    if clock is None:  # the person's first credit: nothing before it was credited
        ActivityClock.objects.bulk_create(
            [ActivityClock(user_id=user_id, credited_until=now - timedelta(days=1))], ignore_conflicts=True
        )
        clock = ActivityClock.objects.select_for_update().get(pk=user_id)
    return clock


def _credit_activity(attempt: Attempt, now: datetime) -> None:
    if attempt.shown_at is not None:  # an attempt's clock starts when its text is shown
        _credit_active_time(attempt, now)


def _finish(attempt: Attempt, status: str, now: datetime) -> None:
    attempt.status = status
    attempt.finished_at = now
    attempt.wall_seconds = _seconds(now - (attempt.shown_at or attempt.claimed_at))


@transaction.atomic
def attempt_heartbeat(*, attempt_id: int, annotator, now: datetime | None = None) -> Attempt:
    """The page is visible and the annotator active. The first heartbeat marks the text shown."""
    now = now or timezone.now()
    attempt = _heartbeat_counted(attempt_id=attempt_id, annotator=annotator, now=now)
    if attempt is not None and attempt.shown_at == now:
        return attempt  # the first heartbeat, written whole
    counted = attempt is not None
    if attempt is None:
        attempt = _locked_open_attempt(attempt_id=attempt_id, annotator=annotator)
    if attempt.status != Attempt.Status.CLAIMED:
        raise Conflict(f"This attempt is already {attempt.status}.", code="attempt_closed")
    if attempt.lease_expires_at <= now:
        _expire_one(attempt, now)
        raise Conflict("This claim expired; the text went back to the pool.", code="claim_expired")
    if attempt.shown_at is None:
        attempt.shown_at = now
        attempt.last_active_at = now
    else:
        _credit_activity(attempt, now)
    if not counted:
        attempt.heartbeat_count += 1
    attempt.lease_expires_at = max(attempt.lease_expires_at, _lease_end(now))
    attempt.save(update_fields=["shown_at", "last_active_at", "active_seconds", "heartbeat_count", "lease_expires_at"])
    return attempt


def _heartbeat_counted(*, attempt_id: int, annotator, now: datetime) -> Attempt | None:
    """PostgreSQL: one UPDATE that locks an open, unexpired claim whose holder may label, counts
    the heartbeat and, if it is the first (the text not shown yet), writes all of it: shown now,
    no time credited (the clock starts here), the lease extended (the hot path, issue 18). The
    attempt comes back with its project and example; its `shown_at` is `now` when the heartbeat
    is written whole, else attempt_heartbeat credits the time with the row locked and counted.
    None for every other case (SQLite too), which attempt_heartbeat handles and answers as before."""
    if connection.vendor != "postgresql":
        return None
    models = (Attempt, Project, Example)
    aliases = ("a", "p", "e")
    columns = [[f.attname for f in model._meta.concrete_fields] for model in models]
    select = ", ".join(
        f'{alias}."{model._meta.get_field(name).column}"'
        for model, alias, names in zip(models, aliases, columns, strict=True)
        for name in names
    )
    labeler = (
        "TRUE"
        if annotator.is_superuser
        else (
            f"EXISTS (SELECT 1 FROM {Membership._meta.db_table} AS m WHERE m.project_id = a.project_id "  # noqa: S608
            "AND m.user_id = a.annotator_id AND m.role = ANY(%s))"
        )
    )
    params = [now, now, _lease_end(now), attempt_id, annotator.pk, Attempt.Status.CLAIMED, now]
    if not annotator.is_superuser:
        params.append(list(LABELERS))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Attempt._meta.db_table} AS a SET shown_at = COALESCE(a.shown_at, %s), "  # noqa: S608
            "last_active_at = CASE WHEN a.shown_at IS NULL THEN %s ELSE a.last_active_at END, "
            "heartbeat_count = a.heartbeat_count + 1, lease_expires_at = CASE WHEN a.shown_at IS NULL "
            "THEN GREATEST(a.lease_expires_at, %s) ELSE a.lease_expires_at END "
            f"FROM {Project._meta.db_table} AS p, {Example._meta.db_table} AS e "
            "WHERE a.id = %s AND a.annotator_id = %s AND a.status = %s AND a.lease_expires_at > %s "
            f"AND p.id = a.project_id AND e.id = a.example_id AND {labeler} "
            f"RETURNING {select}",
            params,
        )
        row = cursor.fetchone()
    if row is None:
        return None
    instances, start = [], 0
    for model, names in zip(models, columns, strict=True):
        instances.append(sqlcompose.from_row(model, names, row[start : start + len(names)]))
        start += len(names)
    attempt, attempt.project, attempt.example = instances
    return attempt


def _validated_labels(project: Project, label_ids: Sequence[int]) -> list[Label]:
    ids = list(dict.fromkeys(label_ids))
    labels = list(Label.objects.filter(project=project, pk__in=ids))
    if len(labels) != len(ids) or not ids:
        raise ValidationFailed("Choose labels of this project.", code="invalid_labels")
    if any(label.retired for label in labels):  # retired: kept on old labels, not given anew
        raise ValidationFailed("This label was retired; choose another.", code="retired_label")
    if project.label_mode == Project.LabelMode.SINGLE and len(labels) != 1:
        raise ValidationFailed("This project takes exactly one label per text.", code="invalid_labels")
    return labels


@transaction.atomic
def annotation_submit(
    *,
    attempt_id: int,
    annotator,
    label_ids: Sequence[int],
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> Annotation:
    """Record the annotator's label. Retrying with the same idempotency key returns the first result."""
    now = now or timezone.now()
    attempt = _locked_open_attempt(attempt_id=attempt_id, annotator=annotator)
    if idempotency_key:
        earlier = Annotation.objects.filter(annotator=annotator, idempotency_key=idempotency_key).first()
        if earlier is not None:
            if earlier.attempt_id != attempt.pk:
                raise Conflict("This idempotency key was already used for another text.", code="key_reused")
            return earlier
    if attempt.status != Attempt.Status.CLAIMED:
        raise Conflict(f"This attempt is already {attempt.status}.", code="attempt_closed")
    one_statement = _submission_in_one_statement(attempt.project, label_ids)
    labels = None if one_statement else _validated_labels(attempt.project, label_ids)

    _credit_activity(attempt, now)
    _finish(attempt, Attempt.Status.SUBMITTED, now)
    if one_statement:
        annotation = _record_submission(attempt, annotator, label_ids, idempotency_key, now)
        hooks.attempt_closed.send(
            hooks.AttemptClosed(attempt=attempt, annotation=annotation, acting_user_id=annotator.pk)
        )
        hooks.labels_changed.send(
            hooks.LabelsChanged(project_id=attempt.project_id, label_ids=tuple(dict.fromkeys(label_ids)))
        )
        return annotation
    attempt.save()
    try:
        # A savepoint only when a caller's transaction must survive the Conflict: in a request
        # this is the outermost transaction, which the Conflict rolls back anyway (two statements
        # fewer on the hot path, issue 18).
        with transaction.atomic(savepoint=bool(connection.savepoint_ids)):
            annotation = Annotation.objects.create(
                project=attempt.project,
                example=attempt.example,
                annotator=annotator,
                attempt=attempt,
                idempotency_key=idempotency_key or None,
                created_at=now,
            )
    except IntegrityError as exc:
        raise Conflict("This idempotency key was already used for another text.", code="key_reused") from exc
    # A new annotation has no labels yet: add() is one INSERT (set() would read them first).
    annotation.labels.add(*labels)
    Example.objects.filter(pk=attempt.example_id).update(submitted_count=F("submitted_count") + 1)
    hooks.attempt_closed.send(hooks.AttemptClosed(attempt=attempt, annotation=annotation, acting_user_id=annotator.pk))
    hooks.labels_changed.send(
        hooks.LabelsChanged(project_id=attempt.project_id, label_ids=tuple(label.pk for label in labels))
    )
    return annotation


def _submission_in_one_statement(project: Project, label_ids: Sequence[int]) -> bool:
    """Whether annotation_submit may write its rows in one statement (_record_submission):
    on PostgreSQL, as the outermost transaction (a failure rolls it all back, so no savepoint
    is owed to a caller), with labels that pass the checks needing no read."""
    ids = list(dict.fromkeys(label_ids))
    if connection.vendor != "postgresql" or connection.savepoint_ids or not ids:
        return False
    return project.label_mode != Project.LabelMode.SINGLE or len(ids) == 1


def _record_submission(
    attempt: Attempt, annotator, label_ids: Sequence[int], idempotency_key: str | None, now: datetime
) -> Annotation:
    """The submission's writes in one statement (the hot path, issue 18): the attempt saved,
    the annotation inserted, its labels inserted (only this project's labels that are not
    retired), the example's counter raised; each part the SQL the ORM sends for it. Labels
    that fail the check raise _validated_labels' error, rolling the statement back."""
    ids = list(dict.fromkeys(label_ids))
    annotation = Annotation(
        project=attempt.project,
        example=attempt.example,
        annotator=annotator,
        attempt=attempt,
        idempotency_key=idempotency_key or None,
        created_at=now,
    )
    saved = {f.attname: f.pre_save(attempt, False) for f in Attempt._meta.concrete_fields if not f.primary_key}
    attempt_sql, attempt_params = sqlcompose.update_sql(Attempt.objects.filter(pk=attempt.pk), **saved)
    example_sql, example_params = sqlcompose.update_sql(
        Example.objects.filter(pk=attempt.example_id), submitted_count=F("submitted_count") + 1
    )
    insert_sql, insert_params = sqlcompose.insert_sql([annotation], returning=("pk",))
    through = Annotation.labels.through._meta.db_table
    statement = (
        f"WITH attempt AS ({attempt_sql}), example AS ({example_sql}), annotation AS ({insert_sql}), "  # noqa: S608
        f"labels AS (INSERT INTO {through} (annotation_id, label_id) "
        f"SELECT annotation.id, label.id FROM annotation, {Label._meta.db_table} AS label "
        "WHERE label.project_id = %s AND label.id = ANY(%s) AND NOT label.retired "
        "ON CONFLICT DO NOTHING RETURNING label_id) "
        "SELECT annotation.id, (SELECT count(*) FROM labels) FROM annotation"
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                statement,
                attempt_params + example_params + insert_params + (attempt.project_id, ids),
            )
            annotation_id, labeled = cursor.fetchone()
    except IntegrityError as exc:
        raise Conflict("This idempotency key was already used for another text.", code="key_reused") from exc
    if labeled != len(ids):
        _validated_labels(attempt.project, label_ids)  # raises the error the check would have
        raise ValidationFailed("Choose labels of this project.", code="invalid_labels")
    sqlcompose.mark_saved([annotation], [annotation_id])
    return annotation


@transaction.atomic
def attempt_skip(*, attempt_id: int, annotator, now: datetime | None = None) -> Attempt:
    """Skipping is labor too: the attempt is closed and kept, never deleted. Idempotent."""
    now = now or timezone.now()
    attempt = _locked_open_attempt(attempt_id=attempt_id, annotator=annotator)
    if attempt.status == Attempt.Status.SKIPPED:
        return attempt
    if attempt.status != Attempt.Status.CLAIMED:
        raise Conflict(f"This attempt is already {attempt.status}.", code="attempt_closed")
    _credit_activity(attempt, now)
    _finish(attempt, Attempt.Status.SKIPPED, now)
    attempt.save()
    hooks.attempt_closed.send(hooks.AttemptClosed(attempt=attempt, annotation=None, acting_user_id=annotator.pk))
    return attempt


@transaction.atomic
def annotation_undo_last(*, project: Project, annotator, now: datetime | None = None) -> Attempt:
    """Retract the annotator's latest accepted label and hand the same text back as a new claim."""
    now = now or timezone.now()
    annotation = (
        Annotation.objects.select_for_update()
        .filter(
            project=project,
            annotator=annotator,
            source=Annotation.Source.HUMAN,
        )
        .order_by("-created_at", "-id")
        .first()
    )
    if annotation is None or annotation.status != Annotation.Status.ACCEPTED:
        raise Conflict("There is no submission to undo.", code="nothing_to_undo")
    _make_room_for_a_claim(project=project, annotator=annotator, now=now)
    annotation_set_status(annotation=annotation, status=Annotation.Status.RETRACTED, actor=annotator, now=now)
    return Attempt.objects.create(
        project=project,
        example_id=annotation.example_id,
        annotator=annotator,
        claimed_at=now,
        lease_expires_at=_lease_end(now),
        last_active_at=now,
    )


def _make_room_for_a_claim(*, project: Project, annotator, now: datetime) -> None:
    """Undo hands the text back as a new claim, within TALLY_MAX_OPEN_CLAIMS like any other:
    a claim the page prefetched but never showed goes back to the pool first (no time was
    spent on it); with every open claim on screen, undo waits until one is finished."""
    held = list(open_claims(annotator=annotator, project=project, now=now))
    for attempt in [a for a in held if a.shown_at is None][: max(len(held) - settings.TALLY_MAX_OPEN_CLAIMS + 1, 0)]:
        locked = Attempt.objects.select_for_update(of=("self",)).select_related("project").get(pk=attempt.pk)
        if locked.status == Attempt.Status.CLAIMED:
            _expire_one(locked, now)
            held.remove(attempt)
    if len(held) >= settings.TALLY_MAX_OPEN_CLAIMS:
        raise Conflict("Finish or skip the text on screen before undoing.", code="too_many_claims")


@transaction.atomic
def annotation_set_status(
    *, annotation: Annotation, status: str, actor=None, reason: str = "", now: datetime | None = None
) -> Annotation:
    """Accept, retract or reject a label. The ledger answers with a reversing entry, never an
    edit, naming `actor` (an annotator undoing their own label when none is given) and `reason`."""
    if _set_status(annotation=annotation, status=status, actor=actor, reason=reason, now=now or timezone.now()):
        hooks.labels_changed.send(hooks.LabelsChanged(project_id=annotation.project_id))
    return annotation


@transaction.atomic
def annotations_set_status(
    *, annotations: Sequence[Annotation], status: str, actor=None, reason: str = "", now: datetime | None = None
) -> int:
    """annotation_set_status for many labels of one project (a bulk accept undone): each is
    changed and announced to the ledger as one would be, and the change of labels is announced
    once. Returns how many changed."""
    now = now or timezone.now()
    changed = [a for a in annotations if _set_status(annotation=a, status=status, actor=actor, reason=reason, now=now)]
    if changed:
        hooks.labels_changed.send(hooks.LabelsChanged(project_id=changed[0].project_id))
    return len(changed)


def _set_status(*, annotation: Annotation, status: str, actor, reason: str, now: datetime) -> bool:
    previous = annotation.status
    if status == previous:
        return False
    if status not in Annotation.Status.values:
        raise ValidationFailed(f"Unknown status {status!r}.")
    annotation.status = status
    annotation.status_changed_at = now
    annotation.save(update_fields=["status", "status_changed_at"])
    if annotation.source == Annotation.Source.HUMAN:
        delta = 1 if status == Annotation.Status.ACCEPTED else (-1 if previous == Annotation.Status.ACCEPTED else 0)
        if delta:
            Example.objects.filter(pk=annotation.example_id).update(submitted_count=F("submitted_count") + delta)
    if actor is not None:
        acting_user_id = actor.pk
    else:
        acting_user_id = annotation.annotator_id if status == Annotation.Status.RETRACTED else None
    hooks.annotation_status_changed.send(
        hooks.AnnotationStatusChanged(
            annotation=annotation, previous_status=previous, acting_user_id=acting_user_id, reason=reason
        )
    )
    return True


@transaction.atomic
def annotation_review(
    *, annotation: Annotation, status: str, actor, reason: str = "", now: datetime | None = None
) -> Annotation:
    """An admin rejects a label (or accepts it again); the ledger's entries name them and the reason."""
    if status not in (Annotation.Status.REJECTED, Annotation.Status.ACCEPTED):
        raise ValidationFailed("An admin can reject a label or accept it again.")
    annotation = Annotation.objects.select_for_update().filter(pk=annotation.pk).first()
    if annotation is None:
        raise NotFound("No such annotation.")
    if annotation.source != Annotation.Source.HUMAN:
        raise ValidationFailed("Only human labels are reviewed here.")
    if status == Annotation.Status.ACCEPTED and annotation.status == Annotation.Status.RETRACTED:
        raise Conflict("The annotator undid this label; it cannot be accepted in their name.", code="retracted")
    try:
        with transaction.atomic():
            return annotation_set_status(annotation=annotation, status=status, actor=actor, reason=reason, now=now)
    except IntegrityError as exc:
        raise Conflict(
            "This annotator has another accepted label on the same text; reject that one first.", code="duplicate_label"
        ) from exc


def _expire_one(attempt: Attempt, now: datetime) -> None:
    attempt.status = Attempt.Status.EXPIRED
    attempt.finished_at = now
    # The span the server saw them at work, not the whole idle lease.
    attempt.wall_seconds = _seconds(attempt.last_active_at - (attempt.shown_at or attempt.claimed_at))
    attempt.save(update_fields=["status", "finished_at", "wall_seconds"])
    hooks.attempt_closed.send(
        hooks.AttemptClosed(attempt=attempt, annotation=None, acting_user_id=attempt.annotator_id)
    )


@transaction.atomic(savepoint=False)  # claim_next calls it on every hand-out: no savepoint
def attempts_expire(*, project: Project | None = None, now: datetime | None = None) -> int:
    """Close claims whose lease ran out; their examples return to the pool. Returns how many."""
    now = now or timezone.now()
    qs = Attempt.objects.filter(status=Attempt.Status.CLAIMED, lease_expires_at__lte=now)
    if project is not None:
        qs = qs.filter(project=project)
    expired = 0
    for attempt in qs.select_for_update(skip_locked=True, of=("self",)).select_related("project"):
        _expire_one(attempt, now)
        expired += 1
    return expired


# --- Reading the instructions ----------------------------------------------------------------


def _idle(record: InstructionReading | ReviewSession, now: datetime) -> bool:
    return now - record.last_active_at > timedelta(seconds=settings.TALLY_IDLE_CUTOFF_SECONDS)


def _close_reading(reading: InstructionReading, *, end: datetime) -> InstructionReading:
    reading.ended_at = end
    reading.wall_seconds = _seconds(end - reading.started_at)
    reading.save(update_fields=["ended_at", "wall_seconds", "active_seconds", "last_active_at", "heartbeat_count"])
    hooks.reading_closed.send(hooks.ReadingClosed(reading=reading))
    return reading


def _open_reading(*, project: Project, annotator) -> InstructionReading | None:
    return (
        InstructionReading.objects.select_for_update()
        .filter(project=project, annotator=annotator, ended_at__isnull=True)
        .first()
    )


@transaction.atomic
def instructions_heartbeat(*, project: Project, annotator, now: datetime | None = None) -> InstructionReading:
    """The instructions are on screen and the annotator active. Starts a reading on the first
    heartbeat; one that went idle longer than TALLY_IDLE_CUTOFF_SECONDS is closed and a new one begun."""
    now = now or timezone.now()
    reading = _open_reading(project=project, annotator=annotator)
    if reading is not None and _idle(reading, now):
        _close_reading(reading, end=reading.last_active_at)
        reading = None
    if reading is None:
        try:
            with transaction.atomic():
                return InstructionReading.objects.create(
                    project=project, annotator=annotator, started_at=now, last_active_at=now, heartbeat_count=1
                )
        except IntegrityError:  # a concurrent heartbeat opened it first
            reading = _open_reading(project=project, annotator=annotator)
    _credit_active_time(reading, now)
    reading.heartbeat_count += 1
    reading.save(update_fields=["active_seconds", "last_active_at", "heartbeat_count"])
    return reading


@transaction.atomic
def instructions_close(*, project: Project, annotator, now: datetime | None = None) -> InstructionReading | None:
    """The annotator left the instructions: close the reading (the ledger records its time)."""
    now = now or timezone.now()
    reading = _open_reading(project=project, annotator=annotator)
    if reading is None:
        return None
    if _idle(reading, now):
        return _close_reading(reading, end=reading.last_active_at)
    _credit_active_time(reading, now)
    return _close_reading(reading, end=now)


def instruction_readings_close_stale(*, project: Project | None = None, now: datetime | None = None) -> int:
    """Close readings whose page stopped sending heartbeats; their time ends at the last one."""
    return close_stale(InstructionReading, _close_reading, project=project, now=now)


def close_stale(model, close, *, project: Project | None = None, now: datetime | None = None) -> int:
    """Close the timed records of `model` (instruction readings, review sessions) whose page
    stopped sending heartbeats, one transaction each, skipping any a heartbeat holds; `close`
    ends one at its last heartbeat."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.TALLY_IDLE_CUTOFF_SECONDS)
    ids = model.objects.filter(ended_at__isnull=True, last_active_at__lt=cutoff)
    if project is not None:
        ids = ids.filter(project=project)
    closed = 0
    for pk in list(ids.values_list("pk", flat=True)):
        with transaction.atomic():
            record = (
                model.objects.select_for_update(skip_locked=True)
                .filter(pk=pk, ended_at__isnull=True, last_active_at__lt=cutoff)
                .first()
            )
            if record is not None:
                close(record, end=record.last_active_at)
                closed += 1
    return closed
