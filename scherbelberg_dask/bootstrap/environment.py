"""What a node must run so that it matches the client (docs/design.md, "Bootstrap").

A worker that runs other versions than the client is a classic Dask failure: nodes get the
client's Python major.minor and the exact local versions of dask, distributed and the
packages that decide how data is serialized, plus the user's extra packages.  Every node
of an autonomous cluster also gets the controller's dependencies at the client's versions
(``controller``): one environment per cluster, so one snapshot serves all its nodes, and
the scheduler node's controller finds what it imports already there.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import sys

#: Packages whose versions must match between client and nodes, when installed locally.
PINNED = (
    "dask",
    "distributed",
    "cloudpickle",
    "msgpack",
    "toolz",
    "tornado",
    "numpy",
    "pandas",
    "pyarrow",
    "lz4",
)

#: Python snippet run on a node: prints the Python version and the pinned packages found.
PROBE = (
    "import json, sys, importlib.metadata as m\n"
    "v = {}\n"
    f"for n in {list(PINNED)!r}:\n"
    "    try: v[n] = m.version(n)\n"
    "    except m.PackageNotFoundError: pass\n"
    "print(json.dumps({'python': '%d.%d' % sys.version_info[:2], 'packages': v}))\n"
)


@dataclasses.dataclass(frozen=True)
class NodeEnvironment:
    """The Python environment nodes must have.

    Attributes
    ----------
    python
        Python major.minor.
    pinned
        Exact versions of the packages of :data:`PINNED` found on the client.
    extra
        The user's extra pip requirement specifiers.
    controller
        The nodes belong to an autonomous cluster: the environment also holds the
        controller's dependencies (:func:`~.controller_unit.requirements`).
    """

    python: str
    pinned: dict[str, str]
    extra: tuple[str, ...] = ()
    controller: bool = False

    @classmethod
    def local(
        cls, extra: list[str] | tuple[str, ...] = (), *, controller: bool = False
    ) -> NodeEnvironment:
        """The environment of this process, plus ``extra`` pip requirement specifiers."""
        pinned = {}
        for name in PINNED:
            try:
                pinned[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                continue
        python = f"{sys.version_info[0]}.{sys.version_info[1]}"
        return cls(python, pinned, tuple(extra), controller=controller)

    @property
    def controller_requirements(self) -> list[str]:
        """The controller's dependencies at the client's versions (none unless
        ``controller``)."""
        if not self.controller:
            return []
        from scherbelberg_dask.bootstrap.controller_unit import requirements

        return requirements()

    @property
    def requirements(self) -> list[str]:
        """pip requirement specifiers for the node."""
        pins = [f"{name}=={version}" for name, version in self.pinned.items()]
        return pins + list(self.extra) + self.controller_requirements

    def mismatches(self, probe_output: str) -> list[str]:
        """Differences between this environment and a node's :data:`PROBE` output."""
        found = json.loads(probe_output)
        problems = []
        if found["python"] != self.python:
            problems.append(f"python {found['python']} (client: {self.python})")
        for name, version in self.pinned.items():
            theirs = found["packages"].get(name)
            if theirs != version:
                problems.append(f"{name} {theirs or 'missing'} (client: {version})")
        return problems
