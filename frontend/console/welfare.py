"""The console's Welfare page (issue 17, docs/welfare.md): the project's welfare policy, bulk
marking of sensitive texts, the word list, and the people approaching their exposure limits.
Admins change things; auditors read. Nothing is written on GET."""

import re

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from annotation import welfare
from annotation.models import Example, SensitiveCategory, SensitiveMark, WelfarePolicy
from core.errors import TallyError
from core.roles import ADMINS

from .access import admin_page, project_page

CATEGORY_CHOICES = SensitiveCategory.choices


class WelfarePolicyForm(forms.Form):
    sensitive = forms.BooleanField(required=False, label="This project contains sensitive content")
    categories = forms.MultipleChoiceField(
        choices=CATEGORY_CHOICES, widget=forms.CheckboxSelectMultiple, required=False, label="Categories it may contain"
    )
    max_texts_per_session = forms.IntegerField(min_value=0, label="Most sensitive texts per session (0: no limit)")
    max_minutes_per_session = forms.IntegerField(
        min_value=0, max_value=1440, label="Most minutes of exposure per session"
    )
    max_texts_per_day = forms.IntegerField(min_value=0, label="Most sensitive texts per day")
    max_minutes_per_day = forms.IntegerField(min_value=0, max_value=1440, label="Most minutes of exposure per day")
    session_gap_minutes = forms.IntegerField(
        min_value=1, max_value=1440, label="A pause this long (minutes) ends a session"
    )
    break_after_minutes = forms.IntegerField(
        min_value=0, max_value=1440, label="Prompt a break after this many minutes of continuous work (0: never)"
    )
    paid_break_minutes_per_hour = forms.IntegerField(
        min_value=0, max_value=30, label="Paid break minutes per hour worked"
    )
    support_text = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Support text",
        help_text="Where to get help; shown on the labeling page and the earnings page.",
    )
    word_list = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        label="Word list",
        help_text="One line per category: `violence: knife, shot, stabbed`. Applied at import and on demand.",
    )

    def clean_word_list(self):
        out = {}
        for n, line in enumerate(self.cleaned_data["word_list"].splitlines(), start=1):
            if not line.strip():
                continue
            category, sep, words = line.partition(":")
            if not sep:
                raise forms.ValidationError(f"Line {n}: write `category: word, word`.")
            out[category.strip().lower()] = [w.strip() for w in words.split(",") if w.strip()]
        return out


def _initial(policy: WelfarePolicy) -> dict:
    data = {f: getattr(policy, f) for f in welfare.POLICY_FIELDS if f != "word_list"}
    data["word_list"] = "\n".join(f"{c}: {', '.join(words)}" for c, words in policy.word_list.items())
    return data


class MarkForm(forms.Form):
    example_ids = forms.CharField(
        required=False, label="Text ids", help_text="Comma- or space-separated ids (the Ledger and exports show them)."
    )
    containing = forms.CharField(
        required=False, max_length=200, label="…or every text containing", help_text="Case-insensitive."
    )
    categories = forms.MultipleChoiceField(choices=CATEGORY_CHOICES, widget=forms.CheckboxSelectMultiple)
    action = forms.ChoiceField(choices=[("add", "Mark"), ("clear", "Clear these marks")], initial="add")

    def clean_example_ids(self):
        raw = self.cleaned_data["example_ids"]
        ids = [p for p in re.split(r"[\s,]+", raw) if p]
        if any(not p.isdigit() for p in ids):
            raise forms.ValidationError("Text ids are whole numbers.")
        return [int(p) for p in ids]

    def clean(self):
        data = super().clean()
        if not data.get("example_ids") and not data.get("containing"):
            raise forms.ValidationError("Give text ids or a phrase the texts contain.")
        return data


def _page(request, project, *, policy_form=None, mark_form=None, status=200):
    policy = welfare.policy_of(project) or WelfarePolicy(project=project)
    marks = (
        SensitiveMark.objects.filter(example__project=project)
        .values("category", "source")
        .annotate(n=Count("id"))
        .order_by("category", "source")
    )
    can_admin = request.user.is_superuser or project.memberships.filter(user=request.user, role__in=ADMINS).exists()
    return render(
        request,
        "frontend/console/welfare.html",
        {
            "project": project,
            "policy": policy,
            "can_admin": can_admin,
            "policy_form": policy_form or WelfarePolicyForm(initial=_initial(policy)),
            "mark_form": mark_form or MarkForm(),
            "marks": list(marks),
            "marked_texts": Example.objects.filter(project=project, sensitive_marks__isnull=False).distinct().count(),
            "near": welfare.people_near_limits(project=project),
        },
        status=status,
    )


@never_cache
@login_required
def welfare_page(request, slug):
    return _page(request, project_page(request, slug))


@never_cache
@login_required
@require_POST
def welfare_policy(request, slug):
    project = admin_page(request, slug)
    form = WelfarePolicyForm(request.POST)
    if form.is_valid():
        try:
            welfare.policy_set(project=project, **form.cleaned_data)
        except TallyError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, "Welfare settings saved.")
            return redirect("console:welfare", project.slug)
    return _page(request, project, policy_form=form, status=400)


@never_cache
@login_required
@require_POST
def welfare_marks(request, slug):
    project = admin_page(request, slug)
    form = MarkForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        ids = list(data["example_ids"])
        if data["containing"]:
            ids += list(
                Example.objects.filter(project=project, text__icontains=data["containing"]).values_list("pk", flat=True)
            )
        try:
            if data["action"] == "clear":
                n = welfare.marks_clear(project=project, example_ids=ids, categories=data["categories"])
                messages.success(request, f"{n} marks cleared.")
            else:
                n = welfare.marks_set(
                    project=project,
                    example_ids=list(dict.fromkeys(ids)),
                    categories=data["categories"],
                    set_by=request.user,
                    detail=f"console: {data['containing']}"[:200] if data["containing"] else "console",
                )
                messages.success(request, f"{n} marks added over {len(set(ids))} texts.")
        except TallyError as exc:
            form.add_error(None, exc.message)
        else:
            return redirect("console:welfare", project.slug)
    return _page(request, project, mark_form=form, status=400)


@never_cache
@login_required
@require_POST
def welfare_word_list(request, slug):
    project = admin_page(request, slug)
    try:
        n = welfare.word_list_apply(project=project)
    except TallyError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"The word list added {n} marks.")
    return redirect("console:welfare", project.slug)
