import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


CHECKPOINT_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # 32 bytes, base64


def _production_check(
    secret: str | None,
    mac_key: str | None = "a-ledger-mac-key-for-tests-" + "q7Zp" * 8,
    checkpoint_key: str | None = CHECKPOINT_KEY,
):
    # As a deployment would run it: no test-only variables (browser tests allow async-unsafe ORM use).
    dropped = (
        "DJANGO_SECRET_KEY",
        "DJANGO_ALLOW_ASYNC_UNSAFE",
        "TALLY_LEDGER_MAC_KEY",
        "TALLY_LEDGER_MAC_KEY_FILE",
        "TALLY_CHECKPOINT_SIGNING_KEY",
        "TALLY_CHECKPOINT_SIGNING_KEY_FILE",
    )
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(DJANGO_SETTINGS_MODULE="config.settings.production", DJANGO_ALLOWED_HOSTS="tally.example")
    if secret is not None:
        env["DJANGO_SECRET_KEY"] = secret
    if mac_key is not None:
        env["TALLY_LEDGER_MAC_KEY"] = mac_key
    if checkpoint_key is not None:
        env["TALLY_CHECKPOINT_SIGNING_KEY"] = checkpoint_key
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("secret", [None, "", "short", "django-insecure-" + "x" * 60, "a" * 60])
def test_production_refuses_missing_or_weak_secret_key(secret):
    result = _production_check(secret)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


@pytest.mark.parametrize("mac_key", [None, "", "short", "a" * 40])
def test_production_refuses_a_missing_or_weak_ledger_mac_key(mac_key):
    """Issue 15: the ledger's MAC key is required like SECRET_KEY (labor_ledger/chain.py)."""
    import secrets

    result = _production_check(secrets.token_urlsafe(64), mac_key=mac_key)
    assert result.returncode != 0
    assert "TALLY_LEDGER_MAC_KEY" in result.stderr


def test_production_passes_deploy_checks_with_a_strong_key():
    import secrets

    result = _production_check(secrets.token_urlsafe(64))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("key", "says"), [(None, "labor_ledger.W001"), ("not-a-key", "labor_ledger.E001")])
def test_the_deploy_check_says_when_ledger_checkpoints_cannot_be_signed(key, says):
    import secrets

    result = _production_check(secrets.token_urlsafe(64), checkpoint_key=key)
    assert result.returncode != 0 and says in result.stderr, result.stderr


def test_base_settings_hash_passwords_with_argon2():
    from config.settings import base

    assert base.PASSWORD_HASHERS[0].endswith("Argon2PasswordHasher")
    assert settings.SECURE_CONTENT_TYPE_NOSNIFF
