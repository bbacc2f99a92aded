"""SSH to cluster servers with pinned host keys (asyncssh, plus OpenSSH command lines).

The package exports every public name of its modules; each module's ``__all__`` lists them.
"""

from . import client, errors, openssh
from .client import *  # noqa: F403
from .errors import *  # noqa: F403
from .openssh import *  # noqa: F403

__all__: list[str] = []
__all__ += client.__all__
__all__ += errors.__all__
__all__ += openssh.__all__
