"""What the client ships to an autonomous cluster's scheduler node, and how.

The controller runs our own code, the client's exact copy: the installed package
directory, zipped (:func:`package_zip`; Python imports it from the zip).  Next to it go
the controller's ``controller.json``, a copy of the cluster's local state (the SSH key
and CA it needs to make workers, their pinned host keys, the stored settings) and the API
token.  The bootstrap profile puts them where only the controller's system user reads
them and starts the service (``install_controller`` of each profile).
"""

from __future__ import annotations

import functools
import io
import os
import time
import zipfile
from pathlib import Path

from scherbelberg_dask.controller.spec import ControllerSpec, Directive
from scherbelberg_dask.state.statedir import StateDir

#: The package zip's name in the controller's directory.
PACKAGE_ZIP = "scherbelberg_dask.zip"
#: Where the copy of the local state goes, relative to the controller's directory.
STATE_BASE = "state"


@functools.lru_cache(maxsize=1)
def package_zip() -> bytes:
    """Our installed package, zipped (sources and data; no bytecode caches)."""
    import scherbelberg_dask

    root = Path(scherbelberg_dask.__file__).parent
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for directory, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith((".pyc", ".pyo")):
                    continue
                path = Path(directory, name)
                archive.write(path, str(Path("scherbelberg_dask", path.relative_to(root))))
    return buffer.getvalue()


def state_files(state: StateDir) -> dict[str, bytes]:
    """Every file of the cluster's local state, by path below the state base."""
    files = {}
    for path in sorted(state.path.rglob("*")):
        if path.is_file() and not path.name.endswith(".tmp"):
            files[f"{state.prefix}/{path.relative_to(state.path)}"] = path.read_bytes()
    return files


def controller_files(
    state: StateDir,
    *,
    endpoint: str,
    created: float,
    interval: float,
    idle_timeout: float | None,
    max_lifetime: float | None,
) -> dict[str, bytes]:
    """The controller's files (no token), by path relative to its directory (blocking)."""
    spec = ControllerSpec(
        prefix=state.prefix,
        endpoint=endpoint,
        state_dir=STATE_BASE,
        created=created,
        interval=interval,
        directive=Directive(
            generation=time.time_ns(), idle_timeout=idle_timeout, max_lifetime=max_lifetime
        ),
    )
    return {
        "controller.json": spec.to_json(),
        PACKAGE_ZIP: package_zip(),
        **{f"{STATE_BASE}/{path}": data for path, data in state_files(state).items()},
    }
