"""The node runner's wait for its scheduler: a TLS handshake with the cluster's certificates."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from scherbelberg_dask.bootstrap import node_runner
from scherbelberg_dask.bootstrap.node_config import NodeConfig, NodePorts, TLSFiles
from scherbelberg_dask.security.tls import ClusterCA


def _write_pair(directory: Path, ca: ClusterCA, name: str) -> TLSFiles:
    pair = ca.issue(name, ip_addresses=["127.0.0.1"])
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.pem").write_bytes(ca.cert_pem)
    (directory / "node.pem").write_bytes(pair.cert_pem)
    (directory / "node.key").write_bytes(pair.key_pem)
    return TLSFiles(*(str(directory / name) for name in ("ca.pem", "node.pem", "node.key")))


def _worker(tls: TLSFiles, port: int) -> NodeConfig:
    return NodeConfig(
        role="worker",
        name="worker000",
        public_ip="127.0.0.1",
        private_ip="127.0.0.1",
        listen=("127.0.0.1",),
        scheduler_address=f"tls://127.0.0.1:{port}",
        ports=NodePorts(9753, 9756, 9759),
        tls=tls,
    )


@asynccontextmanager
async def _tls_server(
    tls: TLSFiles, seen: list[str], answered: asyncio.Event
) -> AsyncIterator[int]:
    """A server requiring client certificates of ``tls``'s CA; yields its port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tls.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(tls.cert, tls.key)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert")
        seen.append(dict(x[0] for x in peer["subject"])["commonName"])
        writer.close()
        answered.set()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def test_a_listening_scheduler_is_found_with_the_nodes_certificate(tmp_path: Path) -> None:
    ca = ClusterCA.create("c1")
    seen: list[str] = []
    answered = asyncio.Event()
    scheduler_tls = _write_pair(tmp_path / "scheduler", ca, "scheduler")
    async with _tls_server(scheduler_tls, seen, answered) as port:
        worker = _worker(_write_pair(tmp_path / "worker", ca, "worker000"), port)
        assert await node_runner.wait_for_scheduler(worker, timeout=10)
        await asyncio.wait_for(answered.wait(), 10)
    assert seen == ["worker000"]  # the handshake presented the worker's own certificate


async def test_no_scheduler_or_another_clusters_is_not_found(tmp_path: Path) -> None:
    ca = ClusterCA.create("c1")
    worker_tls = _write_pair(tmp_path / "worker", ca, "worker000")
    seen: list[str] = []
    foreign = _write_pair(tmp_path / "foreign", ClusterCA.create("c2"), "scheduler")
    async with _tls_server(foreign, seen, asyncio.Event()) as port:
        assert not await node_runner.wait_for_scheduler(_worker(worker_tls, port), timeout=0.5)
    assert seen == []
    # The port is closed now: refused until the timeout.
    assert not await node_runner.wait_for_scheduler(_worker(worker_tls, port), timeout=0.3)
