"""One DRF exception handler: a domain error raised anywhere below a view becomes its HTTP
answer, `{"detail": ..., "code": ...}`, so views call services directly."""

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .errors import TallyError


def exception_handler(exc, context):
    if isinstance(exc, TallyError):
        return Response({"detail": exc.message, "code": exc.code}, status=exc.status_code)
    return drf_exception_handler(exc, context)
