"""Readable, timestamped log lines on stderr, as the seed printed them."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(prefix)s %(levelname)s %(asctime)s: %(message)s"


class _PrefixFilter(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        record.prefix = self.prefix
        return True


def setup_logging(level: str = "INFO", prefix: str = "scherbelberg") -> None:
    """Send this package's log records to stderr as ``<prefix> LEVEL time: message``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_PrefixFilter(prefix))
    package = logging.getLogger("scherbelberg_dask")
    package.handlers[:] = [handler]
    package.setLevel(level.upper())
    package.propagate = False
