from django.apps import AppConfig


class LaborLedgerConfig(AppConfig):
    name = "labor_ledger"
    verbose_name = "Labor ledger"

    def ready(self) -> None:
        from annotation import hooks as annotation_hooks
        from training import hooks as training_hooks

        from . import labor_index, services

        # The ledger answers annotation's work in the transaction that records it.
        annotation_hooks.attempt_closed.connect(services.attempt_closed)
        annotation_hooks.reading_closed.connect(services.reading_closed)
        annotation_hooks.break_closed.connect(services.break_closed)
        annotation_hooks.review_closed.connect(services.review_closed)
        annotation_hooks.annotation_status_changed.connect(services.annotation_status_changed)
        # Derived data is written by whoever changes its input: the worker indexes a model
        # version's labels right after training registers it (labor_index.py).
        training_hooks.version_registered.connect(labor_index.version_registered)
