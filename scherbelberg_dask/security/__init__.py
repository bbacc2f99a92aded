"""Key material of a cluster: TLS CA and certificates, SSH key pairs, known_hosts lines.

The package exports every public name of its modules; each module's ``__all__`` lists them.
"""

from . import known_hosts, sshkeys, tls
from .known_hosts import *  # noqa: F403
from .sshkeys import *  # noqa: F403
from .tls import *  # noqa: F403

__all__: list[str] = []
__all__ += known_hosts.__all__
__all__ += sshkeys.__all__
__all__ += tls.__all__
