from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = "Training"

    def ready(self):
        from annotation import hooks as annotation_hooks

        from . import routing, services

        annotation_hooks.labels_changed.connect(services.labels_changed_after_commit)
        annotation_hooks.examples_imported.connect(services.examples_imported_after_commit)
        annotation_hooks.attempt_closed.connect(routing.route_by_doubt)
