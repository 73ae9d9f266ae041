"""The earnings page's form: contest the time recorded for an attempt or a day."""

from django import forms

from .durations import fmt_duration, parse_duration


class TimeDisputeForm(forms.Form):
    """`subject` is "attempt:<id>" or "day:<YYYY-MM-DD>"; its choices are the annotator's own
    days and closed attempts (the service checks again: a forged value is a 404 or a 400)."""

    subject = forms.ChoiceField(label="What you contest")
    claimed = forms.CharField(
        label="Active time you claim",
        max_length=20,
        help_text="h:mm:ss, m:ss or seconds; more than the ledger recorded, at most the wall time.",
    )
    note = forms.CharField(label="What happened", max_length=2000, widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args, days=(), attempts=(), **kwargs):
        super().__init__(*args, **kwargs)
        choices = [(f"day:{d.isoformat()}", f"The whole day {d.isoformat()} (UTC)") for d in days]
        choices += [
            (
                f"attempt:{a.pk}",
                f"Text #{a.pk}, {a.status}, ended {a.finished_at:%Y-%m-%d %H:%M:%S} UTC: "
                f"{fmt_duration(a.active_seconds)} active of {fmt_duration(a.wall_seconds or 0)} on screen",
            )
            for a in attempts
        ]
        self.fields["subject"].choices = choices

    def clean_claimed(self):
        try:
            return parse_duration(self.cleaned_data["claimed"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def subject_kwargs(self) -> dict:
        kind, _, value = self.cleaned_data["subject"].partition(":")
        if kind == "attempt":
            return {"attempt_id": int(value)}
        from datetime import date

        return {"day": date.fromisoformat(value)}
