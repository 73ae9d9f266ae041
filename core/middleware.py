"""Request size limits, enforced from Content-Length before any of the body is read.

Django reads a multipart upload to the end (to disk) before a view can refuse it, and parses a
login form for anyone. This middleware runs first (after SecurityMiddleware, so its answers
carry the security headers) and answers 413 when the declared length is over the limit of the
route, without touching `wsgi.input`:

- import routes (API, console page, Django admin's import): TALLY_MAX_UPLOAD_BYTES;
- the two login pages: TALLY_MAX_LOGIN_REQUEST_BYTES (64 KiB: anyone may post to them);
- everything else: TALLY_MAX_REQUEST_BYTES.

A body without a Content-Length (chunked) is read by Django as empty under WSGI, so the
declared length is the whole story here; a reverse proxy should enforce the same limits
(docs/security-operations.md).
"""

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.urls import Resolver404, resolve

IMPORT_ROUTES = frozenset({"annotation:import-list", "console:import", "admin:annotation_project_import"})
LOGIN_ROUTES = frozenset({"login", "admin:login"})


def _limit_for(path: str) -> tuple[int, str]:
    try:
        name = resolve(path).view_name
    except Resolver404:
        name = ""
    if name in IMPORT_ROUTES:
        return settings.TALLY_MAX_UPLOAD_BYTES, "TALLY_MAX_UPLOAD_BYTES"
    if name in LOGIN_ROUTES:
        return settings.TALLY_MAX_LOGIN_REQUEST_BYTES, "TALLY_MAX_LOGIN_REQUEST_BYTES"
    return settings.TALLY_MAX_REQUEST_BYTES, "TALLY_MAX_REQUEST_BYTES"


def _answer(request, status: int, message: str, code: str) -> HttpResponse:
    if request.path_info.startswith("/api/"):
        return JsonResponse({"detail": message, "code": code}, status=status)
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


class RequestSizeLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        declared = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(declared)
            if length < 0:
                raise ValueError
        except ValueError:
            return _answer(request, 400, "The Content-Length header is not a length.", "bad_content_length")
        if length:
            limit, setting = _limit_for(request.path_info)
            if length > limit:
                return _answer(
                    request,
                    413,
                    f"The request is too large: {length:,} bytes; the limit here is {limit:,} ({setting}).",
                    "request_too_large",
                )
        return self.get_response(request)


class NulInQueryMiddleware:
    """A query string with a NUL character is a 400 here: PostgreSQL text cannot hold NUL, so
    the same value used as a filter (?annotator=%00) would end in a database error, a 500."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if any("\x00" in value for key, values in request.GET.lists() for value in [key, *values]):
            return _answer(request, 400, "Query parameters cannot contain NUL characters.", "nul_in_query")
        return self.get_response(request)
