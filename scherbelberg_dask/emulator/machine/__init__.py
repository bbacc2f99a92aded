"""Emulated machines of the local Hetzner Cloud emulator (see ``interface.py``)."""

from .interface import EMULATOR_IMAGE_NAME, LoginUser, MachineEvent, MachineInterface, MachineSpec
from .machine import Machine
from .processes import kill_tagged

__all__ = [
    "EMULATOR_IMAGE_NAME",
    "LoginUser",
    "Machine",
    "MachineEvent",
    "MachineInterface",
    "MachineSpec",
    "kill_tagged",
]
