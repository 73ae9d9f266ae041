"""Domain errors raised by services; the API layer maps them to HTTP answers."""


class TallyError(Exception):
    """A request the domain refuses, with a message fit to show the user."""

    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class ValidationFailed(TallyError):
    status_code = 400
    code = "invalid"


class Conflict(TallyError):
    """The request is well-formed but clashes with the current state (HTTP 409)."""

    status_code = 409
    code = "conflict"


class Forbidden(TallyError):
    """The user is known but their role does not allow this (HTTP 403)."""

    status_code = 403
    code = "forbidden"


class NotFound(TallyError):
    status_code = 404
    code = "not_found"
