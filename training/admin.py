"""Read-mostly Django admin for training: runs and versions are written by the worker only."""

from django.contrib import admin

from .models import ModelVersion, ProjectTrainingConfig, TrainingRun


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(TrainingRun)
class TrainingRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "project", "status", "loop", "trigger", "created_at", "started_at", "finished_at", "stage"]
    list_filter = ["status", "loop", "trigger"]


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ["project", "sequence", "kind", "loop", "device", "n_annotations", "created_at"]
    list_filter = ["kind", "loop", "device"]
    exclude = ["metrics"]


@admin.register(ProjectTrainingConfig)
class ProjectTrainingConfigAdmin(ReadOnlyAdmin):
    """Changed through the API (PATCH /api/projects/<slug>/training/config/), which validates."""

    list_display = ["project", "model_kind", "sampling", "enabled", "current_version"]
