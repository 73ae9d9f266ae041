"""Annotator welfare (issue 17): which texts are sensitive, the limits on exposure to them,
who declined them, and breaks. See docs/welfare.md for every setting and its default.

Kept apart from models.py so the welfare records stay one small, separately owned file;
models.py imports this module so Django registers them under the `annotation` app.
"""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class SensitiveCategory(models.TextChoices):
    VIOLENCE = "violence", "Violence"
    SEXUAL = "sexual", "Sexual content"
    SELF_HARM = "self_harm", "Self-harm"
    HATE = "hate", "Hate"
    OTHER = "other", "Other distressing content"


def _default_categories() -> list[str]:
    return list(SensitiveCategory.values)


class WelfarePolicy(models.Model):
    """A project's welfare settings: one row per project, none for a project never made
    sensitive (then nothing here applies and claims cost one primary-key lookup)."""

    project = models.OneToOneField(
        "annotation.Project", primary_key=True, on_delete=models.CASCADE, related_name="welfare"
    )
    sensitive = models.BooleanField(default=False)
    categories = models.JSONField(default=_default_categories, blank=True)
    # Exposure limits, per person, counted across ALL projects (0 = no limit of that kind).
    max_texts_per_session = models.PositiveIntegerField(default=60)
    max_minutes_per_session = models.PositiveIntegerField(default=60)
    max_texts_per_day = models.PositiveIntegerField(default=200)
    max_minutes_per_day = models.PositiveIntegerField(default=240)
    # A session ends after this long without work (no claim, no credited heartbeat).
    session_gap_minutes = models.PositiveIntegerField(default=15, validators=[MinValueValidator(1)])
    # Breaks: the page prompts one after this much continuous work (0 = never).
    break_after_minutes = models.PositiveIntegerField(default=50)
    # Paid break minutes per hour worked (0 = breaks unpaid); at most 30.
    paid_break_minutes_per_hour = models.PositiveIntegerField(default=10, validators=[MaxValueValidator(30)])
    # Where to get help: shown on the labeling page of a sensitive project and on the earnings page.
    support_text = models.TextField(blank=True)
    # {category: [word, ...]}: a text containing a word (whole word, any case) gets that mark.
    word_list = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Welfare policy of {self.project_id}"


class SensitiveMark(models.Model):
    """One category of sensitive content on one text, with who or what set it."""

    class Source(models.TextChoices):
        IMPORT = "import", "Import column"
        ADMIN = "admin", "An admin"
        WORD_LIST = "word_list", "The project's word list"
        MODEL = "model", "A model score"

    example = models.ForeignKey("annotation.Example", on_delete=models.CASCADE, related_name="sensitive_marks")
    category = models.CharField(max_length=12, choices=SensitiveCategory.choices)
    source = models.CharField(max_length=10, choices=Source.choices)
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    detail = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["example", "category"]
        constraints = [models.UniqueConstraint(fields=["example", "category"], name="sensitive_mark_one_per_category")]

    def __str__(self) -> str:
        return f"{self.category} on example {self.example_id} ({self.source})"


class WelfareOptOut(models.Model):
    """A person declined sensitive texts: of one project (project set, category empty), of one
    category everywhere (category set, project empty). Declining changes no rate and no access
    to other work: those texts are simply not handed to them."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="welfare_opt_outs")
    project = models.ForeignKey("annotation.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    category = models.CharField(max_length=12, choices=SensitiveCategory.choices, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "project", "category"], name="welfare_opt_out_unique"),
            models.CheckConstraint(
                condition=(models.Q(project__isnull=True) & ~models.Q(category=""))
                | (models.Q(project__isnull=False) & models.Q(category="")),
                name="welfare_opt_out_project_xor_category",
            ),
        ]

    def __str__(self) -> str:
        return f"Opt-out of {self.user_id}: {self.project_id or self.category}"


class Break(models.Model):
    """A break a person took when the page prompted one (or chose to). Its paid part is booked
    by the ledger when it ends (hooks.break_closed), within the one-clock rule: only time after
    the person's ActivityClock watermark is credited."""

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    # Seconds of the break credited on the one clock, and the part of them the policy pays.
    credited_seconds = models.DecimalField(max_digits=12, decimal_places=3, default=0)
    paid_seconds = models.DecimalField(max_digits=12, decimal_places=3, default=0)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user"], condition=models.Q(ended_at__isnull=True), name="break_one_open_per_user"
            )
        ]

    def __str__(self) -> str:
        return f"Break {self.pk} of {self.user_id}"
