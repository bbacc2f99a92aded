"""Fault injection for the emulator.

One :class:`Faults` object per emulator holds every knob: API errors (globally or per
endpoint), failed boots, and the per-server faults (SSH refusal windows, crashes), which
it hands to the emulator to carry out.  All methods are thread-safe, so tests and the CLI
can change faults while the emulator runs in another thread.  Random decisions come from
one ``random.Random``, seeded for reproducible runs.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["API_ERROR_KINDS", "Faults", "InjectedError", "ServerFaultSink"]


@dataclasses.dataclass(frozen=True)
class InjectedError:
    """An API error to answer instead of handling the request."""

    status: int
    code: str
    message: str


#: The API errors that can be injected, by name.
API_ERROR_KINDS: dict[str, InjectedError] = {
    "server_error": InjectedError(500, "server_error", "internal server error (injected)"),
    "unavailable": InjectedError(503, "unavailable", "service temporarily unavailable (injected)"),
    "rate_limit_exceeded": InjectedError(
        429, "rate_limit_exceeded", "rate limit exceeded (injected)"
    ),
    "conflict": InjectedError(
        409, "conflict", "the resource was changed concurrently, retry (injected)"
    ),
}

#: Called by :class:`Faults` to act on a server: ``(kind, server_id, seconds)`` with kind
#: ``"crash"`` (seconds = delay) or ``"refuse_ssh"`` (seconds = window length).
ServerFaultSink = Callable[[str, int, float], None]


def _check_rate(name: str, value: Any) -> float:
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}") from None
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {rate}")
    return rate


def _check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    result = tuple(kinds)
    unknown = [kind for kind in result if kind not in API_ERROR_KINDS]
    if unknown or not result:
        raise ValueError(
            f"api error kinds must be a non-empty subset of {', '.join(API_ERROR_KINDS)}; "
            f"got {list(result)!r}"
        )
    return result


class Faults:
    """Fault injection settings of one emulator (thread-safe).

    Parameters
    ----------
    api_error_rate
        Probability that any API request fails with an injected error.
    boot_failure_rate
        Probability that a server's creation fails (its ``create_server`` action ends in
        ``error``; the server stays ``off`` and never becomes reachable).
    seed
        Seed of the random generator (``None``: unpredictable).
    api_error_kinds
        Which errors to inject, chosen uniformly: names from :data:`API_ERROR_KINDS`.
    """

    def __init__(
        self,
        *,
        api_error_rate: float = 0.0,
        boot_failure_rate: float = 0.0,
        seed: int | None = None,
        api_error_kinds: Iterable[str] = tuple(API_ERROR_KINDS),
    ) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._seed = seed
        self._api_error_rate = _check_rate("api_error_rate", api_error_rate)
        self._endpoint_rates: dict[str, float] = {}
        self._kinds = _check_kinds(api_error_kinds)
        self._boot_failure_rate = _check_rate("boot_failure_rate", boot_failure_rate)
        self._fail_next_boots = 0
        self._sink: ServerFaultSink | None = None
        self._injected = 0
        self._failed_boots = 0

    # -- API errors ---------------------------------------------------------------------

    def set_api_error_rate(self, rate: float, endpoint: str | None = None) -> None:
        """Set the injected error rate globally or for one endpoint.

        Parameters
        ----------
        rate
            Probability between 0 and 1.
        endpoint
            Route template such as ``"POST /v1/servers"`` or
            ``"GET /v1/servers/{id}"``; ``None`` sets the global rate.  A per-endpoint
            rate replaces the global one for that endpoint; rate 0 removes it.
        """
        checked = _check_rate("rate", rate)
        with self._lock:
            if endpoint is None:
                self._api_error_rate = checked
            elif checked == 0.0:
                self._endpoint_rates.pop(endpoint, None)
            else:
                self._endpoint_rates[endpoint] = checked

    def set_api_error_kinds(self, kinds: Iterable[str]) -> None:
        """Choose which errors are injected (names from :data:`API_ERROR_KINDS`)."""
        checked = _check_kinds(kinds)
        with self._lock:
            self._kinds = checked

    @property
    def api_error_rate(self) -> float:
        """The global API error rate."""
        with self._lock:
            return self._api_error_rate

    def pick_api_error(self, endpoint: str) -> InjectedError | None:
        """Decide whether the request to ``endpoint`` fails, and how."""
        with self._lock:
            rate = self._endpoint_rates.get(endpoint, self._api_error_rate)
            if rate <= 0.0 or self._random.random() >= rate:
                return None
            self._injected += 1
            return API_ERROR_KINDS[self._random.choice(self._kinds)]

    # -- boots --------------------------------------------------------------------------

    @property
    def boot_failure_rate(self) -> float:
        """Probability that a server creation fails."""
        with self._lock:
            return self._boot_failure_rate

    @boot_failure_rate.setter
    def boot_failure_rate(self, value: float) -> None:
        checked = _check_rate("boot_failure_rate", value)
        with self._lock:
            self._boot_failure_rate = checked

    def fail_next_boots(self, count: int) -> None:
        """Make the next ``count`` server creations fail (in addition to the rate)."""
        if count < 0:
            raise ValueError(f"count must not be negative, got {count}")
        with self._lock:
            self._fail_next_boots = count

    def next_boot_fails(self) -> bool:
        """Consume one boot decision: True if this server creation must fail."""
        with self._lock:
            if self._fail_next_boots > 0:
                self._fail_next_boots -= 1
                fails = True
            else:
                fails = self._boot_failure_rate > 0.0 and self._random.random() < (
                    self._boot_failure_rate
                )
            self._failed_boots += fails
            return fails

    # -- per-server faults --------------------------------------------------------------

    def attach(self, sink: ServerFaultSink | None) -> None:
        """Connect the emulator that carries out per-server faults (internal)."""
        with self._lock:
            self._sink = sink

    def crash_server(self, server_id: int, after: float = 0.0) -> None:
        """Crash a server (hard power loss: processes die, status ``off``).

        Parameters
        ----------
        server_id
            API id of the server.
        after
            Delay in seconds (scaled by the emulator's ``time_scale``).

        Raises
        ------
        KeyError
            No such server.
        RuntimeError
            The emulator is not running.
        """
        if after < 0:
            raise ValueError(f"after must not be negative, got {after}")
        self._send("crash", server_id, after)

    def refuse_ssh(self, server_id: int, seconds: float) -> None:
        """Make a server refuse new SSH connections for ``seconds`` (time-scaled).

        Raises
        ------
        KeyError
            No such server.
        RuntimeError
            The emulator is not running.
        """
        if seconds < 0:
            raise ValueError(f"seconds must not be negative, got {seconds}")
        self._send("refuse_ssh", server_id, seconds)

    def _send(self, kind: str, server_id: int, seconds: float) -> None:
        with self._lock:
            sink = self._sink
        if sink is None:
            raise RuntimeError("the emulator is not running")
        sink(kind, server_id, seconds)

    # -- bulk access (CLI, introspection route) -----------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The current settings as a JSON-compatible dict."""
        with self._lock:
            return {
                "api_error_rate": self._api_error_rate,
                "api_error_rates": dict(self._endpoint_rates),
                "api_error_kinds": list(self._kinds),
                "boot_failure_rate": self._boot_failure_rate,
                "fail_next_boots": self._fail_next_boots,
                "seed": self._seed,
                "injected_api_errors": self._injected,
                "failed_boots": self._failed_boots,
            }

    def update(self, settings: Mapping[str, Any]) -> None:
        """Change the settings named in ``settings`` (keys as in :meth:`to_dict`).

        ``api_error_rates`` replaces the whole per-endpoint table; ``seed`` re-seeds the
        generator.  Everything is validated before anything changes.

        Raises
        ------
        ValueError
            An unknown key or an invalid value.
        """
        allowed = {
            "api_error_rate",
            "api_error_rates",
            "api_error_kinds",
            "boot_failure_rate",
            "fail_next_boots",
            "seed",
        }
        # The counters of to_dict() are read-only: a settings dict read back is accepted.
        unknown = sorted(set(settings) - allowed - {"injected_api_errors", "failed_boots"})
        if unknown:
            raise ValueError(
                f"unknown fault settings {unknown}; valid: {', '.join(sorted(allowed))}"
            )
        new: dict[str, Any] = {}
        if "api_error_rate" in settings:
            new["rate"] = _check_rate("api_error_rate", settings["api_error_rate"])
        if "api_error_rates" in settings:
            table = settings["api_error_rates"]
            if not isinstance(table, Mapping):
                raise ValueError("api_error_rates must map route templates to rates")
            new["rates"] = {
                str(key): _check_rate(f"api_error_rates[{key!r}]", value)
                for key, value in table.items()
            }
        if "api_error_kinds" in settings:
            kinds = settings["api_error_kinds"]
            if isinstance(kinds, str):
                kinds = [kinds]
            new["kinds"] = _check_kinds(kinds)
        if "boot_failure_rate" in settings:
            new["boot"] = _check_rate("boot_failure_rate", settings["boot_failure_rate"])
        if "fail_next_boots" in settings:
            count = settings["fail_next_boots"]
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise ValueError(f"fail_next_boots must be a non-negative integer: {count!r}")
            new["next"] = count
        if "seed" in settings:
            seed = settings["seed"]
            if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
                raise ValueError(f"seed must be an integer or null, got {seed!r}")
            new["seed"] = seed
        with self._lock:
            if "rate" in new:
                self._api_error_rate = new["rate"]
            if "rates" in new:
                self._endpoint_rates = {k: v for k, v in new["rates"].items() if v > 0}
            if "kinds" in new:
                self._kinds = new["kinds"]
            if "boot" in new:
                self._boot_failure_rate = new["boot"]
            if "next" in new:
                self._fail_next_boots = new["next"]
            if "seed" in new:
                self._seed = new["seed"]
                self._random.seed(new["seed"])
