"""Production: PostgreSQL, Redis, HTTPS. Refuses to start without a strong SECRET_KEY."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import env

SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5 or SECRET_KEY.startswith("django-insecure"):
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is unset or too weak: set at least 50 random characters, e.g. "
        "python -c 'import secrets; print(secrets.token_urlsafe(64))'"
    )
if len(TALLY_LEDGER_MAC_KEY) < 32 or len(set(TALLY_LEDGER_MAC_KEY)) < 5:  # noqa: F405
    raise ImproperlyConfigured(
        "TALLY_LEDGER_MAC_KEY (or TALLY_LEDGER_MAC_KEY_FILE) is unset or too weak: the ledger's MAC key, "
        "at least 32 random characters, kept out of the database, e.g. "
        "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
    )
DEBUG = False
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 30)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
