"""Finding resources named in paths and bodies; keeping names unique."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol, TypeVar

from aiohttp import web

from .body import Body
from .errors import APIError, not_found, uniqueness_error

logger = logging.getLogger(__name__)

__all__ = ["by_id_or_name", "path_id", "path_item", "rename_and_relabel", "unique_name"]

T = TypeVar("T")


class Named(Protocol):
    """A resource with a unique name and labels, both changeable with PUT."""

    name: str
    labels: dict[str, str]


N = TypeVar("N", bound=Named)


def path_id(request: web.Request, name: str = "id") -> int:
    """An integer id from the URL path (anything else: 404 ``not_found``)."""
    text = request.match_info[name]
    if not text.isdigit():
        raise APIError(404, "not_found", f"{text!r} is not a valid ID")
    return int(text)


def path_item(request: web.Request, items: Mapping[int, T], kind: str, name: str = "id") -> T:
    """The resource whose id is in the URL path, or 404 ``not_found``."""
    ident = path_id(request, name)
    try:
        return items[ident]
    except KeyError:
        raise not_found(kind, ident) from None


def by_id_or_name(
    items: Iterable[T],
    ident: int | str,
    get_id: Callable[[T], int],
    get_name: Callable[[T], str | None],
) -> T | None:
    """The item with id ``ident`` (int or numeric string) or name ``ident``."""
    for item in items:
        if isinstance(ident, int) or ident.isdigit():
            if get_id(item) == int(ident):
                return item
        elif get_name(item) == ident:
            return item
    return None


def unique_name(
    items: Iterable[T], name: str, get_name: Callable[[T], str], kind: str, skip: T | None = None
) -> None:
    """409 ``uniqueness_error`` if another item already has ``name``."""
    for item in items:
        if item is not skip and get_name(item) == name:
            raise uniqueness_error("name", f"a {kind} named {name!r} already exists")


def rename_and_relabel(body: Body, items: Iterable[N], item: N, kind: str) -> None:
    """Apply the ``name`` and ``labels`` of a PUT body to ``item`` (each only if given).

    Validates the whole body first (:meth:`Body.done`): read its other fields before.

    Raises
    ------
    APIError
        422 ``invalid_input``; 409 ``uniqueness_error`` if another of ``items`` (a
        ``kind``) already has the new name.
    """
    name = body.name(required=False) if body.has("name") else None
    labels = body.labels()
    body.done()
    if name:
        unique_name(items, name, lambda other: other.name, kind, skip=item)
        item.name = name
    if labels is not None:
        item.labels = labels
