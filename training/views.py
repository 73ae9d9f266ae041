"""Server-rendered page of a model version: metrics beside its parent's, learning curves,
confusion matrix, and the least certain predictions with on-demand explanations."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, render
from rest_framework.exceptions import PermissionDenied as ApiPermissionDenied

from annotation.models import Label
from annotation.permissions import project_for
from core.roles import READERS

from . import charts, selectors


@login_required
def version_page(request, slug, sequence):
    try:
        project = project_for(user=request.user, slug=slug, roles=READERS)
    except ApiPermissionDenied as exc:
        raise PermissionDenied(str(exc)) from exc
    version = get_object_or_404(selectors.versions_for(project=project), sequence=sequence)
    metrics = version.metrics
    parent = version.parent.metrics if version.parent_id else {}
    names = dict(Label.objects.filter(project=project).values_list("id", "name"))
    evaluation = selectors.version_evaluation(version=version)
    rows = [
        (title, metrics.get(key), parent.get(key) if parent else None, digits)
        for title, key, digits in (
            ("Macro-F1 (headline)", "macro_f1", 3),
            ("Accuracy", "accuracy", 3),
            ("Expected calibration error", "ece", 3),
            ("Held-out examples", "eval_size", 0),
        )
    ]
    per_class = [
        (name, metrics.get("per_class", {}).get(name), evaluation["train_class_counts"].get(name, 0))
        for name in metrics.get("confusion_matrix", {}).get("labels", [])
    ]
    current = selectors.current_version(project=project)
    uncertain = (
        selectors.predictions_for(project=project, ordering="margin", labeled=False)[:15]
        if current is not None and current.pk == version.pk
        else []
    )
    context = {
        "project": project,
        "version": version,
        "is_current": current is not None and current.pk == version.pk,
        "rows": rows,
        "evaluation": evaluation,
        "per_class": per_class,
        "labels": [names.get(lid, lid) for lid in version.classes],
        "curve_svg": charts.learning_curve_svg(selectors.learning_curve(version=version)),
        "confusion_svg": (
            charts.confusion_matrix_svg(metrics["confusion_matrix"])
            if metrics.get("eval_size") and metrics.get("confusion_matrix")
            else ""
        ),
        "uncertain": uncertain,
        "agreement": selectors.version_agreement(version=version),
    }
    return render(request, "training/version.html", context)
