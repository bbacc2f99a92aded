"""List endpoints: query parameters, filters, sorting and pagination.

Query parameters follow one rule, kept here: each ``GET`` route reads only the
parameters its operation documents in Hetzner's OpenAPI description
(:data:`DOCUMENTED_PARAMETERS`).  Anything else in the query string is ignored, as the
real API does; official clients rely on it (hcloud-go and the ``hcloud`` CLI send
``sort``, ``page`` and ``per_page`` on every list call).  Documented parameters keep
their validation: a bad value gives 422 ``invalid_input``.  ``sort`` is validated against
the fields a route sorts by (the operation's enum) where it is documented, and is
invisible where it is not (``/server_types``, ``/isos``, ...).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from aiohttp import web
from multidict import MultiDict

from .errors import invalid_input
from .labels import LabelSelector
from .middleware import route_template

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PER_PAGE",
    "DOCUMENTED_PARAMETERS",
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

_PAGES = frozenset({"page", "per_page"})
_ACTION_LIST = frozenset({"sort", "status"}) | _PAGES
_ACTION_FAMILIES = ("servers", "networks", "firewalls", "images")

#: The query parameters each ``GET`` route of the emulator documents, by route template,
#: as listed in Hetzner's OpenAPI description (``tests/data/hcloud-openapi.json``; the
#: test suite compares the two).  One deliberate addition: ``/v1/actions`` reads ``sort``,
#: which the description no longer lists but Hetzner's notes give sort fields for and the
#: ``hcloud`` CLI sends on every poll (``?id=..&sort=status&sort=id``).
DOCUMENTED_PARAMETERS: Mapping[str, frozenset[str]] = {
    "/v1/actions": frozenset({"id", "sort"}),
    "/v1/servers": frozenset({"name", "label_selector", "sort", "status"}) | _PAGES,
    "/v1/networks": frozenset({"name", "label_selector", "sort"}) | _PAGES,
    "/v1/firewalls": frozenset({"name", "label_selector", "sort"}) | _PAGES,
    "/v1/ssh_keys": frozenset({"name", "label_selector", "sort", "fingerprint"}) | _PAGES,
    "/v1/placement_groups": frozenset({"name", "label_selector", "sort", "type"}) | _PAGES,
    "/v1/images": frozenset(
        {
            "name",
            "label_selector",
            "sort",
            "type",
            "status",
            "bound_to",
            "include_deprecated",
            "architecture",
        }
    )
    | _PAGES,
    "/v1/server_types": frozenset({"name"}) | _PAGES,
    "/v1/locations": frozenset({"name", "sort"}) | _PAGES,
    "/v1/datacenters": frozenset({"name", "sort"}) | _PAGES,
    # Collections the emulator lists as empty.
    "/v1/certificates": frozenset({"name", "label_selector", "sort", "type"}) | _PAGES,
    "/v1/floating_ips": frozenset({"name", "label_selector", "sort"}) | _PAGES,
    "/v1/isos": frozenset({"name", "architecture", "include_architecture_wildcard"}) | _PAGES,
    "/v1/load_balancer_types": frozenset({"name"}) | _PAGES,
    "/v1/load_balancers": frozenset({"name", "label_selector", "sort"}) | _PAGES,
    "/v1/primary_ips": frozenset({"name", "label_selector", "sort", "ip"}) | _PAGES,
    "/v1/volumes": frozenset({"name", "label_selector", "sort", "status"}) | _PAGES,
    **{f"/v1/{family}/actions": _ACTION_LIST | {"id"} for family in _ACTION_FAMILIES},
    **{f"/v1/{family}/{{id}}/actions": _ACTION_LIST for family in _ACTION_FAMILIES},
}


class Query:
    """Typed access to the documented part of a request's query string.

    Only the parameters :data:`DOCUMENTED_PARAMETERS` lists for the request's route are
    visible; the others are ignored (logged at debug level).  Repeated keys are kept.

    Parameters
    ----------
    request
        A request matched to a route of :data:`DOCUMENTED_PARAMETERS`.

    Raises
    ------
    LookupError
        If the route is not in :data:`DOCUMENTED_PARAMETERS` (a missing table entry is
        a bug of the emulator, reported as a 500).
    """

    def __init__(self, request: web.Request) -> None:
        route = route_template(request)
        documented = DOCUMENTED_PARAMETERS.get(route or "")
        if documented is None:
            raise LookupError(f"no documented query parameters for route {route!r}")
        self._query: MultiDict[str] = MultiDict(
            (key, value) for key, value in request.query.items() if key in documented
        )
        ignored = sorted(set(request.query) - documented)
        if ignored:
            logger.debug("ignoring undocumented query parameters %s on %s", ignored, route)

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

    Parameters
    ----------
    items
        What to sort.
    query
        The request's query; ``sort`` is absent where the route does not document it.
    keys
        The fields the route may be sorted by (its ``sort`` enum), with their getters;
        must include ``id``.

    Returns
    -------
    list
        ``items`` in the requested order.  ``None`` values sort first in ascending order.

    Raises
    ------
    APIError
        422 ``invalid_input`` for an unknown field or direction.
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
    """Sort, paginate and render a list answer ``{key: [...], "meta": {...}}``.

    Parameters
    ----------
    key
        The plural key of the answer (``"servers"``).
    items
        The filtered items.
    query
        The request's query (``sort``, ``page``, ``per_page``).
    render
        Turns one item into its JSON object.
    sort_keys
        The route's sort fields (see :func:`sort_items`), or ``None`` for a route that
        documents no ``sort``: items keep their order.

    Returns
    -------
    dict
        The answer body.
    """
    ordered = sort_items(items, query, sort_keys) if sort_keys is not None else list(items)
    chunk, meta = paginate(ordered, query)
    return {key: [render(item) for item in chunk], **meta}
