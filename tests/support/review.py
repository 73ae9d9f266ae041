"""Helpers of the review and routing tests: a model version's predictions without training."""

from django.utils import timezone

from training.models import ModelVersion, Prediction, TrainingRun


def model_version(project, *, sequence=1):
    run = TrainingRun.objects.create(project=project, status=TrainingRun.Status.SUCCEEDED)
    return ModelVersion.objects.create(
        project=project,
        sequence=sequence,
        run=run,
        kind="hashed",
        loop="fast",
        device="cpu",
        manifest_hash=f"{sequence:064x}",
        weights_path=f"test/{sequence}.safetensors",
        weights_sha256="0" * 64,
        snapshot_at=timezone.now(),
    )


def predict(example, label, *, confidence, margin, version=None):
    """The current model's prediction for `example` (as training writes it)."""
    version = version or ModelVersion.objects.filter(project=example.project).first() or model_version(example.project)
    return Prediction.objects.update_or_create(
        example=example,
        defaults={
            "project": example.project,
            "version": version,
            "label": label,
            "confidence": confidence,
            "margin": margin,
            "entropy": 0.5,
            "updated_at": timezone.now(),
        },
    )[0]
