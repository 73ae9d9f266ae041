from django.apps import AppConfig
from django.core import checks


@checks.register(checks.Tags.security, deploy=True)
def checkpoint_key_check(app_configs, **kwargs):
    """Without a checkpoint signing key the server runs, but truncation and rollback of the
    ledger go unseen (labor_ledger/checkpoints.py); a bad key is an error."""
    from django.conf import settings

    from .checkpoints import CheckpointKeyError, load_private_key

    text = settings.TALLY_CHECKPOINT_SIGNING_KEY
    if not text:
        return [
            checks.Warning(
                "TALLY_CHECKPOINT_SIGNING_KEY is not set: ledger checkpoints are not signed, so a truncation "
                "or rollback of the ledger cannot be detected.",
                hint="Set an Ed25519 key (docs/security-operations.md, 'The checkpoint signing key').",
                id="labor_ledger.W001",
            )
        ]
    try:
        load_private_key(text)
    except (CheckpointKeyError, ValueError) as exc:
        return [checks.Error(str(exc), id="labor_ledger.E001")]
    return []


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
