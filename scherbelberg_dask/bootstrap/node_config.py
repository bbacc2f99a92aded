"""The node contract: what a node is told about itself (``node.json``), typed.

One :class:`NodeConfig` is built by the provisioner for each node, written to the node as
``node.json`` by the bootstrap profile, and read there by the node runner.  This file
imports only the standard library, because it is uploaded next to
:mod:`~scherbelberg_dask.bootstrap.node_runner` and imported by it on the node, where
nothing else of this package exists (docs/design.md, "Bootstrap").

Relative paths are relative to the Dask user's home directory on the node.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

#: Directory (relative to the Dask user's home) holding a node's files.
NODE_DIR = "scherbelberg"


@dataclasses.dataclass(frozen=True)
class NodePorts:
    """Dask ports on the node."""

    scheduler: int
    dashboard: int
    nanny: int


@dataclasses.dataclass(frozen=True)
class TLSFiles:
    """Where the node's TLS files are: the cluster CA and the node's own pair."""

    ca: str = f"{NODE_DIR}/tls/ca.pem"
    cert: str = f"{NODE_DIR}/tls/node.pem"
    key: str = f"{NODE_DIR}/tls/node.key"


@dataclasses.dataclass(frozen=True)
class NodeConfig:
    """Everything the node runner needs to start the node's Dask process.

    Attributes
    ----------
    role
        ``scheduler`` or ``worker``.
    name
        The node's name (``scheduler``, ``worker000``, ...): also the Dask worker name.
    public_ip, private_ip
        The server's addresses (the private one is the public one without a network).
    listen
        Addresses the scheduler listens on: public (clients) and private (workers).
    scheduler_address
        Where workers reach the scheduler (``tls://<private ip>:<port>``).
    ports
        Dask ports.
    env
        Environment variables of the Dask process.
    options
        Keyword arguments for Dask's ``Scheduler`` or ``Nanny``.
    dask_config
        The client's Dask configuration (its non-default part, without secrets), applied
        over the node's own before Dask starts.
    state_dir
        Directory of the node's files (and of its readiness file).
    tls
        Paths of the TLS files.
    """

    role: str
    name: str
    public_ip: str | None
    private_ip: str | None
    listen: tuple[str, ...]
    scheduler_address: str
    ports: NodePorts
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    dask_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    state_dir: str = NODE_DIR
    tls: TLSFiles = dataclasses.field(default_factory=TLSFiles)

    def to_json(self) -> bytes:
        """The ``node.json`` document."""
        return json.dumps(dataclasses.asdict(self), indent=1).encode()

    @classmethod
    def from_json(cls, text: str | bytes) -> NodeConfig:
        """Read a ``node.json`` document."""
        data = json.loads(text)
        return cls(
            role=data["role"],
            name=data["name"],
            public_ip=data.get("public_ip"),
            private_ip=data.get("private_ip"),
            listen=tuple(data.get("listen") or ()),
            scheduler_address=data["scheduler_address"],
            ports=NodePorts(**data["ports"]),
            env=dict(data.get("env") or {}),
            options=dict(data.get("options") or {}),
            dask_config=dict(data.get("dask_config") or {}),
            state_dir=data.get("state_dir", NODE_DIR),
            tls=TLSFiles(**data["tls"]) if data.get("tls") else TLSFiles(),
        )

    @property
    def ready_file(self) -> str:
        """File the node runner writes once the Dask process is up."""
        return f"{self.state_dir}/{self.role}.ready"
