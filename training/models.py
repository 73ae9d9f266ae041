"""Training runs, pinned model versions, their manifests, cached embeddings and predictions.

A ModelVersion is registered once, by the run that trained it, and never changes: its
manifest (the annotations it was trained on) is written in the same transaction, and the
weights file it names is content-hashed. What changes over time lives elsewhere: which
version is current (ProjectTrainingConfig), and the pool's predictions (Prediction).
"""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from annotation.models import Annotation, Example, Label, Project


class ModelKind(models.TextChoices):
    HASHED = "hashed", "From scratch: hashed words and bigrams + linear layer"
    MINILM = "minilm", "Frozen all-MiniLM-L6-v2 encoder + small head"
    MINILM_FT = "minilm-ft", "Fine-tuned all-MiniLM-L6-v2 (deep loop)"


class Loop(models.TextChoices):
    FAST = "fast", "Fast loop"
    DEEP = "deep", "Deep loop (encoder fine-tuned)"


class Aggregation(models.TextChoices):
    """How several annotators' labels of a text become its training target (core.aggregation)."""

    MAJORITY = "majority", "Majority vote (vote shares)"
    DAWID_SKENE = "dawid_skene", "Dawid-Skene (weighs annotators by their estimated confusion)"


class ProjectTrainingConfig(models.Model):
    """Per-project training settings, and the pointer to the current model version."""

    class Sampling(models.TextChoices):
        MARGIN = "margin", "Margin (smallest gap between the top two labels)"
        ENTROPY = "entropy", "Entropy"
        RANDOM = "random", "Random"

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="training_config")
    model_kind = models.CharField(max_length=10, choices=ModelKind.choices[:2], default=ModelKind.MINILM)
    sampling = models.CharField(max_length=10, choices=Sampling.choices, default=Sampling.MARGIN)
    enabled = models.BooleanField(default=True, help_text="Retrain automatically as labels arrive.")
    # A run is queued once this many label changes have arrived since the last one was queued.
    retrain_every_n_labels = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    # Every N new labels a deep (fine-tuning) run is queued instead of a fast one; 0 = only on request.
    deep_every_n_labels = models.PositiveIntegerField(default=0)
    min_labels = models.PositiveIntegerField(default=4, validators=[MinValueValidator(2)])
    # Share of the queue's positions given to random/gold picks for quality control.
    qc_share = models.FloatField(default=0.1, validators=[MinValueValidator(0.0), MaxValueValidator(0.5)])
    # Share of labeled examples kept out of training for evaluation (of the gold texts, when imported).
    holdout_share = models.FloatField(default=0.2, validators=[MinValueValidator(0.0), MaxValueValidator(0.5)])
    # With imported gold labels: at most this many of them are held out (see selectors.gold_eval_size).
    max_gold_eval = models.PositiveIntegerField(default=2000)
    train_on_machine_labels = models.BooleanField(default=True)
    # Training targets from the labels: majority vote, or Dawid-Skene (single-label projects).
    aggregation = models.CharField(max_length=12, choices=Aggregation.choices, default=Aggregation.MAJORITY)
    hyperparams = models.JSONField(default=dict, blank=True)
    seed = models.IntegerField(default=0)
    # Mutable state, written by training.services only.
    current_version = models.ForeignKey(
        "ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The encoder whose cached embeddings fast runs use: the frozen MiniLM, or a deep version's.
    encoder_key = models.CharField(max_length=80, blank=True)
    # The debounce's counts of label events live in Redis (training.debounce), not here.
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Training config of {self.project}"


class TrainingRun(models.Model):
    """The job's truth; the Celery message only rings the bell."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    class Trigger(models.TextChoices):
        LABELS = "labels", "New labels"
        ADMIN = "admin", "Requested by an admin"
        SCHEDULE = "schedule", "Every N labels"
        EMBEDDINGS = "embeddings", "New examples embedded"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    loop = models.CharField(max_length=4, choices=Loop.choices, default=Loop.FAST)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.LABELS)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The first label event this run answers (freshness is measured from here).
    first_event_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Fencing: each claim draws a new token; only the holder may finish the run.
    claim_token = models.CharField(max_length=36, blank=True)
    claimed_by = models.CharField(max_length=200, blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    stage = models.CharField(max_length=40, blank=True)  # embedding, training, scoring, ...
    progress = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # The debounce: at most one queued run per project, enforced by the database.
            models.UniqueConstraint(fields=["project"], condition=Q(status="queued"), name="training_one_queued_run"),
        ]
        indexes = [models.Index(fields=["project", "status"], name="training_run_status_idx")]

    def __str__(self) -> str:
        return f"Training run {self.pk} ({self.status})"


class ModelVersion(models.Model):
    """One trained model, pinned: nothing here changes after registration."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    sequence = models.PositiveIntegerField()
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.RESTRICT, related_name="children")
    run = models.OneToOneField(TrainingRun, on_delete=models.PROTECT, related_name="model_version")
    kind = models.CharField(max_length=10, choices=ModelKind.choices)
    loop = models.CharField(max_length=4, choices=Loop.choices)
    hyperparams = models.JSONField(default=dict)
    classes = models.JSONField(default=list, help_text="Label ids in the order of the model's outputs.")
    encoder_key = models.CharField(max_length=80, blank=True, help_text="Embeddings it reads (minilm kinds).")
    device = models.CharField(max_length=10)  # cpu | cuda
    device_name = models.CharField(max_length=200, blank=True)
    embedding_seconds = models.FloatField(default=0.0)
    training_seconds = models.FloatField(default=0.0)
    scoring_seconds = models.FloatField(default=0.0)  # held-out evaluation + pool scoring
    # Background pool embedding attributed to this version (EmbeddingWork: each chunk's seconds
    # go to the first version registered after it; docs/training.md "Compute counted").
    pool_embedding_seconds = models.FloatField(default=0.0)
    metrics = models.JSONField(default=dict)
    n_annotations = models.PositiveIntegerField(default=0)
    n_examples = models.PositiveIntegerField(default=0)
    n_annotators = models.PositiveIntegerField(default=0)
    manifest_hash = models.CharField(max_length=64)
    # Which aggregation made its training targets from the manifest's labels (part of the
    # manifest hash when not the majority vote: the same labels, another target, another hash).
    aggregation = models.CharField(max_length=12, choices=Aggregation.choices, default=Aggregation.MAJORITY)
    weights_path = models.CharField(max_length=300, help_text="Relative to TALLY_MODEL_STORE.")
    weights_sha256 = models.CharField(max_length=64)
    # When the training set was read: the manifest holds the accepted annotations of that moment.
    snapshot_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "-sequence"]
        constraints = [
            models.UniqueConstraint(fields=["project", "sequence"], name="model_version_unique_sequence"),
        ]

    def __str__(self) -> str:
        return f"{self.project} v{self.sequence}"

    def save(self, *args, **kwargs):
        # Versions are pinned: a registered row is never rewritten.
        if not self._state.adding:
            raise ValueError("A registered model version cannot be changed.")
        super().save(*args, **kwargs)


class ManifestEntry(models.Model):
    """One annotation a version was trained on (and the label it used)."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="manifest")
    annotation = models.ForeignKey(Annotation, on_delete=models.PROTECT, related_name="+")
    example = models.ForeignKey(Example, on_delete=models.CASCADE, related_name="+")
    label = models.ForeignKey(Label, on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["version", "annotation", "label"], name="manifest_unique_entry"),
        ]

    def __str__(self) -> str:
        return f"v{self.version_id}: annotation {self.annotation_id}"


class ExampleEmbedding(models.Model):
    """A cached sentence embedding: float32 bytes, per example and encoder version. Immutable."""

    example = models.ForeignKey(Example, on_delete=models.CASCADE, related_name="embeddings")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    encoder_key = models.CharField(max_length=80)
    vector = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["example", "encoder_key"], name="embedding_unique_per_encoder"),
        ]
        indexes = [models.Index(fields=["project", "encoder_key", "id"], name="embedding_project_idx")]

    def __str__(self) -> str:
        return f"Embedding of example {self.example_id} ({self.encoder_key})"


class EmbeddingCache(models.Model):
    """One text's embedding under one encoder, shared by every project and version: keyed by
    the text's hash (annotation.services.text_hash, whitespace-normalised, which MiniLM's
    tokenizer ignores anyway), so a text is embedded once per encoder. Immutable."""

    encoder_key = models.CharField(max_length=80)
    text_hash = models.CharField(max_length=64)
    vector = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["encoder_key", "text_hash"], name="embedding_cache_unique_text"),
        ]

    def __str__(self) -> str:
        return f"Embedding of {self.text_hash[:12]} ({self.encoder_key})"


class EmbeddingWork(models.Model):
    """The compute of one background embedding chunk, waiting for the version it is attributed
    to: the first version of the project registered after it under the same encoder key
    (training.runs.version_register sets `version` and adds the seconds to the version's
    pool_embedding_seconds). Texts found in EmbeddingCache cost nothing and are not counted."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    encoder_key = models.CharField(max_length=80)
    texts = models.PositiveIntegerField()
    seconds = models.FloatField()
    device = models.CharField(max_length=10)
    device_name = models.CharField(max_length=200, blank=True)
    version = models.ForeignKey(
        "ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="embedding_work"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["project", "encoder_key", "version"], name="embedding_work_open_idx")]

    def __str__(self) -> str:
        return f"{self.texts} texts embedded in {self.seconds:.1f} s ({self.encoder_key})"


class Prediction(models.Model):
    """The current version's prediction for one example (overwritten when a new version is current)."""

    example = models.OneToOneField(Example, primary_key=True, on_delete=models.CASCADE, related_name="prediction")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="+")
    confidence = models.FloatField()
    margin = models.FloatField()
    entropy = models.FloatField()
    updated_at = models.DateTimeField()

    class Meta:
        # The example id is the lists' tie-breaker (selectors.predictions_for): without it in the
        # index, a page sorts every tie of the top confidence (49,608 rows of one label at
        # 1,000,000 examples: 275 ms a page, against 0.4 ms with it; `make bench-scale`).
        indexes = [
            models.Index(fields=["project", "-confidence", "example"], name="prediction_conf_example_idx"),
            models.Index(fields=["project", "label", "-confidence", "example"], name="prediction_label_conf_idx"),
            # Most uncertain first: the list an admin reviews beside the queue.
            models.Index(fields=["project", "margin", "example"], name="prediction_margin_idx"),
        ]

    def __str__(self) -> str:
        return f"Example {self.example_id}: {self.label_id} ({self.confidence:.2f})"


class AcceptBatch(models.Model):
    """One bulk accept of the model's predictions (training.services.machine_labels_accept),
    and its undoing: the record of who took which machine labels at what threshold, from which
    version. Undone, its labels still accepted are set to rejected through
    annotation.services (the ledger is told and, machine labels not being labor, pays nothing
    either way); the row keeps who undid it and when."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    min_confidence = models.FloatField()
    label_ids = models.JSONField(default=list, blank=True, help_text="The labels it was limited to, if any.")
    accepted = models.PositiveIntegerField(default=0)
    annotations = models.ManyToManyField(Annotation, related_name="accept_batches")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField()
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    undone = models.PositiveIntegerField(default=0, help_text="Labels set to rejected by the undo.")

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["project", "-id"], name="accept_batch_project_idx")]

    def __str__(self) -> str:
        return f"Bulk accept {self.pk} ({self.accepted} labels)"
