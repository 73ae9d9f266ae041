"""Helpers every test directory shares: plain modules, fixtures registered once from
tests/conftest.py (pytest_plugins), never imported from one conftest into another."""
