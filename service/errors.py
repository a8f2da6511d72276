"""Domain errors: what a service raises when it refuses a request (the edges turn them into HTTP answers)."""

from __future__ import annotations


class DomainError(Exception):
    """A service refused a request; the edges turn each kind into one HTTP status (no HTTP here)."""

    def __init__(self, detail: str, *, field: str | None = None, message: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        # The request field the refusal is about, reported as ``errors: [{field, message}]``.
        self.field = field
        # What is wrong with that field, when it says more than ``detail``.
        self.message = message or detail


class NotFound(DomainError):
    """The thing does not exist, or the caller may not know that it does."""


class Forbidden(DomainError):
    """The caller is known but may not do this."""


class Conflict(DomainError):
    """The request conflicts with the current state (duplicate shortcut, already assigned, ...)."""


class Unprocessable(DomainError):
    """Well-formed but unusable (an unknown template variable, an operator who does not exist, ...)."""


class Invalid(DomainError):
    """The input itself is wrong (a bad cursor, a value out of range)."""


class OAuthRefused(Invalid):
    """An OAuth 2.0 token or revocation request refused (RFC 6749 section 5.2): 400 with its ``error`` code."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(detail)
        self.error = error


class TooLarge(DomainError):
    """The content is larger than allowed (a file over its team's limit)."""


class UnsupportedType(DomainError):
    """The content is of a type not accepted here (a file's sniffed type)."""


class Unavailable(DomainError):
    """A dependency the request needs is not there right now."""


def unique_violation(exc: Exception) -> str | None:
    """The name of the unique constraint or index a failed INSERT/UPDATE violated, if that was the failure."""
    cause = getattr(getattr(exc, "orig", None), "__cause__", None)
    if getattr(cause, "sqlstate", None) != "23505":
        return None
    return getattr(cause, "constraint_name", None)


def still_referenced(exc: Exception) -> str | None:
    """The foreign key that still points at a row a DELETE tried to remove, if that was the failure."""
    cause = getattr(getattr(exc, "orig", None), "__cause__", None)
    if getattr(cause, "sqlstate", None) != "23503":
        return None
    return getattr(cause, "constraint_name", None)


def field_conflict(field: str, message: str) -> Conflict:
    """409 naming the field whose value is already taken (``errors: [{field, message}]``)."""
    return Conflict(message, field=field)


def field_invalid(field: str, message: str) -> Unprocessable:
    """422 naming the field: the body parsed, but a value cannot be used (checked against the database, say)."""
    return Unprocessable(message, field=field)


def field_malformed(field: str, message: str) -> Invalid:
    """400 "<field> is not valid", saying what the field should be (a cursor, a filter, a time zone...)."""
    return Invalid(f"{field} is not valid", field=field, message=message)
