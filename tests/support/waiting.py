"""Waiting on a condition, never on a fixed time: a loaded machine only makes the wait longer."""

import time


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2, what: str = "condition"):
    """predicate()'s first truthy value; AssertionError when `timeout` seconds pass without one."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
