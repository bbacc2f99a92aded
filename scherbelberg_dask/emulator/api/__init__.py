"""The emulated Hetzner Cloud API v1 (aiohttp), one module per resource family."""

from .app import build_app

__all__ = ["build_app"]
