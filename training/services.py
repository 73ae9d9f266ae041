"""Writes for the training domain. Imported by the web process: never import torch here."""


def labels_changed(*, project_id: int) -> None:
    """New or changed labels in a project: schedule a (debounced) retraining run. Issue #3."""
