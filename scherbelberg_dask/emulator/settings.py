"""Timing profiles of the emulator.

A profile says how long the emulated cloud takes for things: the latency of every API
request, and how long each kind of action runs.  ``instant`` has no artificial delays at
all (actions still pass through ``running`` and complete on the next turns of the event
loop); ``realistic`` follows the durations Hetzner shows (sources in
``docs/emulator-catalog.md``).  Every duration is multiplied by ``time_scale``.
"""

from __future__ import annotations

import dataclasses
import logging

logger = logging.getLogger(__name__)

__all__ = ["PROFILES", "TimingProfile", "get_profile"]


@dataclasses.dataclass(frozen=True)
class TimingProfile:
    """Durations in seconds, before scaling.

    Attributes
    ----------
    name
        Profile name.
    api_latency
        Added to every API request.
    create_server
        ``create_server`` action (status ``initializing``).
    start_server
        ``start_server`` action (status ``starting``) before the server is ``running``.
    ssh_ready
        From ``running`` until the machine boots and SSH accepts connections.
    stop_server
        ``stop_server`` (hard power off).
    shutdown_signal
        ``shutdown_server`` action (the ACPI signal is delivered).
    shutdown_guest
        From the ACPI signal until the guest starts shutting down its services.
    reboot
        ``reboot_server``/``reset_server`` actions (the machine is down meanwhile).
    delete_server
        ``delete_server`` action (status ``deleting``).
    create_image
        ``create_image`` action (image status ``creating``).
    network_change
        Network attach/detach and subnet/route changes.
    firewall_change
        Firewall rule and application changes.
    small_action
        Protection changes and other bookkeeping actions.
    """

    name: str
    api_latency: float = 0.0
    create_server: float = 0.0
    start_server: float = 0.0
    ssh_ready: float = 0.0
    stop_server: float = 0.0
    shutdown_signal: float = 0.0
    shutdown_guest: float = 0.0
    reboot: float = 0.0
    delete_server: float = 0.0
    create_image: float = 0.0
    network_change: float = 0.0
    firewall_change: float = 0.0
    small_action: float = 0.0

    def scaled(self, time_scale: float) -> TimingProfile:
        """Return a copy with every duration multiplied by ``time_scale``."""
        if time_scale < 0:
            raise ValueError(f"time_scale must not be negative, got {time_scale}")
        values = {
            field.name: getattr(self, field.name) * time_scale
            for field in dataclasses.fields(self)
            if field.name != "name"
        }
        return dataclasses.replace(self, **values)


#: Built-in profiles.  ``realistic`` figures: see docs/emulator-catalog.md, "Timing".
PROFILES: dict[str, TimingProfile] = {
    "instant": TimingProfile(name="instant"),
    "realistic": TimingProfile(
        name="realistic",
        api_latency=0.12,
        create_server=8.0,
        start_server=6.0,
        ssh_ready=15.0,
        stop_server=2.0,
        shutdown_signal=1.0,
        shutdown_guest=3.0,
        reboot=5.0,
        delete_server=3.0,
        create_image=20.0,
        network_change=2.0,
        firewall_change=1.5,
        small_action=0.5,
    ),
}


def get_profile(name: str, time_scale: float = 1.0) -> TimingProfile:
    """Look up a profile by name and scale it.

    Raises
    ------
    ValueError
        For an unknown profile name (the message lists the valid ones).
    """
    try:
        profile = PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown timing profile {name!r}; choose one of {', '.join(sorted(PROFILES))}"
        ) from None
    return profile.scaled(time_scale)
