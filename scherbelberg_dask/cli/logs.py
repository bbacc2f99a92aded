"""Readable, timestamped log lines on stderr, as the seed printed them.

``cluster INFO 2022-01-28 14:24:33,141: Creating SSH key ...``: the first word is the
cluster prefix the command works on (``scherbelberg`` for commands without one).
"""

from __future__ import annotations

import logging
import sys

FORMAT = "%(prefix)s %(levelname)s %(asctime)s: %(message)s"

#: Log levels the CLI offers (``-l/--log-level``).
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class _PrefixFilter(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        record.prefix = self.prefix
        return True


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record.

    A rich progress display replaces ``sys.stderr`` while it runs so that log lines
    appear above the bar instead of tearing it.
    """

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def setup_logging(level: str = "INFO", prefix: str = "scherbelberg") -> None:
    """Send this package's log records to stderr as ``<prefix> LEVEL time: message``."""
    handler = _StderrHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_PrefixFilter(prefix))
    package = logging.getLogger("scherbelberg_dask")
    package.handlers[:] = [handler]
    package.setLevel(level.upper())
    package.propagate = False
