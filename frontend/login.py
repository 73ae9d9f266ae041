"""Logging in, with repeated failures throttled per username and client address.

After TALLY_LOGIN_MAX_FAILURES failed logins for one username from one address within
TALLY_LOGIN_LOCKOUT_SECONDS, further attempts for that pair are refused without checking the
password (so a locked-out guesser learns nothing, right or wrong) until the window passes; a
successful login clears the count. Counts live in the shared Django cache (Redis), so every
web process sees the same ones. The same form guards Django's admin login (config/urls.py).

The username is keyed as authentication reads it: the form's own UsernameField (strip, NFKC),
then casefolded, so fullwidth or differently cased spellings of one name share one count.
Each attempt takes its number from one atomic Redis INCR *before* the password is checked
(counting, not check-then-act): of 40 simultaneous wrong guesses only the first
TALLY_LOGIN_MAX_FAILURES are checked, and the rest are refused unchecked.

If the cache is unreachable the login still works (unthrottled) and the failure is logged:
Argon2 keeps each guess slow, and locking everyone out while Redis restarts would be worse.
"""

import hashlib
import logging
import unicodedata

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm, UsernameField
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ValidationError

logger = logging.getLogger(__name__)

THROTTLED = "throttled"


def _limits() -> tuple[int, int]:
    return settings.TALLY_LOGIN_MAX_FAILURES, settings.TALLY_LOGIN_LOCKOUT_SECONDS


def client_address(request) -> str:
    """REMOTE_ADDR, never a client-supplied X-Forwarded-For (anyone could rotate it to dodge the
    count). Behind a reverse proxy every client has the proxy's address, so the count becomes
    per username: see docs/security-operations.md."""
    return (request.META.get("REMOTE_ADDR") or "unknown") if request is not None else "unknown"


def normalize_username(raw: str, field=None) -> str:
    """The username as authentication will look it up (the login form's UsernameField: strip,
    NFKC), casefolded so that the count is never narrower than the account."""
    field = field or UsernameField(max_length=None)
    try:
        name = field.to_python(raw or "")
    except ValidationError:
        name = raw or ""
    return unicodedata.normalize("NFKC", name).casefold()


def failure_key(username: str, address: str) -> str:
    """`username` already normalised (normalize_username)."""
    digest = hashlib.sha256(f"{username}\0{address}".encode()).hexdigest()[:32]
    return f"login-failures:{digest}"


def take_attempt(username: str, address: str) -> int:
    """Count one attempt and return its number, atomically; 0 when the cache is unreachable.

    With Redis: `SET key 0 EX window NX` and `INCR key` in one MULTI, so the window starts with
    the first attempt, INCR keeps its expiry, and a key can never be left without one. Other
    cache backends (none configured) fall back to add()+incr()."""
    key = failure_key(username, address)
    _, window = _limits()
    backend = caches["default"]
    try:
        if isinstance(backend, RedisCache):
            redis_key = backend.make_and_validate_key(key)
            pipe = backend._cache.get_client(redis_key, write=True).pipeline(transaction=True)
            pipe.set(redis_key, 0, ex=window, nx=True)
            pipe.incr(redis_key)
            return int(pipe.execute()[1])
        if cache.add(key, 1, timeout=window):
            return 1
        return cache.incr(key)
    except ValueError:  # expired between add() and incr()
        cache.set(key, 1, timeout=window)
        return 1
    except Exception:
        logger.exception("Login throttle: the cache is unreachable; attempt not counted")
        return 0


def clear_failures(username: str, address: str) -> None:
    try:
        cache.delete(failure_key(username, address))
    except Exception:
        logger.exception("Login throttle: the cache is unreachable")


class ThrottledLoginMixin:
    """For AuthenticationForm and its subclasses: refuse, count, clear."""

    def clean(self):
        raw = self.data.get("username") or ""
        username = normalize_username(raw, self.fields.get("username"))
        address = client_address(self.request)
        limit, window = _limits()
        if not username:
            return super().clean()
        attempt = take_attempt(username, address)
        if attempt > limit:
            raise ValidationError(
                f"Too many failed logins for this account from your address. "
                f"Try again in {max(window // 60, 1)} minutes.",
                code=THROTTLED,
            )
        try:
            cleaned = super().clean()
        except ValidationError:
            if attempt == limit:
                logger.warning("Login throttle: %s failed logins for one username from %s", attempt, address)
            raise
        clear_failures(username, address)
        return cleaned


class ThrottledAuthenticationForm(ThrottledLoginMixin, AuthenticationForm):
    pass


class ThrottledAdminAuthenticationForm(ThrottledLoginMixin, AdminAuthenticationForm):
    """The Django admin's login: superusers only (config/admin.py); everyone else logs in on
    the site's own page and works in the console."""

    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        if not user.is_superuser:
            raise ValidationError(
                self.error_messages["invalid_login"],
                code="invalid_login",
                params={"username": self.username_field.verbose_name},
            )


class LoginView(auth_views.LoginView):
    """The site's login page: 429 Too Many Requests while a username+address pair is locked out."""

    authentication_form = ThrottledAuthenticationForm

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if any(e.code == THROTTLED for e in form.non_field_errors().as_data()):
            response.status_code = 429
            response["Retry-After"] = str(_limits()[1])
        return response
