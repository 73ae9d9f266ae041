from django.apps import AppConfig


class LaborLedgerConfig(AppConfig):
    name = "labor_ledger"
    verbose_name = "Labor ledger"

    def ready(self):
        # The ledger answers annotation's work in the transaction that records it.
        from annotation import hooks as annotation_hooks

        from . import services

        annotation_hooks.attempt_closed.connect(services.attempt_closed)
        annotation_hooks.reading_closed.connect(services.reading_closed)
        annotation_hooks.annotation_status_changed.connect(services.annotation_status_changed)
