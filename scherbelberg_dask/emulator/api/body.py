"""Request bodies: JSON parsing and typed, validated field access."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from aiohttp import web

from .errors import APIError, FieldErrors
from .labels import check_labels

logger = logging.getLogger(__name__)

__all__ = ["MAX_USER_DATA", "Body", "hostname_problem", "read_body"]

#: Largest accepted ``user_data`` in bytes (32 KiB).
MAX_USER_DATA = 32 * 1024

_HOST_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def hostname_problem(name: str) -> str | None:
    """Why ``name`` is not a valid RFC 1123 hostname, or ``None``."""
    if not name or len(name) > 253:
        return "must be a hostname of 1-253 characters"
    for label in name.split("."):
        if not _HOST_LABEL.match(label):
            return (
                "must be a valid hostname: dot-separated labels of 1-63 letters, digits "
                "and '-', not starting or ending with '-'"
            )
    return None


async def read_body(request: web.Request) -> Body:
    """Parse the request's JSON body (an empty body counts as ``{}``).

    Raises
    ------
    APIError
        400 ``json_error`` if the body is not a JSON object.
    """
    raw = await request.read()
    if not raw.strip():
        return Body({})
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise APIError(400, "json_error", "request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise APIError(400, "json_error", "request body must be a JSON object")
    return Body(data)


class Body:
    """A request body with typed getters that collect problems per field.

    Call :meth:`done` after reading every field: it raises one ``invalid_input`` naming
    all invalid fields.
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.errors = FieldErrors()

    def has(self, name: str) -> bool:
        """True if ``name`` is present and not null."""
        return self.data.get(name) is not None

    def done(self) -> None:
        """Raise ``invalid_input`` for everything found invalid."""
        self.errors.raise_if_any()

    def string(
        self, name: str, *, required: bool = False, max_length: int | None = None
    ) -> str | None:
        """A string field."""
        value = self.data.get(name)
        if value is None:
            if required:
                self.errors.add(name, "is required")
            return None
        if not isinstance(value, str):
            self.errors.add(name, "must be a string")
            return None
        if required and not value:
            self.errors.add(name, "must not be empty")
        if max_length is not None and len(value) > max_length:
            self.errors.add(name, f"must be at most {max_length} characters")
        return value

    def name(self, field: str = "name", *, required: bool = True, max_length: int = 128) -> str:
        """A resource name (non-empty string)."""
        return self.string(field, required=required, max_length=max_length) or ""

    def boolean(self, name: str, default: bool) -> bool:
        """A boolean field (``null`` means the default)."""
        value = self.data.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.errors.add(name, "must be a boolean")
            return default
        return value

    def integer(self, name: str, *, required: bool = False) -> int | None:
        """An integer id field."""
        value = self.data.get(name)
        if value is None:
            if required:
                self.errors.add(name, "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.errors.add(name, "must be an integer")
            return None
        return value

    def id_or_name(self, name: str, *, required: bool = False) -> int | str | None:
        """A field that names a resource by id (int or numeric string) or name."""
        value = self.data.get(name)
        if value is None:
            if required:
                self.errors.add(name, "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            self.errors.add(name, "must be an ID or a name")
            return None
        return value

    def array(self, name: str) -> list[Any]:
        """A list field (missing or null: empty list)."""
        value = self.data.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            self.errors.add(name, "must be an array")
            return []
        return value

    def obj(self, name: str) -> dict[str, Any]:
        """An object field (missing or null: empty object)."""
        value = self.data.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.errors.add(name, "must be an object")
            return {}
        return value

    def labels(self, name: str = "labels") -> dict[str, str] | None:
        """A validated label map, or ``None`` if absent."""
        if self.data.get(name) is None:
            return None
        return check_labels(self.data[name], self.errors, name)
