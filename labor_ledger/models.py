"""The labor ledger: pay policies, append-only entries chained by hash, settlements.

Append-only means: a row of PayPolicy, LedgerEntry or Settlement is inserted once and never
changed or deleted. A correction is a new row (a reversal, a new policy version). Three
guards enforce it: the model's save()/delete(), its queryset's update()/delete(), and on
PostgreSQL a trigger that refuses UPDATE and DELETE (migration 0002).

Every entry carries enough to answer "labor per model version / per annotator / per period"
in one SQL query: its annotator, attempt and annotation, the period it is booked to, signed
seconds (active, wall, and those that count as hours worked), signed units (examples), the
amount, the floor it earns and the client's price for it. See docs/ledger.md.
"""

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q


class LedgerIsAppendOnly(Exception):
    """Raised when code tries to change or delete a row of an append-only ledger table."""


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise LedgerIsAppendOnly(f"{self.model.__name__} rows are append-only: write a new row instead.")

    def delete(self):
        raise LedgerIsAppendOnly(f"{self.model.__name__} rows are append-only and are never deleted.")

    def bulk_update(self, objs, fields, batch_size=None):
        raise LedgerIsAppendOnly(f"{self.model.__name__} rows are append-only: write new rows instead.")


class AppendOnlyModel(models.Model):
    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise LedgerIsAppendOnly(f"{type(self).__name__} {self.pk} is append-only: write a new row instead.")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise LedgerIsAppendOnly(f"{type(self).__name__} rows are append-only and are never deleted.")


class TimeCategory(models.TextChoices):
    """What a span of labor time was spent on. `submitted`, `retracted` and `rejected` are the
    time of submitted attempts, by what later became of their label."""

    SUBMITTED = "submitted", "Submitted (accepted label)"
    RETRACTED = "retracted", "Submitted, then undone by the annotator"
    REJECTED = "rejected", "Submitted, then rejected by an admin"
    SKIPPED = "skipped", "Skipped"
    EXPIRED = "expired", "Claim expired"
    REVOKED = "revoked", "Claim closed when the person's role changed"
    INSTRUCTION_READING = "instruction_reading", "Reading the instructions"
    BETWEEN_TASKS = "between_tasks", "Between tasks in a work session"
    # Welfare (issue 17, docs/welfare.md): always counted as hours worked, whatever the policy.
    SENSITIVE_SKIPPED = "sensitive_skipped", "Skipped a sensitive text (paid as time worked)"
    BREAK = "break", "Paid break"
    REVIEW = "review", "Reviewing others' labels"


# By default the floor counts active time on submitted, skipped and expired attempts (a
# submitted attempt stays submitted when its label is later retracted or rejected) plus
# instruction reading; time between tasks is recorded but not counted.
DEFAULT_COUNTED_CATEGORIES = [
    TimeCategory.SUBMITTED.value,
    TimeCategory.RETRACTED.value,
    TimeCategory.REJECTED.value,
    TimeCategory.SKIPPED.value,
    TimeCategory.EXPIRED.value,
    TimeCategory.REVOKED.value,
    TimeCategory.INSTRUCTION_READING.value,
    TimeCategory.SENSITIVE_SKIPPED.value,
    TimeCategory.BREAK.value,
]
# Counted and paid as time worked under every policy: a sensitive skip never counts against
# the person, and a paid break is labor (docs/welfare.md).
WELFARE_CATEGORIES = [TimeCategory.SENSITIVE_SKIPPED.value, TimeCategory.BREAK.value]


def default_counted_categories() -> list[str]:
    return list(DEFAULT_COUNTED_CATEGORIES)


def _validate_categories(value) -> None:
    if not isinstance(value, list) or any(c not in TimeCategory.values for c in value):
        raise ValidationError(f"Use a list of time categories from: {', '.join(TimeCategory.values)}.")


class Clock(models.TextChoices):
    ACTIVE = "active", "Active time (server-measured heartbeats)"
    WALL = "wall", "Wall time (from shown to finished)"


RATE = {"max_digits": 14, "decimal_places": 6, "validators": [MinValueValidator(Decimal(0))]}


class PayPolicy(AppendOnlyModel):
    """How a project pays, from `effective_from` on. A change is a new version, never an edit.

    Work is priced by the version in force when its attempt ended (or its reading closed).
    """

    project = models.ForeignKey("annotation.Project", on_delete=models.PROTECT, related_name="pay_policies")
    version = models.PositiveIntegerField()
    effective_from = models.DateTimeField()
    currency = models.CharField(max_length=3)
    # Piece rate per accepted example; a gold item (it has a gold label) or an overlap item
    # (another annotator's label on the same example was accepted first) may pay differently.
    piece_rate = models.DecimalField(default=Decimal(0), **RATE)
    gold_piece_rate = models.DecimalField(null=True, blank=True, **RATE)
    overlap_piece_rate = models.DecimalField(null=True, blank=True, **RATE)
    # Hourly rate, alone or on top of the piece rate, on the clock it names, for the categories listed.
    hourly_rate = models.DecimalField(default=Decimal(0), **RATE)
    hourly_clock = models.CharField(max_length=6, choices=Clock.choices, default=Clock.ACTIVE)
    hourly_categories = models.JSONField(
        default=default_counted_categories, blank=True, validators=[_validate_categories]
    )
    # The floor: a period's pay is topped up to floor_hourly_rate x hours worked, where hours
    # worked are floor_clock seconds in floor_categories.
    floor_hourly_rate = models.DecimalField(default=Decimal(0), **RATE)
    floor_clock = models.CharField(max_length=6, choices=Clock.choices, default=Clock.ACTIVE)
    floor_categories = models.JSONField(
        default=default_counted_categories, blank=True, validators=[_validate_categories]
    )
    # What the client pays the platform: per accepted example and/or per hour worked.
    client_price_per_example = models.DecimalField(null=True, blank=True, **RATE)
    client_price_per_hour = models.DecimalField(null=True, blank=True, **RATE)
    # Review time (TimeCategory.REVIEW) is paid by the hour at this rate; empty: at hourly_rate,
    # or, without one, at floor_hourly_rate. It always counts as hours worked (pricing.price_time).
    review_hourly_rate = models.DecimalField(null=True, blank=True, **RATE)
    # Whether a label an admin rejects stays paid (its piece pay and its time's pay stay, and
    # its time counts toward the floor). No: rejection reverses the piece pay and the time is unpaid.
    pay_rejected_work = models.BooleanField(default=True)
    note = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["project", "version"]
        verbose_name_plural = "pay policies"
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="paypolicy_unique_version"),
            models.UniqueConstraint(fields=["project", "effective_from"], name="paypolicy_unique_effective_from"),
        ]

    def __str__(self) -> str:
        return f"{self.project} pay policy v{self.version} from {self.effective_from:%Y-%m-%d %H:%M}"

    def piece_rate_for(self, *, gold: bool, overlap: bool) -> Decimal:
        if gold and self.gold_piece_rate is not None:
            return self.gold_piece_rate
        if overlap and self.overlap_piece_rate is not None:
            return self.overlap_piece_rate
        return self.piece_rate


class ChainHead(models.Model):
    """The tip of a project's hash chain. Appends lock this row (SELECT ... FOR UPDATE), so
    concurrent writers queue up and the chain cannot fork. Mutable by design; verify_ledger
    checks it against the entries."""

    project = models.OneToOneField("annotation.Project", primary_key=True, on_delete=models.PROTECT, related_name="+")
    seq = models.PositiveBigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="0" * 64)
    # The last entry's MAC (chain.py); empty until the first keyed entry.
    last_mac = models.CharField(max_length=64, default="", db_default="", blank=True)
    # Entries up to legacy_seq were written before the ledger had a key (hash_version 1); the
    # seal, a MAC of (project, legacy_seq, its hash), says so unforgeably (chain.legacy_seal).
    legacy_seq = models.PositiveBigIntegerField(default=0, db_default=0)
    legacy_seal = models.CharField(max_length=100, default="", db_default="", blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Chain head of project {self.project_id} at #{self.seq}"


class LedgerEntry(AppendOnlyModel):
    class Kind(models.TextChoices):
        PIECE_PAY = "piece_pay", "Piece pay"
        HOURLY_PAY = "hourly_pay", "Hourly pay"
        WORK_TIME = "work_time", "Time on accepted work (paid by the piece)"
        UNPAID_TIME = "unpaid_time", "Unpaid time"
        FLOOR_TOP_UP = "floor_top_up", "Floor top-up"
        BONUS = "bonus", "Bonus"
        ADJUSTMENT = "adjustment", "Adjustment"
        REVERSAL = "reversal", "Reversal"

    project = models.ForeignKey("annotation.Project", on_delete=models.PROTECT, related_name="ledger_entries")
    # Position in the project's hash chain, from 1, without gaps.
    seq = models.PositiveBigIntegerField()
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ledger_entries")
    kind = models.CharField(max_length=14, choices=Kind.choices)
    # For a reversal: the kind of the entry it reverses, so reports can group by pay line.
    reversed_kind = models.CharField(max_length=14, choices=Kind.choices, blank=True)
    time_category = models.CharField(max_length=20, choices=TimeCategory.choices, blank=True)
    # What caused it.
    attempt = models.ForeignKey("annotation.Attempt", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    annotation = models.ForeignKey(
        "annotation.Annotation", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reading = models.ForeignKey(
        "annotation.InstructionReading", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reverses = models.OneToOneField("self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversed_by")
    policy = models.ForeignKey(PayPolicy, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # Signed quantities: a reversal negates every one of them.
    active_seconds = models.DecimalField(max_digits=14, decimal_places=3, default=0)
    wall_seconds = models.DecimalField(max_digits=14, decimal_places=3, default=0)
    # Seconds that count as hours worked (toward the floor, and per-hour client prices).
    counted_seconds = models.DecimalField(max_digits=14, decimal_places=3, default=0)
    units = models.SmallIntegerField(default=0, help_text="Accepted examples: +1 on piece pay, -1 on its reversal")
    amount = models.DecimalField(max_digits=18, decimal_places=6, default=0)
    currency = models.CharField(max_length=3)
    floor_amount = models.DecimalField(max_digits=18, decimal_places=6, default=0)
    client_amount = models.DecimalField(max_digits=18, decimal_places=6, default=0)
    # When the labor or decision happened (server clock), and the period it is booked to:
    # the period of occurred_at, or the first one after the annotator's last settled period.
    occurred_at = models.DateTimeField()
    period_start = models.DateField()
    acting_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.TextField(blank=True)
    idempotency_key = models.CharField(max_length=200, unique=True)
    prev_hash = models.CharField(max_length=64)
    entry_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField()
    # 1: the SHA-256 chain only (written before the ledger had a key); 2: also a keyed MAC
    # (HMAC-SHA256 with the key mac_key_id names, chained to the previous entry's; chain.py).
    hash_version = models.PositiveSmallIntegerField(default=1, db_default=1)
    mac = models.CharField(max_length=64, default="", db_default="", blank=True)
    mac_key_id = models.CharField(max_length=16, default="", db_default="", blank=True)

    class Meta:
        ordering = ["project", "seq"]
        verbose_name_plural = "ledger entries"
        constraints = [
            models.UniqueConstraint(fields=["project", "seq"], name="ledgerentry_unique_seq"),
        ]
        indexes = [
            models.Index(fields=["project", "annotator", "period_start"], name="ledger_annotator_period_idx"),
            models.Index(fields=["project", "period_start", "kind"], name="ledger_period_kind_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.kind} {self.amount} {self.currency}"

    @property
    def pay_line(self) -> str:
        """The kind this entry counts under in a wage bill (a reversal counts under its original's)."""
        return self.reversed_kind or self.kind


class Settlement(AppendOnlyModel):
    """A closed period for one annotator in one project. Written once; settling again changes nothing."""

    project = models.ForeignKey("annotation.Project", on_delete=models.PROTECT, related_name="settlements")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="settlements")
    period = models.DateField(help_text="First UTC day of the period")
    currency = models.CharField(max_length=3)
    gross = models.DecimalField(
        max_digits=18, decimal_places=6, help_text="Entries booked to the period before settlement"
    )
    floor_target = models.DecimalField(max_digits=18, decimal_places=6)
    top_up = models.DecimalField(max_digits=18, decimal_places=6)
    rounding = models.DecimalField(max_digits=18, decimal_places=6)
    payable = models.DecimalField(max_digits=18, decimal_places=6, help_text="Rounded to the currency's minor unit")
    active_seconds = models.DecimalField(max_digits=14, decimal_places=3)
    wall_seconds = models.DecimalField(max_digits=14, decimal_places=3)
    counted_seconds = models.DecimalField(max_digits=14, decimal_places=3)
    examples = models.IntegerField()
    client_amount = models.DecimalField(max_digits=18, decimal_places=6)
    top_up_entry = models.OneToOneField(LedgerEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    rounding_entry = models.OneToOneField(
        LedgerEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    settled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["project", "period", "annotator"]
        constraints = [
            models.UniqueConstraint(fields=["project", "annotator", "period"], name="settlement_once_per_period"),
        ]

    def __str__(self) -> str:
        return f"Settlement {self.period} for {self.annotator_id}: {self.payable} {self.currency}"

    @property
    def effective_hourly_rate(self) -> Decimal | None:
        if not self.counted_seconds:
            return None
        return self.payable * 3600 / self.counted_seconds


class Balance(models.Model):
    """One annotator's account in one project: the running total of their entries, kept in the
    append transaction. Mutable by design; verify_ledger recomputes it from the entries."""

    project = models.ForeignKey("annotation.Project", on_delete=models.PROTECT, related_name="+")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    currency = models.CharField(max_length=3)
    amount = models.DecimalField(max_digits=18, decimal_places=6, default=0)
    entry_count = models.PositiveIntegerField(default=0)
    last_seq = models.PositiveBigIntegerField(default=0)
    # When the annotator's latest submitted or skipped task ended: the start of any time
    # "between tasks" before their next one.
    last_task_end = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "annotator"], name="balance_one_per_annotator")]

    def __str__(self) -> str:
        return f"Balance of {self.annotator_id} in {self.project_id}: {self.amount} {self.currency}"


# --- derived, for reports (labor_ledger/labor_index.py, labor_ledger/reports/, docs/labor-card.md) ---


class VersionLaborIndex(models.Model):
    """Marks a model version whose label deltas (VersionLabelDelta) are computed. Derived data:
    a version's manifest never changes, so neither do its deltas; nothing here is part of the
    books. Written by the worker when the version is registered (labor_index.py); after
    deleting it, `manage.py labor_index_backfill` writes it again (reports never do)."""

    version = models.OneToOneField(
        "training.ModelVersion", primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    added = models.PositiveIntegerField(default=0)
    dropped = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(default=0.0, help_text="How long computing the deltas took")
    computed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"Labor index of version {self.version_id}: +{self.added} -{self.dropped}"


class VersionLabelDelta(models.Model):
    """How a model version's training labels differ from its parent's: +1 for an annotation the
    version added, -1 for one it dropped (a version without a parent: +1 for each). Summed
    along a version's ancestors these give exactly its manifest, so reports join the ledger
    with ~one row per label instead of every version's whole manifest. The annotator and
    source are the annotation's own (they never change), copied to save a join."""

    version = models.ForeignKey("training.ModelVersion", on_delete=models.CASCADE, related_name="+")
    annotation = models.ForeignKey("annotation.Annotation", on_delete=models.PROTECT, related_name="+")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=False)
    human = models.BooleanField()
    sign = models.SmallIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["version", "annotation"], name="version_label_delta_unique"),
            models.CheckConstraint(condition=Q(sign__in=[1, -1]), name="version_label_delta_sign"),
        ]

    def __str__(self) -> str:
        return f"v{self.version_id} {'+' if self.sign > 0 else '-'}annotation {self.annotation_id}"


class LedgerVerification(AppendOnlyModel):
    """A record that someone recomputed the project's chain, balances and settlements (the
    console's Verify button): when, by whom, what it found and the chain head it reached. The
    books themselves are not touched; the record lets a dashboard say when they were last checked."""

    project = models.ForeignKey("annotation.Project", on_delete=models.PROTECT, related_name="+")
    verified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    ok = models.BooleanField()
    entries = models.PositiveBigIntegerField()
    head_seq = models.PositiveBigIntegerField()
    head_hash = models.CharField(max_length=64)
    problems = models.JSONField(default=list, blank=True)
    seconds = models.FloatField(default=0.0)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["project", "-created_at"]
        indexes = [models.Index(fields=["project", "-created_at"], name="ledger_verification_idx")]

    def __str__(self) -> str:
        return f"Verification of project {self.project_id} at #{self.head_seq}: {'ok' if self.ok else 'problems'}"


# --- time disputes (issue 14, item 6; docs/ledger.md "Time disputes") ---


class TimeDispute(AppendOnlyModel):
    """An annotator contests the time the server measured: one closed attempt, or one UTC day,
    with the duration they claim and a note. Written once; its outcome is a separate row
    (TimeDisputeDecision), so the record of what was claimed never changes. Open while it has
    no decision."""

    project = models.ForeignKey("annotation.Project", on_delete=models.PROTECT, related_name="+")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="time_disputes")
    # Exactly one subject: an attempt, or a whole day (`attempt` empty).
    attempt = models.ForeignKey("annotation.Attempt", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    day = models.DateField(help_text="The UTC day disputed (for an attempt: the day it ended)")
    recorded_seconds = models.DecimalField(
        max_digits=14, decimal_places=3, help_text="Active seconds the ledger recorded when the dispute was filed"
    )
    claimed_seconds = models.DecimalField(max_digits=14, decimal_places=3)
    note = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["project", "-created_at"]
        indexes = [models.Index(fields=["project", "annotator", "day"], name="time_dispute_day_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(claimed_seconds__gt=0), name="time_dispute_claim_positive"),
        ]

    def __str__(self) -> str:
        subject = f"attempt {self.attempt_id}" if self.attempt_id else f"day {self.day}"
        return f"Time dispute {self.pk} on {subject}: {self.claimed_seconds} s claimed"

    @property
    def subject(self) -> str:
        return "attempt" if self.attempt_id else "day"


class TimeDisputeDecision(AppendOnlyModel):
    """An admin's decision on a dispute, at most one (the one-to-one makes a second decision
    impossible). Accepting writes an adjustment entry to the ledger, which names the admin and
    the dispute; rejecting needs a reason."""

    class Outcome(models.TextChoices):
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"

    dispute = models.OneToOneField(TimeDispute, primary_key=True, on_delete=models.PROTECT, related_name="decision")
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reason = models.TextField(blank=True)
    granted_seconds = models.DecimalField(max_digits=14, decimal_places=3, default=0)
    entry = models.OneToOneField(LedgerEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"Dispute {self.dispute_id} {self.outcome}"


# --- signed checkpoints of the chain heads (issue 15, item 7; labor_ledger/checkpoints.py) ---


class LedgerCheckpoint(AppendOnlyModel):
    """A project's chain head at a moment, signed with the checkpoint key (Ed25519; the key never
    lives in the database). Also appended to a file outside the database for an outside witness.
    verify_ledger checks that the chain still reaches each one, so truncating the ledger or
    rolling it back to an older head is caught; a `verified` one is where the next incremental
    verification resumes."""

    class Reason(models.TextChoices):
        SETTLEMENT = "settlement", "Settlement"
        SCHEDULE = "schedule", "Schedule"
        VERIFIED = "verified", "Verified"
        MANUAL = "manual", "Manual"

    project = models.ForeignKey("annotation.Project", on_delete=models.PROTECT, related_name="+")
    seq = models.PositiveBigIntegerField()
    entry_hash = models.CharField(max_length=64)
    mac = models.CharField(max_length=64, blank=True)
    reason = models.CharField(max_length=12, choices=Reason.choices)
    created_at = models.DateTimeField()
    key_id = models.CharField(max_length=16)
    signature = models.CharField(max_length=100)

    class Meta:
        ordering = ["project", "-seq", "-created_at"]
        indexes = [models.Index(fields=["project", "-seq"], name="ledger_checkpoint_idx")]

    def __str__(self) -> str:
        return f"Checkpoint of project {self.project_id} at #{self.seq} ({self.reason})"


# --- derived, stamped: the per-version report's figures as of a ledger sequence number ---------
#
# labor_ledger/labor_summary.py writes these when a model version is registered (and rolls every
# earlier version forward to the same ledger position); the per-version report reads them and adds
# only the ledger entries appended after the stamp. Rows are never changed (the ORM refuses; on
# PostgreSQL a trigger refuses UPDATE); a version deleted with its project takes its rows along.

SUM_SECONDS = {"max_digits": 30, "decimal_places": 3, "default": 0}  # sums of numeric(14,3): the same scale
SUM_MONEY = {"max_digits": 36, "decimal_places": 6, "default": 0}  # sums of numeric(18,6)
SUM_RATE_WEIGHT = {"max_digits": 44, "decimal_places": 9, "default": 0}  # seconds (3) x rate (6)


class LaborSummary(AppendOnlyModel):
    """The project's labor figures summed up to ledger entry #seq (every entry with seq <= seq):
    its rows (below) hold, per model version, what the per-version report would read at that
    point, and the per-(annotator, period) sums of the entries from #from_seq+1 to #seq. One
    summary's from_seq is the previous one's seq, so the chunks tile the ledger from #1."""

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="+")
    seq = models.PositiveBigIntegerField()
    from_seq = models.PositiveBigIntegerField()
    computed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "seq"], name="labor_summary_unique_seq"),
            # Two summaries never start from the same position (the first, at #0 before any
            # entry, covers nothing and is the only one whose seq is its from_seq).
            models.UniqueConstraint(
                fields=["project", "from_seq"],
                condition=Q(seq__gt=models.F("from_seq")),
                name="labor_summary_unique_from_seq",
            ),
        ]

    def __str__(self) -> str:
        return f"Labor summary of project {self.project_id} at #{self.seq}"


class VersionLaborStamp(AppendOnlyModel):
    """A model version whose figures are written in a summary (its rows there are complete)."""

    summary = models.ForeignKey(LaborSummary, on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey("training.ModelVersion", on_delete=models.CASCADE, related_name="+")
    seconds = models.FloatField(default=0.0, help_text="How long computing the version's rows took")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["summary", "version"], name="version_labor_stamp_unique")]

    def __str__(self) -> str:
        return f"Version {self.version_id} in labor summary {self.summary_id}"


class VersionDeltaSum(AppendOnlyModel):
    """Per (summary, version, annotator): the version's label deltas (labels it added minus
    those it dropped, per annotator) and the ledger's entries on them, signed."""

    summary = models.ForeignKey(LaborSummary, on_delete=models.CASCADE, related_name="+", db_index=False)
    version = models.ForeignKey("training.ModelVersion", on_delete=models.CASCADE, related_name="+", db_index=False)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=False)
    labels = models.BigIntegerField(default=0)
    human_labels = models.BigIntegerField(default=0)
    new_labels = models.BigIntegerField(default=0)
    dropped_labels = models.BigIntegerField(default=0)
    active_seconds = models.DecimalField(**SUM_SECONDS)
    wall_seconds = models.DecimalField(**SUM_SECONDS)
    counted_seconds = models.DecimalField(**SUM_SECONDS)
    examples = models.BigIntegerField(default=0)
    piece_pay = models.DecimalField(**SUM_MONEY)
    hourly_pay = models.DecimalField(**SUM_MONEY)
    pay = models.DecimalField(**SUM_MONEY)
    floor_amount = models.DecimalField(**SUM_MONEY)
    client_amount = models.DecimalField(**SUM_MONEY)
    floor_rate_weight = models.DecimalField(**SUM_RATE_WEIGHT)
    new_active_seconds = models.DecimalField(**SUM_SECONDS)
    new_wall_seconds = models.DecimalField(**SUM_SECONDS)
    new_counted_seconds = models.DecimalField(**SUM_SECONDS)
    new_pay = models.DecimalField(**SUM_MONEY)
    new_client_amount = models.DecimalField(**SUM_MONEY)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["summary", "version", "annotator"], name="version_delta_sum_unique")
        ]

    def __str__(self) -> str:
        return f"Deltas of version {self.version_id} by {self.annotator_id} in summary {self.summary_id}"


class VersionEmbodiedSum(AppendOnlyModel):
    """Per (summary, version, annotator): the labor embodied in the version's labels (its
    deltas summed along its ancestors: exactly its manifest), as of the summary's seq."""

    summary = models.ForeignKey(LaborSummary, on_delete=models.CASCADE, related_name="+", db_index=False)
    version = models.ForeignKey("training.ModelVersion", on_delete=models.CASCADE, related_name="+", db_index=False)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=False)
    labels = models.BigIntegerField(default=0)
    human_labels = models.BigIntegerField(default=0)
    active_seconds = models.DecimalField(**SUM_SECONDS)
    wall_seconds = models.DecimalField(**SUM_SECONDS)
    counted_seconds = models.DecimalField(**SUM_SECONDS)
    examples = models.BigIntegerField(default=0)
    piece_pay = models.DecimalField(**SUM_MONEY)
    hourly_pay = models.DecimalField(**SUM_MONEY)
    pay = models.DecimalField(**SUM_MONEY)
    floor_amount = models.DecimalField(**SUM_MONEY)
    client_amount = models.DecimalField(**SUM_MONEY)
    floor_rate_weight = models.DecimalField(**SUM_RATE_WEIGHT)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["summary", "version", "annotator"], name="version_embodied_sum_unique")
        ]

    def __str__(self) -> str:
        return f"Labor of version {self.version_id} by {self.annotator_id} in summary {self.summary_id}"


class VersionRecordedSum(AppendOnlyModel):
    """Per (summary, version, time category, unpaid or not): the time on the books before the
    version's training set was read (entries that occurred before its snapshot_at)."""

    summary = models.ForeignKey(LaborSummary, on_delete=models.CASCADE, related_name="+", db_index=False)
    version = models.ForeignKey("training.ModelVersion", on_delete=models.CASCADE, related_name="+", db_index=False)
    time_category = models.CharField(max_length=20)
    unpaid = models.BooleanField()
    active_seconds = models.DecimalField(**SUM_SECONDS)
    wall_seconds = models.DecimalField(**SUM_SECONDS)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["summary", "version", "time_category", "unpaid"], name="version_recorded_sum_unique"
            )
        ]

    def __str__(self) -> str:
        return f"Time before version {self.version_id} ({self.time_category}) in summary {self.summary_id}"


class LedgerPeriodSum(AppendOnlyModel):
    """Per (summary, annotator, period): the entries from the summary's #from_seq+1 to #seq
    (the annotators' rates and the projected top-ups of periods not settled yet)."""

    summary = models.ForeignKey(LaborSummary, on_delete=models.CASCADE, related_name="+", db_index=False)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=False)
    period_start = models.DateField()
    counted_seconds = models.DecimalField(**SUM_SECONDS)
    floor_top_up = models.DecimalField(**SUM_MONEY)
    bonus = models.DecimalField(**SUM_MONEY)
    adjustment = models.DecimalField(**SUM_MONEY)
    amount = models.DecimalField(**SUM_MONEY)
    floor_amount = models.DecimalField(**SUM_MONEY)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["summary", "annotator", "period_start"], name="ledger_period_sum_unique")
        ]

    def __str__(self) -> str:
        return f"Entries of {self.annotator_id} in {self.period_start} in summary {self.summary_id}"
