"""The API's error envelope: one exception type that handlers raise, rendered by middleware."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "APIError",
    "FieldErrors",
    "invalid_input",
    "locked",
    "not_found",
    "uniqueness_error",
]


class APIError(Exception):
    """An error answer of the Hetzner API: ``{"error": {"code", "message", "details"}}``.

    Parameters
    ----------
    status
        HTTP status.
    code
        Hetzner error code (``invalid_input``, ``not_found``, ...).
    message
        Human readable message (never contains secrets).
    details
        Code-specific details object, or ``None``.
    """

    def __init__(
        self, status: int, code: str, message: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details) if details is not None else None

    def body(self) -> dict[str, Any]:
        """The JSON body of the error answer."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class FieldErrors:
    """Collects ``invalid_input`` messages per request field, raised together."""

    def __init__(self) -> None:
        self._fields: dict[str, list[str]] = {}

    def add(self, field: str, message: str) -> None:
        """Record that ``field`` is invalid because of ``message``."""
        self._fields.setdefault(field, []).append(message)

    def raise_if_any(self) -> None:
        """Raise :func:`invalid_input` for everything collected so far."""
        if self._fields:
            raise invalid_input(self._fields)


def invalid_input(
    fields: Mapping[str, Iterable[str]] | str, message: str = "is invalid"
) -> APIError:
    """422 ``invalid_input`` naming the invalid fields.

    Parameters
    ----------
    fields
        ``{field: [messages]}``, or a single field name whose problem is ``message``.
    message
        The problem of a single field.
    """
    if isinstance(fields, str):
        table = {fields: [message]}
    else:
        table = {name: list(messages) for name, messages in fields.items()}
    summary = "; ".join(f"{name}: {', '.join(messages)}" for name, messages in table.items())
    details = {"fields": [{"name": name, "messages": messages} for name, messages in table.items()]}
    return APIError(422, "invalid_input", f"invalid input in {summary}", details)


def not_found(kind: str, ident: object) -> APIError:
    """404 ``not_found`` for a resource kind and id or name."""
    return APIError(404, "not_found", f"{kind} with ID {ident} not found")


def uniqueness_error(field: str, message: str) -> APIError:
    """409 ``uniqueness_error`` naming the duplicate field."""
    return APIError(409, "uniqueness_error", message, {"fields": [{"name": field}]})


def locked(message: str) -> APIError:
    """423 ``locked``: another action is running on the resource."""
    return APIError(423, "locked", message)
