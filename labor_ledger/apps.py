from django.apps import AppConfig


class LaborLedgerConfig(AppConfig):
    name = "labor_ledger"
    verbose_name = "Labor ledger"

    def ready(self) -> None:
        # Derived data is written by whoever changes its input: the worker indexes a model
        # version's labels right after training registers it (labor_index.py).
        from training import hooks as training_hooks

        from . import labor_index

        training_hooks.version_registered.connect(labor_index.version_registered)
