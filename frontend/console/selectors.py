"""Reads for the console pages that combine several apps (only the top layer may import them
all). Each takes a project the caller already resolved through `access.project_page`."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, Sum, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from annotation.models import Annotation, Attempt, Example, Membership, Project
from labor_ledger import periods
from labor_ledger import selectors as ledger_selectors
from labor_ledger.models import LedgerEntry, Settlement
from training import selectors as training_selectors
from training.models import TrainingRun


@dataclass(frozen=True)
class Progress:
    texts: int = 0
    labeled: int = 0  # texts with all the labels the overlap asks for
    remaining_labels: int = 0  # human labels still needed to reach the overlap on every text

    @property
    def percent(self) -> int:
        return int(100 * self.labeled / self.texts) if self.texts else 0


def progress_of(*, projects) -> dict[int, Progress]:
    """Texts, fully labeled texts and labels still needed, per project, in one query."""
    needed = Greatest(F("project__annotations_per_example") - F("submitted_count"), Value(0))
    rows = (
        Example.objects.filter(project__in=projects)
        .order_by()
        .values("project_id")
        .annotate(
            texts=Count("id"),
            labeled=Count("id", filter=Q(submitted_count__gte=F("project__annotations_per_example"))),
            remaining=Coalesce(Sum(needed), Value(0), output_field=IntegerField()),
        )
    )
    return {r["project_id"]: Progress(r["texts"], r["labeled"], r["remaining"]) for r in rows}


def week_start(now: datetime) -> datetime:
    """Monday 00:00 UTC of this week."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=today.weekday())


@dataclass
class AnnotatorRow:
    user_id: int
    username: str
    role: str
    today: int = 0
    week: int = 0
    open_claims: int = 0
    below_floor: bool = False


@dataclass
class Alert:
    level: str  # "warn" or "info"
    text: str
    link: str = ""  # a URL name in the console namespace, or ""


@dataclass
class Dashboard:
    project: Project
    progress: Progress
    annotators: list[AnnotatorRow]
    current_version: object
    config: object
    runs: list
    last_verification: object
    policy: object
    alerts: list[Alert] = field(default_factory=list)


def labels_per_annotator(*, project: Project, now: datetime) -> list[AnnotatorRow]:
    """Every member who labels, with accepted human labels today and this week (UTC), open
    claims, and whether their pay this period is below the floor so far."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    human = Q(
        annotations__project=project,
        annotations__source=Annotation.Source.HUMAN,
        annotations__status=Annotation.Status.ACCEPTED,
    )
    members = (
        Membership.objects.filter(project=project, role__in=[Membership.Role.ANNOTATOR, Membership.Role.ADMIN])
        .select_related("user")
        .order_by("user__username")
    )
    counts = {
        row["id"]: row
        for row in get_user_model()
        .objects.filter(memberships__project=project)
        .order_by()
        .values("id")
        .annotate(
            today=Count("annotations", filter=human & Q(annotations__created_at__gte=today)),
            week=Count("annotations", filter=human & Q(annotations__created_at__gte=week_start(now))),
        )
    }
    claims = dict(
        Attempt.objects.filter(project=project, status=Attempt.Status.CLAIMED, lease_expires_at__gt=now)
        .order_by()
        .values("annotator_id")
        .annotate(n=Count("id"))
        .values_list("annotator_id", "n")
    )
    below = below_floor_this_period(project=project, now=now)
    return [
        AnnotatorRow(
            user_id=m.user_id,
            username=m.user.username,
            role=m.get_role_display(),
            today=counts.get(m.user_id, {}).get("today", 0),
            week=counts.get(m.user_id, {}).get("week", 0),
            open_claims=claims.get(m.user_id, 0),
            below_floor=m.user_id in below,
        )
        for m in members
    ]


def below_floor_this_period(*, project: Project, now: datetime) -> set[int]:
    """Annotators whose pay booked to the current period is below the floor they earned so far."""
    entries = LedgerEntry.objects.filter(project=project, period_start=periods.period_of(now))
    return {
        row["annotator_id"]
        for row in ledger_selectors.labor_totals(entries=entries, by=["annotator_id"])
        if row["floor"] > row["pay"]
    }


def dashboard(*, project: Project, now: datetime | None = None) -> Dashboard:
    now = now or timezone.now()
    progress = progress_of(projects=[project]).get(project.pk, Progress())
    config = training_selectors.training_config(project=project)
    board = Dashboard(
        project=project,
        progress=progress,
        annotators=labels_per_annotator(project=project, now=now),
        current_version=training_selectors.current_version(project=project),
        config=config,
        runs=list(training_selectors.runs_for(project=project)[:5]),
        last_verification=ledger_selectors.last_verification(project=project),
        policy=ledger_selectors.policy_current(project=project, now=now),
    )
    board.alerts = alerts(board=board, now=now)
    return board


def alerts(*, board: Dashboard, now: datetime) -> list[Alert]:
    out: list[Alert] = []
    project, config = board.project, board.config
    if not board.progress.texts:
        out.append(Alert("warn", "The project has no texts yet: import some.", "console:import"))
    if board.policy is None:
        out.append(Alert("warn", "No pay policy is set: time is recorded but nothing is paid.", "console:pay"))
    if not config.enabled:
        out.append(Alert("warn", "Training is blocked because automatic retraining is off.", "console:models"))
    elif board.current_version is None:
        accepted = Annotation.labels.through.objects.filter(
            annotation__project=project, annotation__status=Annotation.Status.ACCEPTED
        )
        n = accepted[: config.min_labels].count()
        kinds = accepted.values("label_id").distinct()[:2].count()
        if n < config.min_labels or kinds < 2:
            out.append(
                Alert(
                    "info",
                    f"Training is blocked because the first model needs {config.min_labels} labels over at least "
                    f"two labels (there are {n} over {kinds}).",
                    "console:models",
                )
            )
    failed = next((r for r in board.runs if r.status == TrainingRun.Status.FAILED), None)
    if failed is not None and board.runs and board.runs[0].pk == failed.pk:
        out.append(Alert("warn", f"The latest training run failed: {failed.error[:200]}", "console:models"))
    contested = (
        Example.objects.filter(project=project, submitted_count__gte=2)  # only these can be disputed
        .annotate(
            n_labels=Count(
                "annotations__labels",
                filter=Q(annotations__status=Annotation.Status.ACCEPTED, annotations__source=Annotation.Source.HUMAN),
                distinct=True,
            )
        )
        .filter(n_labels__gt=1)
    )
    if project.label_mode == Project.LabelMode.SINGLE:
        disputed = contested[:1000].count()
        if disputed:
            out.append(Alert("info", f"{disputed} text{'s' if disputed != 1 else ''} disputed: annotators disagree."))
    open_disputes = ledger_selectors.open_disputes_count(project=project)
    if open_disputes:
        out.append(
            Alert(
                "warn",
                f"{open_disputes} time dispute{'s' if open_disputes != 1 else ''} to decide: annotators contest "
                "the time recorded for them.",
                "console:disputes",
            )
        )
    has_entries = LedgerEntry.objects.filter(project=project).exists()
    verified = board.last_verification
    if has_entries and verified is None:
        out.append(Alert("warn", "The ledger has never been verified.", "console:ledger"))
    elif verified is not None and not verified.ok:
        out.append(
            Alert(
                "warn",
                f"The last ledger verification found problems ({verified.created_at:%Y-%m-%d %H:%M} UTC).",
                "console:ledger",
            )
        )
    elif verified is not None and has_entries and now - verified.created_at > timedelta(days=1):
        out.append(
            Alert(
                "warn",
                f"The ledger has not been verified since {verified.created_at:%Y-%m-%d %H:%M} UTC.",
                "console:ledger",
            )
        )
    if unsettled_periods(project=project, now=now):
        out.append(Alert("info", "Some ended periods are not settled yet.", "console:ledger"))
    below = sum(1 for a in board.annotators if a.below_floor)
    if below:
        out.append(
            Alert(
                "info",
                f"{below} annotator{'s are' if below != 1 else ' is'} below the floor this period "
                "(settlement tops them up).",
            )
        )
    return out


# --- training runs, for the Models page and its poll -----------------------------------------------

# The stages a run reports (training.pipeline), in order: the progress bar's steps.
RUN_STAGES = ("embedding", "snapshot", "featurizing", "training", "evaluating", "saving", "scoring", "embedding pool")
ACTIVE_RUN = (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING)


def run_percent(run: TrainingRun) -> int:
    """How far a run has come, 0-100, from its stage and, while embedding, its embedded count."""
    if run.status == TrainingRun.Status.SUCCEEDED:
        return 100
    if run.status == TrainingRun.Status.QUEUED or run.stage not in RUN_STAGES:
        return 0
    step = RUN_STAGES.index(run.stage)
    within = 0.0
    progress = run.progress or {}
    if run.stage.startswith("embedding") and progress.get("to_embed"):
        within = min(1.0, progress.get("embedded", 0) / progress["to_embed"])
    return int(100 * (step + within) / len(RUN_STAGES))


@dataclass
class RunRow:
    run: TrainingRun
    percent: int
    version: object  # its ModelVersion, or None


def runs_page(*, project: Project, limit: int = 20) -> list[RunRow]:
    rows = []
    for run in training_selectors.runs_for(project=project).select_related("requested_by")[:limit]:
        version = getattr(run, "model_version", None)  # the reverse one-to-one: None before it registers
        rows.append(RunRow(run=run, percent=run_percent(run), version=version))
    return rows


# --- pay: what a policy would pay at this project's speed ---------------------------------------------


def median_seconds_per_label(*, project: Project, sample: int = 2000) -> float | None:
    """The median active seconds of the project's latest submitted human attempts (a sample:
    the preview needs a typical speed, not every attempt of a million)."""
    seconds = sorted(
        float(s)
        for s in Attempt.objects.filter(project=project, status=Attempt.Status.SUBMITTED, active_seconds__gt=0)
        .order_by("-id")
        .values_list("active_seconds", flat=True)[:sample]
    )
    if not seconds:
        return None
    mid = len(seconds) // 2
    return seconds[mid] if len(seconds) % 2 else (seconds[mid - 1] + seconds[mid]) / 2


@dataclass
class PayPreview:
    seconds_per_label: float | None
    assumed: bool  # no labels yet: a stand-in speed
    labels_per_hour: float
    piece_per_hour: Decimal
    hourly: Decimal
    effective: Decimal
    floor: Decimal

    @property
    def below_floor(self) -> bool:
        return self.floor > 0 and self.piece_per_hour + self.hourly < self.floor


ASSUMED_SECONDS_PER_LABEL = 30.0


def pay_preview(*, project: Project, piece_rate, hourly_rate, floor_hourly_rate) -> PayPreview:
    """The effective hourly wage a policy pays at this project's median seconds per label (or
    an assumed 30 s before anyone has labeled), and whether piece pay alone is below the floor."""
    median = median_seconds_per_label(project=project)
    seconds = median or ASSUMED_SECONDS_PER_LABEL
    per_hour = 3600 / seconds
    piece = (Decimal(piece_rate or 0) * Decimal(str(per_hour))).quantize(Decimal("0.01"))
    hourly = Decimal(hourly_rate or 0)
    floor = Decimal(floor_hourly_rate or 0)
    return PayPreview(
        seconds_per_label=median,
        assumed=median is None,
        labels_per_hour=per_hour,
        piece_per_hour=piece,
        hourly=hourly,
        effective=max(piece + hourly, floor),
        floor=floor,
    )


# --- the ledger's entries, a page at a time --------------------------------------------------------------

LEDGER_PAGE = 50


def ledger_page(*, project: Project, annotator: str = "", kind: str = "", category: str = "", period=None, before=None):
    """One page of the project's entries, newest first, found by sequence number (keyset: page
    10,000 costs what page 1 does). Returns (entries, the `before` of the next page or None)."""
    qs = LedgerEntry.objects.filter(project=project)
    if annotator:
        qs = qs.filter(annotator__username=annotator)
    if kind:
        qs = qs.filter(kind=kind)
    if category:
        qs = qs.filter(time_category=category)
    if period:
        qs = qs.filter(period_start=period)
    if before:
        qs = qs.filter(seq__lt=before)
    rows = list(qs.select_related("annotator", "acting_user").order_by("-seq")[: LEDGER_PAGE + 1])
    more = len(rows) > LEDGER_PAGE
    rows = rows[:LEDGER_PAGE]
    return rows, (rows[-1].seq if more else None)


def unsettled_periods(*, project: Project, now: datetime | None = None, limit: int = 20) -> list:
    """Ended periods with entries some annotator's settlement has not closed yet (oldest first)."""
    now = now or timezone.now()
    settled = Settlement.objects.filter(
        project=project, annotator=OuterRef("annotator"), period=OuterRef("period_start")
    )
    return list(
        LedgerEntry.objects.filter(project=project, period_start__lt=periods.period_of(now))
        .exclude(Exists(settled))
        .order_by("period_start")
        .values_list("period_start", flat=True)
        .distinct()[:limit]
    )
