"""OCI errors as exceptions: one base class carrying status, code and message.

Class names are the OCI error codes (spec §4); the API layer renders any ``OciError``
as ``{"code": ..., "message": ...}`` with its status.
"""

from __future__ import annotations


class OciError(Exception):
    """An error the client sees: HTTP status, OCI error code and a message a person can act on."""

    status: int = 500
    code: str = "InternalServerError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CannotParseRequest(OciError):
    status, code = 400, "CannotParseRequest"


class InvalidParameter(OciError):
    status, code = 400, "InvalidParameter"


class MissingParameter(OciError):
    status, code = 400, "MissingParameter"


class LimitExceeded(OciError):
    status, code = 400, "LimitExceeded"


class RelatedResourceNotAuthorizedOrNotFound(OciError):
    status, code = 400, "RelatedResourceNotAuthorizedOrNotFound"


class NotAuthenticated(OciError):
    status, code = 401, "NotAuthenticated"


class NotAuthorizedOrNotFound(OciError):
    status, code = 404, "NotAuthorizedOrNotFound"

    def __init__(
        self, message: str = "Authorization failed or requested resource not found."
    ) -> None:
        super().__init__(message)


class NotFound(OciError):
    status, code = 404, "NotFound"


class MethodNotAllowed(OciError):
    status, code = 405, "MethodNotAllowed"


class Conflict(OciError):
    """A permanent conflict: clients do not retry it."""

    status, code = 409, "Conflict"


class IncorrectState(OciError):
    """A transient conflict (resource mid-transition): the CLI retries it."""

    status, code = 409, "IncorrectState"


class InvalidatedRetryToken(OciError):
    status, code = 409, "InvalidatedRetryToken"


class NoEtagMatch(OciError):
    status, code = 412, "NoEtagMatch"


class PayloadTooLarge(OciError):
    status, code = 413, "PayloadTooLarge"


class MethodNotImplemented(OciError):
    """An OCI operation ocibv does not provide (yet); clients do not retry it."""

    status, code = 501, "MethodNotImplemented"


class InternalServerError(OciError):
    status, code = 500, "InternalServerError"


class ServiceUnavailable(OciError):
    """Retryable: the service cannot take the request now (e.g. its storage is full)."""

    status, code = 503, "ServiceUnavailable"
