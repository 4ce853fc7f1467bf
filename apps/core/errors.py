"""The one error type services raise; the API and admin map it to a clear message."""

from __future__ import annotations


class ApplicationError(Exception):
    """A business rule said no. `errors` maps field names to messages (field-level errors)."""

    status_code = 400

    def __init__(self, message: str, *, errors: dict | None = None, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or {}
        self.code = code


class NotFound(ApplicationError):
    status_code = 404

    def __init__(self, message: str = "Not found.", **kwargs) -> None:
        super().__init__(message, code="not_found", **kwargs)


class Conflict(ApplicationError):
    status_code = 409

    def __init__(self, message: str, **kwargs) -> None:
        kwargs.setdefault("code", "conflict")
        super().__init__(message, **kwargs)
