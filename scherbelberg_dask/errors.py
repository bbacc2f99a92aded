"""The one mark of an error that users cause or meet, as opposed to a bug.

Every error class of this package that a user can provoke or run into (bad input, no
such cluster, a missing token, an unreachable endpoint, a node that failed to start, ...)
derives from :class:`UserError` as well as from the built-in class it has always been
(``ValueError``, ``LookupError``, ``RuntimeError``, ...).  The CLI prints these as one
line; anything else is reported as unexpected, with a hint to run with ``-l DEBUG`` for
the traceback (see ``docs/design.md``, "CLI").
"""

from __future__ import annotations


class UserError(Exception):
    """An error whose message tells the user what went wrong and how to fix it."""


class SettingsError(UserError, ValueError):
    """A setting or argument is invalid; the message says which and how to fix it."""


class ClusterExistsError(UserError, ValueError):
    """A cluster of this prefix already has resources in the project."""


class ClusterNotFoundError(UserError, LookupError):
    """No cluster of this prefix exists (or its local state is missing)."""


class NodeNotFoundError(UserError, LookupError):
    """A cluster has no node of that name (the message lists its nodes)."""


class ToolMissingError(UserError, FileNotFoundError):
    """A program this needs (``ssh``, ``scp``) is not installed."""


class TunnelClosedError(UserError, ConnectionError):
    """An SSH tunnel closed while it was being held open."""
