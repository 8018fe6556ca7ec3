"""Errors of the service layer; each API maps them to its own status (HTTP code / gRPC status)."""

from __future__ import annotations


class ServiceError(Exception):
    """Base class: `message` is safe to show to the user."""

    http_status = 500
    code = "internal"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    http_status = 400
    code = "invalid_argument"


class NotFound(ServiceError):
    http_status = 404
    code = "not_found"


class NoModel(ServiceError):
    """No fitted model for the trace's entry point yet (still learning what normal looks like)."""

    http_status = 409
    code = "learning"


class Unauthenticated(ServiceError):
    http_status = 401
    code = "unauthenticated"
