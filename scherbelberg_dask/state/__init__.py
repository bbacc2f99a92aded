"""Local files of one cluster (keys, certificates, known_hosts, metadata).

The package exports every public name of :mod:`.statedir` (its ``__all__`` lists them).
"""

from . import statedir
from .statedir import *  # noqa: F403

__all__: list[str] = []
__all__ += statedir.__all__
