"""Labels: validation of label maps and the label selector language.

Selector grammar (Hetzner docs, Kubernetes semantics where the docs are silent): terms
joined by ``,`` (AND); a term is ``k=v``, ``k==v``, ``k!=v``, ``k`` (present), ``!k``
(absent), ``k in (v1,v2)`` or ``k notin (v1,v2)``.  A resource without ``k`` matches
``k!=v`` and ``k notin (...)``.  Whitespace around operators is tolerated.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from .errors import FieldErrors, invalid_input

logger = logging.getLogger(__name__)

__all__ = ["LabelSelector", "check_labels", "label_key_problem", "label_value_problem"]

_NAME = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9._-]{0,61}[a-zA-Z0-9])?$")
_VALUE = re.compile(r"^(|[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9._-]{0,61}[a-zA-Z0-9])$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_RESERVED_PREFIX = "hetzner.cloud"

# A term's key: anything up to an operator, whitespace or parenthesis.
_KEY = r"[^\s=!,()]+"
_TERM_EQ = re.compile(rf"^({_KEY})\s*(==|!=|=)\s*([^\s=!,()]*)$")
_TERM_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s*\((.*)\)$")
_TERM_NOT = re.compile(rf"^!\s*({_KEY})$")
_TERM_HAS = re.compile(rf"^({_KEY})$")


def label_key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid label key, or ``None`` if it is."""
    prefix, slash, name = key.rpartition("/")
    if not _NAME.match(name):
        return (
            f"label key {key!r}: the name part must be 1-63 characters, start and end "
            "alphanumeric, with '-', '_', '.' allowed in between"
        )
    if slash:
        if (
            not prefix
            or len(prefix) > 253
            or not all(_DNS_LABEL.match(part) for part in prefix.split("."))
        ):
            return f"label key {key!r}: the prefix must be a DNS subdomain"
        if prefix == _RESERVED_PREFIX or prefix.endswith("." + _RESERVED_PREFIX):
            return f"label key {key!r}: the prefix {_RESERVED_PREFIX}/ is reserved"
    return None


def label_value_problem(value: Any) -> str | None:
    """Why ``value`` is not a valid label value, or ``None`` if it is."""
    if not isinstance(value, str):
        return f"label value {value!r} must be a string"
    if not _VALUE.match(value):
        return (
            f"label value {value!r} must be empty or 1-63 characters that start and end "
            "alphanumeric, with '-', '_', '.' allowed in between"
        )
    return None


def check_labels(labels: Any, errors: FieldErrors, field: str = "labels") -> dict[str, str]:
    """Validate a label map from a request body, recording problems in ``errors``."""
    if not isinstance(labels, Mapping):
        errors.add(field, "must be an object of string keys and string values")
        return {}
    result: dict[str, str] = {}
    for key, value in labels.items():
        problem = label_key_problem(str(key)) or label_value_problem(value)
        if problem:
            errors.add(field, problem)
        else:
            result[str(key)] = value
    return result


@dataclasses.dataclass(frozen=True)
class _Term:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        tests: dict[str, Callable[[], bool]] = {
            "exists": lambda: present,
            "!exists": lambda: not present,
            "=": lambda: present and labels[self.key] in self.values,
            "in": lambda: present and labels[self.key] in self.values,
            "!=": lambda: not present or labels[self.key] not in self.values,
            "notin": lambda: not present or labels[self.key] not in self.values,
        }
        return tests[self.op]()


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    terms: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise ValueError("unbalanced ')'")
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise ValueError("unbalanced '('")
    terms.append("".join(current))
    return terms


def _parse_term(raw: str) -> _Term:
    text = raw.strip()
    if not text:
        raise ValueError("empty term")
    match = _TERM_SET.match(text)
    if match:
        key, op, inner = match.groups()
        values = [value.strip() for value in inner.split(",")]
        if not values or any(not value for value in values):
            raise ValueError(f"term {text!r}: empty value in list")
        term = _Term(key, op, frozenset(values))
    elif match := _TERM_EQ.match(text):
        key, op, value = match.groups()
        term = _Term(key, "=" if op in ("=", "==") else "!=", frozenset([value]))
    elif match := _TERM_NOT.match(text):
        term = _Term(match.group(1), "!exists", frozenset())
    elif match := _TERM_HAS.match(text):
        term = _Term(match.group(1), "exists", frozenset())
    else:
        raise ValueError(f"cannot parse term {text!r}")
    problem = label_key_problem(term.key)
    if problem:
        raise ValueError(problem)
    for value in term.values:
        problem = label_value_problem(value)
        if problem:
            raise ValueError(problem)
    return term


class LabelSelector:
    """A parsed label selector.

    Raises
    ------
    APIError
        422 ``invalid_input`` (field ``label_selector``) for a malformed selector.
    """

    def __init__(self, text: str, field: str = "label_selector") -> None:
        self.text = text
        try:
            self._terms = [_parse_term(term) for term in _split_terms(text)]
        except ValueError as exc:
            raise invalid_input(field, f"invalid label selector {text!r}: {exc}") from None

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True if ``labels`` satisfies every term."""
        return all(term.matches(labels) for term in self._terms)
