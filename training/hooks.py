"""What training announces to the apps above it (labor_ledger)."""

from dataclasses import dataclass

from core.hooks import Hook


@dataclass(frozen=True)
class VersionRegistered:
    """A model version and its manifest were committed (sent after commit, by the worker)."""

    version_id: int
    project_id: int


version_registered: Hook[VersionRegistered] = Hook("version_registered")
