"""The labor ledger's entry points, called by annotation.services inside the same transaction.

Issue #4 builds the ledger behind these two functions; annotation never writes ledger rows itself.
"""


def attempt_finished(*, attempt, annotation) -> None:
    """An attempt ended (submitted, skipped or expired): record its time and pay."""


def annotation_status_changed(*, annotation, previous_status: str) -> None:
    """A label was retracted, rejected or re-accepted: pay or unpay it with a new entry."""
