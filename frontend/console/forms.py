"""The console's forms: they validate input and nothing else (the services decide)."""

from django import forms

from annotation.models import Project
from core.roles import Role
from labor_ledger.durations import parse_duration
from labor_ledger.models import LedgerEntry, TimeCategory
from training.models import ProjectTrainingConfig


class ProjectCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    labels = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="One label per line, in the order annotators should see them (keys 1, 2, 3…).",
    )
    label_mode = forms.ChoiceField(choices=Project.LabelMode.choices, initial=Project.LabelMode.SINGLE)
    annotations_per_example = forms.IntegerField(
        min_value=1, max_value=5, initial=1, label="Annotators per text (overlap)"
    )
    currency = forms.RegexField(
        regex=r"^[A-Za-z]{3}$", initial="USD", max_length=3, help_text="ISO 4217; fixed once the ledger has entries."
    )
    instructions = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), required=False)

    def clean_labels(self) -> list[str]:
        return [line.strip() for line in self.cleaned_data["labels"].splitlines() if line.strip()]


ROLE_CHOICES = Role.choices


class InvitationForm(forms.Form):
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=Role.ANNOTATOR)
    note = forms.CharField(
        max_length=200,
        required=False,
        label="Who it is for",
        help_text="For your own records (a name or an email address); the invitee never sees it.",
    )


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=ROLE_CHOICES)


class SignupForm(forms.Form):
    username = forms.CharField(max_length=150)
    password = forms.CharField(widget=forms.PasswordInput, min_length=1)
    password_again = forms.CharField(widget=forms.PasswordInput, label="Password, again")

    def clean(self):
        data = super().clean()
        if data.get("password") and data.get("password") != data.get("password_again"):
            raise forms.ValidationError("The two passwords differ.")
        return data


class TrainingSettingsForm(forms.ModelForm):
    """The training settings, each with one line of explanation. Validated here, saved by
    training.services.config_update (never by this form)."""

    class Meta:
        model = ProjectTrainingConfig
        fields = [
            "enabled",
            "model_kind",
            "sampling",
            "retrain_every_n_labels",
            "deep_every_n_labels",
            "min_labels",
            "qc_share",
            "holdout_share",
            "max_gold_eval",
            "train_on_machine_labels",
            "aggregation",
        ]
        labels = {
            "enabled": "Retrain automatically",
            "model_kind": "Model",
            "sampling": "Which texts come first",
            "retrain_every_n_labels": "Retrain every N label changes",
            "deep_every_n_labels": "Fine-tune the encoder every N labels",
            "min_labels": "Labels before the first model",
            "qc_share": "Quality-control share",
            "holdout_share": "Held-out share",
            "max_gold_eval": "Gold texts for evaluation (at most)",
            "train_on_machine_labels": "Train on accepted machine labels",
            "aggregation": "Training targets from the labels",
        }
        help_texts = {
            "enabled": "Queue a training run as labels arrive; off, only the Retrain button trains.",
            "model_kind": "MiniLM reads sentence embeddings (better, slower to start); hashed learns words itself.",
            "sampling": "The current model's uncertainty orders the queue: margin and entropy pick the least certain.",
            "retrain_every_n_labels": "1 retrains after every label (runs are debounced: at most one waits).",
            "deep_every_n_labels": "0 fine-tunes only on request; MiniLM only.",
            "min_labels": "The first model waits for this many labels over at least two labels.",
            "qc_share": "Share of the queue given to random and gold texts, to check quality (0 to 0.5).",
            "holdout_share": "Without gold labels, this share of labeled texts is kept out of training to evaluate.",
            "max_gold_eval": "With imported gold labels, evaluate on at most this many of them.",
            "train_on_machine_labels": "Bulk-accepted predictions join the training set (a human label always wins).",
            "aggregation": "Dawid-Skene weighs each annotator by their estimated confusion (single-label projects); "
            "docs/agreement.md.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A form posted without it (a script, an older page) keeps the project's choice.
        self.fields["aggregation"].required = False

    def clean_aggregation(self):
        return self.cleaned_data.get("aggregation") or self.instance.aggregation


class ImportForm(forms.Form):
    file = forms.FileField(help_text="CSV, TSV or JSONL, UTF-8. It is imported in the background.")
    text_column = forms.CharField(
        max_length=100, initial="text", help_text="The text's column; several joined by commas (title,description)."
    )
    label_column = forms.CharField(
        max_length=100, required=False, help_text="Optional: a column of gold labels (for evaluation and QC)."
    )
    visible_columns = forms.CharField(
        max_length=500,
        required=False,
        help_text="Extra columns annotators may see, comma-separated. Every other column stays hidden from them "
        "(an id that spells out the answer would give it away); admins and auditors see all.",
    )
    create_labels = forms.BooleanField(required=False, help_text="Add gold labels the project does not have yet.")
    no_header = forms.BooleanField(required=False, label="The first line is data (columns by position: 1, 2, …)")


RATE = {"max_digits": 14, "decimal_places": 6, "min_value": 0}


class PayPolicyForm(forms.Form):
    piece_rate = forms.DecimalField(initial=0, help_text="Per accepted text.", **RATE)
    hourly_rate = forms.DecimalField(initial=0, help_text="Per active hour, on top of the piece rate.", **RATE)
    floor_hourly_rate = forms.DecimalField(
        initial=0, label="Floor per hour worked", help_text="Each period is topped up to this per hour worked.", **RATE
    )
    client_price_per_example = forms.DecimalField(
        required=False, label="Client's price per text", help_text="What the client pays per accepted text.", **RATE
    )
    client_price_per_hour = forms.DecimalField(
        required=False, label="Client's price per hour", help_text="What the client pays per hour worked.", **RATE
    )
    note = forms.CharField(required=False, max_length=500, help_text="Why this version (kept with it).")


class LedgerFilterForm(forms.Form):
    annotator = forms.CharField(required=False, max_length=150)
    kind = forms.ChoiceField(required=False, choices=[("", "any kind"), *LedgerEntry.Kind.choices])
    category = forms.ChoiceField(required=False, choices=[("", "any time category"), *TimeCategory.choices])
    period = forms.DateField(required=False, help_text="The period's first day, YYYY-MM-DD.")
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)


class DisputeDecisionForm(forms.Form):
    outcome = forms.ChoiceField(choices=[("accept", "Accept"), ("reject", "Reject")])
    reason = forms.CharField(required=False, max_length=2000, help_text="Required to reject; shown to the annotator.")
    granted = forms.CharField(
        required=False,
        max_length=20,
        label="Time granted",
        help_text="h:mm:ss, m:ss or seconds; default: the claim minus what was recorded.",
    )

    def clean_granted(self):
        text = self.cleaned_data["granted"].strip()
        if not text:
            return None
        try:
            return parse_duration(text)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc


class ReviewDecisionForm(forms.Form):
    """One decision on the review page (annotation.review.review_decide)."""

    example = forms.IntegerField(min_value=1)
    decision = forms.ChoiceField(choices=[("accept", "Accept"), ("correct", "Correct"), ("reject", "Reject")])
    labels = forms.TypedMultipleChoiceField(coerce=int, required=False, choices=[])
    key = forms.CharField(max_length=100)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Any integer passes here; the service says which labels the project offers.
        raw = self.data.getlist("labels") if hasattr(self.data, "getlist") else self.data.get("labels", [])
        self.fields["labels"].choices = [(v, v) for v in raw]

    def clean_labels(self):
        try:
            return [int(v) for v in self.cleaned_data["labels"]]
        except (TypeError, ValueError) as exc:
            raise forms.ValidationError("Labels are label ids.") from exc

    def clean(self):
        data = super().clean()
        if data.get("decision") == "correct" and not data.get("labels"):
            raise forms.ValidationError("Choose the label to correct the text to.")
        return data


class ProjectSettingsForm(forms.Form):
    """The project's own settings; saved by annotation.services.project_update."""

    name = forms.CharField(max_length=200, help_text="Shown on every page of the project and on the home page.")
    instructions = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "id": "id_instructions"}),
        help_text="What annotators read before and while labeling (plain text; a blank line starts a paragraph).",
    )
    annotations_per_example = forms.IntegerField(
        min_value=1,
        max_value=5,
        label="Annotators per text (overlap)",
        help_text="How many different people label each text; 2 or 3 lets you measure agreement.",
    )


class RoutingForm(forms.Form):
    """Routing by doubt (annotation.review.example_route_for_doubt); saved by project_update."""

    doubt_routing = forms.BooleanField(
        required=False,
        label="Route texts in doubt to more annotators",
        help_text="A labeled text gets one more annotator when the model is unsure of it or a label disagrees.",
    )
    doubt_margin = forms.FloatField(
        min_value=0.0,
        max_value=1.0,
        label="Unsure below this margin",
        help_text="The gap between the model's top two labels (0 to 1) below which it is unsure.",
    )
    doubt_confidence = forms.FloatField(
        min_value=0.0,
        max_value=1.0,
        label="Confident from",
        help_text="A label that differs from a prediction at least this confident asks for another annotator.",
    )
    doubt_max_annotators = forms.IntegerField(min_value=2, max_value=5, label="At most this many annotators per text")
    doubt_budget = forms.IntegerField(
        min_value=0,
        label="Budget of extra labels",
        help_text="How many extra labels routing may ask for in this project, in all.",
    )


class QualityControlForm(forms.Form):
    """The QC share lives in the training settings; saved by training.services.config_update."""

    qc_share = forms.FloatField(
        min_value=0.0,
        max_value=0.5,
        label="Quality-control share",
        help_text="Share of the queue given to random and gold texts, to check quality (0 to 0.5).",
    )


class LabelNameForm(forms.Form):
    name = forms.CharField(max_length=100)


class AcceptPreviewForm(forms.Form):
    """The threshold of a bulk accept (and what it is limited to). Read by the preview on GET;
    the Accept button posts the same values back."""

    min_confidence = forms.FloatField(
        min_value=0.0,
        max_value=1.0,
        initial=0.9,
        label="Confidence at least",
        help_text="The model's probability for its label, 0 to 1: higher takes fewer texts and is right more often.",
        widget=forms.NumberInput(attrs={"step": "0.01"}),
    )
    label = forms.TypedChoiceField(
        required=False, coerce=int, empty_value=None, help_text="Only texts predicted as this label (optional)."
    )
    limit = forms.IntegerField(
        min_value=1, max_value=10_000, initial=1000, help_text="At most this many texts, the most confident first."
    )

    def __init__(self, *args, labels=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["label"].choices = [("", "any label"), *((lab.pk, lab.name) for lab in labels)]


class AcceptForm(AcceptPreviewForm):
    version = forms.IntegerField(widget=forms.HiddenInput)
    understood = forms.BooleanField(
        required=False, label="I know this model is no better than its baseline, and accept its labels anyway."
    )
