"""Typed hooks: how a lower app tells higher ones that something happened.

annotation ← training ← labor_ledger: a lower app never imports a higher one. It declares a
`Hook` for each event it announces (annotation/hooks.py, training/hooks.py) and sends a
frozen dataclass; the higher apps connect their handlers in `AppConfig.ready()`. Handlers run
synchronously, in the sender's transaction, in the order they were connected; one that wants
to run after commit says so itself (`transaction.on_commit`).
"""

from collections.abc import Callable
from typing import Generic, TypeVar

Event = TypeVar("Event")


class Hook(Generic[Event]):
    def __init__(self, name: str):
        self.name = name
        self._handlers: list[Callable[[Event], object]] = []

    def connect(self, handler: Callable[[Event], object]) -> None:
        """Register a handler once (ready() may run more than once in tests)."""
        if handler not in self._handlers:
            self._handlers.append(handler)

    def send(self, event: Event) -> None:
        for handler in self._handlers:
            handler(event)

    def __repr__(self) -> str:
        return f"Hook({self.name!r}, {len(self._handlers)} handlers)"
