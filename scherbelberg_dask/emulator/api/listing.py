"""List endpoints: query parameters, filters, sorting and pagination."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from aiohttp import web

from .errors import invalid_input
from .labels import LabelSelector

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PER_PAGE",
    "MAX_PER_PAGE",
    "Query",
    "filter_common",
    "list_response",
    "paginate",
    "sort_items",
]

T = TypeVar("T")

DEFAULT_PER_PAGE = 25
MAX_PER_PAGE = 50


class Query:
    """Typed access to a request's query string (repeated keys allowed)."""

    def __init__(self, request: web.Request) -> None:
        self._query = request.query

    def one(self, name: str) -> str | None:
        """The last value of ``name``, or ``None``."""
        values = self._query.getall(name, [])
        return values[-1] if values else None

    def all(self, name: str) -> list[str]:
        """Every value of a repeatable parameter (``?status=a&status=b``)."""
        return list(self._query.getall(name, []))

    def int_list(self, name: str) -> list[int]:
        """Every value of a repeatable integer parameter."""
        result = []
        for value in self.all(name):
            try:
                result.append(int(value))
            except ValueError:
                raise invalid_input(name, f"{value!r} is not an integer") from None
        return result

    def integer(self, name: str, default: int) -> int:
        """A single integer parameter."""
        value = self.one(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise invalid_input(name, f"{value!r} is not an integer") from None

    def boolean(self, name: str) -> bool | None:
        """A boolean parameter, case-insensitive (``true``/``True``/``1``)."""
        value = self.one(name)
        if value is None:
            return None
        lowered = value.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise invalid_input(name, f"{value!r} is not a boolean")

    def choices(self, name: str, allowed: Iterable[str]) -> list[str]:
        """A repeatable parameter restricted to ``allowed`` values."""
        allowed_set = set(allowed)
        values = self.all(name)
        bad = [value for value in values if value not in allowed_set]
        if bad:
            raise invalid_input(
                name, f"invalid value(s) {bad}; allowed: {', '.join(sorted(allowed_set))}"
            )
        return values

    def selector(self) -> LabelSelector | None:
        """The parsed ``label_selector``, if given."""
        text = self.one("label_selector")
        return None if text is None else LabelSelector(text)


def filter_common(
    items: Iterable[T],
    query: Query,
    *,
    name: Callable[[T], str | None] | None = None,
    labels: Callable[[T], dict[str, str]] | None = None,
) -> list[T]:
    """Apply the exact ``name`` filter and the ``label_selector`` filter."""
    result = list(items)
    wanted = query.one("name")
    if name is not None and wanted is not None:
        result = [item for item in result if name(item) == wanted]
    if labels is not None:
        selector = query.selector()
        if selector is not None:
            result = [item for item in result if selector.matches(labels(item))]
    return result


def sort_items(
    items: Sequence[T],
    query: Query,
    keys: dict[str, Callable[[T], Any]],
) -> list[T]:
    """Sort by the repeated ``sort=field[:asc|:desc]`` parameters (default: ``id``).

    ``None`` values sort first in ascending order.  Unknown fields or directions give
    422 ``invalid_input``.
    """
    specs = query.all("sort")
    result = sorted(items, key=lambda item: _none_first(keys["id"](item)))
    parsed: list[tuple[str, bool]] = []
    for spec in specs:
        field, _, direction = spec.partition(":")
        if field not in keys:
            raise invalid_input(
                "sort", f"cannot sort by {field!r}; allowed: {', '.join(sorted(keys))}"
            )
        if direction not in ("", "asc", "desc"):
            raise invalid_input("sort", f"invalid sort direction {direction!r} (asc or desc)")
        parsed.append((field, direction == "desc"))
    # Stable sorts from the least to the most significant key.
    for field, descending in reversed(parsed):
        result.sort(key=_sort_key(keys[field]), reverse=descending)
    return result


def _sort_key(getter: Callable[[T], Any]) -> Callable[[T], tuple[bool, Any]]:
    return lambda item: _none_first(getter(item))


def _none_first(value: Any) -> tuple[bool, Any]:
    return (value is not None, value if value is not None else 0)


def paginate(items: Sequence[T], query: Query) -> tuple[list[T], dict[str, Any]]:
    """Cut one page out of ``items`` and build ``meta``.

    ``page`` starts at 1; ``per_page`` defaults to 25 and is capped at 50 (larger values
    are clamped, values below 1 are invalid).  A page beyond the last one is empty.
    """
    page = query.integer("page", 1)
    per_page = query.integer("per_page", DEFAULT_PER_PAGE)
    if page < 1:
        raise invalid_input("page", "must be at least 1")
    if per_page < 1:
        raise invalid_input("per_page", "must be at least 1")
    per_page = min(per_page, MAX_PER_PAGE)
    total = len(items)
    last_page = max(1, math.ceil(total / per_page))
    start = (page - 1) * per_page
    chunk = list(items[start : start + per_page])
    meta = {
        "pagination": {
            "page": page,
            "per_page": per_page,
            "previous_page": page - 1 if page > 1 else None,
            "next_page": page + 1 if page < last_page else None,
            "last_page": last_page,
            "total_entries": total,
        }
    }
    return chunk, {"meta": meta}


def list_response(
    key: str,
    items: Sequence[T],
    query: Query,
    render: Callable[[T], dict[str, Any]],
    sort_keys: dict[str, Callable[[T], Any]] | None,
) -> dict[str, Any]:
    """Sort, paginate and render a list answer ``{key: [...], "meta": {...}}``."""
    if sort_keys is not None:
        ordered = sort_items(items, query, sort_keys)
    else:
        if query.all("sort"):
            raise invalid_input("sort", "this endpoint does not support sorting")
        ordered = list(items)
    chunk, meta = paginate(ordered, query)
    return {key: [render(item) for item in chunk], **meta}
