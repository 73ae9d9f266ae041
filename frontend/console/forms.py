"""The console's forms: they validate input and nothing else (the services decide)."""

from django import forms

from annotation.models import Project
from core.roles import Role


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
