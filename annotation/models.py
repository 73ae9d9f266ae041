"""Projects, their examples, who works on them, and the work itself (attempts, annotations)."""

import hashlib

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from core.roles import Role


class Project(models.Model):
    class LabelMode(models.TextChoices):
        SINGLE = "single", "Single label"
        MULTI = "multi", "Multiple labels"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    instructions = models.TextField(blank=True)
    label_mode = models.CharField(max_length=10, choices=LabelMode.choices, default=LabelMode.SINGLE)
    # How many different annotators should label each example (2-3 for agreement checks).
    annotations_per_example = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    currency = models.CharField(max_length=3, default="USD", help_text="ISO 4217 code")
    # The imported extra columns (Example.meta keys) annotators may see; the rest only admins
    # and auditors see. Empty by default: an id column that spells out the class stays hidden.
    annotator_meta_columns = models.JSONField(default=list, blank=True)
    # Routing by doubt (docs/console.md "Review"): a labeled text gets one more annotator, up to
    # doubt_max_annotators in all, when the current model is unsure of it (margin below
    # doubt_margin) or a label disagrees with a confident model (confidence at least
    # doubt_confidence) or with another label, while the project has spent fewer than
    # doubt_budget extra labels. Off by default.
    doubt_routing = models.BooleanField(default=False)
    doubt_margin = models.FloatField(default=0.2, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    doubt_confidence = models.FloatField(default=0.9, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    doubt_max_annotators = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(2), MaxValueValidator(5)]
    )
    doubt_budget = models.PositiveIntegerField(default=500)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Label(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(max_length=100)
    order = models.PositiveSmallIntegerField(default=0)
    # A retired label is no longer offered for new labels (the labeling page, submissions, bulk
    # accept); the annotations, gold labels and ledger entries that carry it keep it. Labels are
    # never deleted once used (annotation.services.label_retire).
    retired = models.BooleanField(default=False)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project", "order", "id"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="label_unique_name_per_project")]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    Role = Role  # core.roles: defined once for every app

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="membership_one_role_per_project")]

    def __str__(self) -> str:
        return f"{self.user} ({self.role}) in {self.project}"


class Invitation(models.Model):
    """A one-time link that makes whoever opens it a member of a project, with an account they
    already have or a new one they create on the spot. The link's token is shown once, to the
    admin who made it; only its sha256 is stored. Admins never type a username to add someone,
    so adding a member reveals nothing about which usernames exist."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="invitations")
    role = models.CharField(max_length=10, choices=Role.choices)
    note = models.CharField(max_length=200, blank=True, help_text="Who it is for, for the admins' own records.")
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Invitation to {self.project} as {self.role}"

    @staticmethod
    def hash_token(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8")).hexdigest()

    def is_open(self, now) -> bool:
        return self.accepted_at is None and self.revoked_at is None and self.expires_at > now


class ImportBatch(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    class Format(models.TextChoices):
        CSV = "csv"
        TSV = "tsv"
        JSONL = "jsonl"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_batches")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    source_name = models.CharField(max_length=255)
    file_format = models.CharField(max_length=10, choices=Format.choices)
    text_column = models.CharField(max_length=100, default="text")
    label_column = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    rows_read = models.PositiveIntegerField(default=0)
    rows_imported = models.PositiveIntegerField(default=0)
    rows_duplicate = models.PositiveIntegerField(default=0)
    rows_skipped = models.PositiveIntegerField(default=0)
    # Per-row problems: [{"row": n, "reason": "..."}], capped so a bad file cannot bloat it.
    report = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    idempotency_key = models.CharField(max_length=100, null=True, blank=True)
    # How to read the file (header, joined text columns, label map...): annotation.imports.formats.ImportOptions.
    options = models.JSONField(default=dict, blank=True)
    # Exact counts by reason, bytes read, rows/s: the report list above is capped, these are not.
    stats = models.JSONField(default=dict, blank=True)
    # The uploaded file until its import ends (the command reads its file in place instead).
    upload = models.FileField(upload_to="imports/%Y/%m/%d/", max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="import_idempotency_key_unique",
            )
        ]

    def __str__(self) -> str:
        return f"Import {self.pk} of {self.source_name} ({self.status})"


class PriorityReason(models.TextChoices):
    """Why an example holds its queue position (training.ml.sampling.REASONS)."""

    NONE = "", "Not placed (file order)"
    COLD_START = "cold_start", "Cold start: the most typical text of a cluster of the pool"
    RANDOM = "random", "Cold start: a random text after the cluster picks"
    UNCERTAINTY = "uncertainty", "The model is least certain of it"
    DIVERSITY = "diversity", "Uncertain, and unlike the texts picked just before it"
    QC = "qc", "Quality control: a random pick"
    GOLD = "gold", "Quality control: a gold text"
    # Example.routed_reason: why a labeled text was handed to one more annotator.
    DOUBT = "doubt", "Routed again: the model is unsure of it"
    DISAGREEMENT = "disagreement", "Routed again: its labels disagree (with a confident model or each other)"


class Example(models.Model):
    # Indexed by (project, id) below: the example list's order, walked without the table.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="examples", db_index=False)
    text = models.TextField()
    # sha256 of the whitespace-normalised text: duplicates within a project are refused.
    text_hash = models.CharField(max_length=64)
    # A gold label from the import, kept apart from annotators' labels (evaluation, QC).
    gold_label = models.ForeignKey(
        Label, null=True, blank=True, on_delete=models.SET_NULL, related_name="gold_examples"
    )
    meta = models.JSONField(default=dict, blank=True)
    import_batch = models.ForeignKey(
        ImportBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="examples"
    )
    # Accepted human annotations so far; the queue stops offering an example at the
    # project's annotations_per_example. Maintained by annotation.services only.
    submitted_count = models.PositiveIntegerField(default=0)
    # Higher is offered first. Written by the training app: a diverse cold-start order before
    # the first model (every class early, whatever the file's order), then the model's.
    priority = models.FloatField(default=0.0)
    # Why the queue places it there (admins and auditors see it; annotators never do).
    priority_reason = models.CharField(max_length=12, choices=PriorityReason.choices, blank=True, default="")
    # Routing by doubt: labels wanted beyond the project's overlap, and why (admins see it;
    # training rewrites priority_reason, never this). Written by annotation.review only.
    extra_annotations = models.PositiveSmallIntegerField(default=0)
    routed_reason = models.CharField(max_length=12, choices=PriorityReason.choices, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["project", "text_hash"], name="example_unique_text_per_project")]
        indexes = [
            models.Index(fields=["project", "id"], name="example_project_id_idx"),
            models.Index(fields=["project", "submitted_count", "-priority", "id"], name="example_queue_idx"),
            # The queue's main walk: never-labeled examples, best first (annotation/queue.py).
            models.Index(
                fields=["project", "-priority", "id"],
                condition=Q(submitted_count=0),
                name="example_fresh_queue_idx",
            ),
            # The routing budget's sum: only the few routed texts.
            models.Index(fields=["project"], condition=Q(extra_annotations__gt=0), name="example_routed_idx"),
        ]

    def __str__(self) -> str:
        return self.text[:60]


class Attempt(models.Model):
    """One claim of one example by one annotator, with the server's own clock on it."""

    class Status(models.TextChoices):
        CLAIMED = "claimed"
        SUBMITTED = "submitted"
        SKIPPED = "skipped"
        EXPIRED = "expired"
        REVOKED = "revoked"  # closed when the person stopped being allowed to label here

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="attempts")
    example = models.ForeignKey(Example, on_delete=models.CASCADE, related_name="attempts")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="attempts")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.CLAIMED)
    claimed_at = models.DateTimeField()
    lease_expires_at = models.DateTimeField()
    # When the page first showed it (its first heartbeat); a prefetched claim waits unseen.
    shown_at = models.DateTimeField(null=True, blank=True)
    # The last moment the server credited active time (claim, heartbeat or finish).
    last_active_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    # Seconds the annotator was active on this example, summed from heartbeats the server
    # received (gaps longer than TALLY_HEARTBEAT_MAX_GAP_SECONDS count as idle).
    active_seconds = models.DecimalField(max_digits=12, decimal_places=3, default=0)
    # From shown_at (or claimed_at) to the end of the attempt, set when it ends.
    wall_seconds = models.DecimalField(max_digits=12, decimal_places=3, null=True, blank=True)
    heartbeat_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["annotator", "status"], name="attempt_annotator_status_idx"),
            models.Index(fields=["example", "status"], name="attempt_example_status_idx"),
            models.Index(fields=["status", "lease_expires_at"], name="attempt_lease_idx"),
        ]

    def __str__(self) -> str:
        return f"Attempt {self.pk} ({self.status})"


class ActivityClock(models.Model):
    """One per person: the moment up to which their active time has been credited, across
    all their attempts and instruction readings in every project. Every credit locks this row
    and takes only time after it, so two tabs, a prefetched text, the instructions and another
    project open at once share one wall clock: credited time never exceeds wall time."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE, related_name="+")
    credited_until = models.DateTimeField()

    def __str__(self) -> str:
        return f"Activity clock of {self.user_id} at {self.credited_until.isoformat()}"


class InstructionReading(models.Model):
    """A stretch of time an annotator spent on a project's instructions, timed by heartbeats
    like an attempt. The ledger records it when it closes (hooks.reading_closed)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    started_at = models.DateTimeField()
    last_active_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    active_seconds = models.DecimalField(max_digits=12, decimal_places=3, default=0)
    wall_seconds = models.DecimalField(max_digits=12, decimal_places=3, null=True, blank=True)
    heartbeat_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "annotator"],
                condition=Q(ended_at__isnull=True),
                name="reading_one_open_per_annotator",
            )
        ]

    def __str__(self) -> str:
        return f"Instruction reading {self.pk} by {self.annotator_id}"


class Annotation(models.Model):
    class Status(models.TextChoices):
        ACCEPTED = "accepted"
        RETRACTED = "retracted"  # undone by its annotator
        REJECTED = "rejected"  # refused by a project admin

    class Source(models.TextChoices):
        HUMAN = "human"
        # Accepted from the model's prediction by an admin: never counted as human labor.
        MACHINE = "machine"
        # A reviewer's adjudicated label (annotation.review): the text's training target. Its
        # labor is the reviewer's review session, not a piece.
        REVIEW = "review"

    # No index of its own: the (project, status) and (project, created_at) indexes serve it.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="annotations", db_index=False)
    example = models.ForeignKey(Example, on_delete=models.CASCADE, related_name="annotations")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="annotations")
    attempt = models.OneToOneField(Attempt, null=True, blank=True, on_delete=models.PROTECT, related_name="annotation")
    labels = models.ManyToManyField(Label, related_name="annotations")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACCEPTED)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.HUMAN)
    idempotency_key = models.CharField(max_length=100, null=True, blank=True)
    created_at = models.DateTimeField()
    status_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["annotator", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="annotation_idempotency_key_unique",
            ),
            # One live human label per annotator per example.
            models.UniqueConstraint(
                fields=["example", "annotator"],
                condition=Q(status="accepted", source="human"),
                name="annotation_one_accepted_per_annotator",
            ),
        ]
        indexes = [
            models.Index(fields=["project", "status"], name="annotation_project_status_idx"),
            # The label events since a time (training's catch-up, every sweep, on every project):
            # an index walk instead of a scan of the project's labels. Changes are rare, so
            # their index is partial and costs a submission nothing.
            models.Index(fields=["project", "created_at"], name="annotation_project_created_idx"),
            models.Index(
                fields=["project", "status_changed_at"],
                condition=Q(status_changed_at__isnull=False),
                name="annotation_project_changed_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"Annotation {self.pk} on example {self.example_id}"


class ReviewSession(models.Model):
    """A stretch of time an admin spent on the review page, timed by heartbeats and credited
    by the one-clock rule like an attempt or an instruction reading. The ledger records it
    (time category `review`) when it closes (hooks.review_closed)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    started_at = models.DateTimeField()
    last_active_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    active_seconds = models.DecimalField(max_digits=12, decimal_places=3, default=0)
    wall_seconds = models.DecimalField(max_digits=12, decimal_places=3, null=True, blank=True)
    heartbeat_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "reviewer"], condition=Q(ended_at__isnull=True), name="review_one_open_per_reviewer"
            )
        ]

    def __str__(self) -> str:
        return f"Review session {self.pk} by {self.reviewer_id}"

    @property
    def annotator_id(self) -> int:
        """The person whose clock is credited (services._credit_active_time reads this name)."""
        return self.reviewer_id


class ReviewDecision(models.Model):
    """A reviewer's decision on one text: accept its leading label, correct it to another, or
    reject its labels. Accept and correct write the adjudicated label as an annotation of
    source `review`, which training uses instead of the vote; reject refuses every accepted
    human label on the text. Append-only in practice: a later decision supersedes it."""

    class Decision(models.TextChoices):
        ACCEPT = "accept", "Accepted the leading label"
        CORRECT = "correct", "Corrected to another label"
        REJECT = "reject", "Rejected the labels"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    example = models.ForeignKey(Example, on_delete=models.CASCADE, related_name="review_decisions")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(max_length=8, choices=Decision.choices)
    label_ids = models.JSONField(default=list, blank=True)
    adjudication = models.OneToOneField(
        Annotation, null=True, blank=True, on_delete=models.PROTECT, related_name="review_decision"
    )
    session = models.ForeignKey(ReviewSession, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    idempotency_key = models.CharField(max_length=100)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["reviewer", "idempotency_key"], name="review_decision_key_unique"),
        ]

    def __str__(self) -> str:
        return f"Review of example {self.example_id}: {self.decision}"


from .models_welfare import Break, SensitiveCategory, SensitiveMark, WelfareOptOut, WelfarePolicy  # noqa: E402, F401
