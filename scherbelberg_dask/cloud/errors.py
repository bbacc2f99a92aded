"""Errors of the cloud layer.  Messages never contain the API token."""

from __future__ import annotations

from scherbelberg_dask.errors import UserError


class CloudError(UserError, RuntimeError):
    """An API call failed.

    Attributes
    ----------
    code
        Hetzner's error code (``"invalid_input"``, ``"unauthorized"``, ...) or ``None``.
    """

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class CloudAuthError(CloudError):
    """The API token is missing or was refused."""


class CloudUnreachableError(CloudError):
    """The API endpoint could not be reached."""


class CatalogError(UserError, ValueError):
    """A server type, image or location is not valid here; the message lists valid choices."""


class ActionFailedError(CloudError):
    """An action ended in status ``error``."""


class WaitTimeoutError(CloudError, TimeoutError):
    """A bounded wait ran out; the message says what was waited for."""
