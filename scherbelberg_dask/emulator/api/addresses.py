"""IP addresses of emulated servers, all on the host's loopback (127.0.0.0/8).

Public IPv4 addresses come from a pool (default 127.32.0.0/11).  Every address a server
gets, public or private, is unique within this emulator, and an address whose SSH port
cannot be bound (another emulator on this host uses it) is skipped.  Private networks
must lie inside 127.0.0.0/8, outside the public pool and outside 127.0.0.0/16.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
from collections.abc import Iterable

from .errors import APIError

logger = logging.getLogger(__name__)

__all__ = ["LOOPBACK", "RESERVED", "AddressBook", "port_bindable"]

LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
#: Never handed out: the host's own loopback services live here.
RESERVED = ipaddress.IPv4Network("127.0.0.0/16")


def port_bindable(ip: str, port: int) -> bool:
    """True if a TCP listener could bind ``ip:port`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((ip, port))
        except OSError:
            return False
    return True


class AddressBook:
    """Hands out and takes back the emulator's IPv4 and IPv6 addresses.

    Parameters
    ----------
    public_pool
        CIDR of the public IPv4 pool, inside 127.0.0.0/8 and outside 127.0.0.0/16.
    ssh_port
        Port the machines listen on (used to skip addresses taken on this host).
    rng
        Random source for the pool's starting point and the IPv6 prefix.

    Raises
    ------
    ValueError
        If the pool is not a valid range of that kind.
    """

    def __init__(self, public_pool: str, ssh_port: int, rng: random.Random) -> None:
        try:
            pool = ipaddress.IPv4Network(public_pool)
        except ValueError as exc:
            raise ValueError(f"public pool {public_pool!r} is not an IPv4 CIDR: {exc}") from None
        if not pool.subnet_of(LOOPBACK) or pool.overlaps(RESERVED):
            raise ValueError(
                f"public pool {pool} must lie inside {LOOPBACK} and outside {RESERVED}"
            )
        if pool.num_addresses < 4:
            raise ValueError(f"public pool {pool} is too small")
        self.pool = pool
        self.ssh_port = ssh_port
        self._used: set[ipaddress.IPv4Address] = set()
        # Start at a random point of the pool, so that emulators on one host rarely
        # race for the same addresses before their machines bind them.
        self._cursor = rng.randrange(pool.num_addresses)
        self._ipv6_site = rng.randrange(1, 0xFFFF)
        self._ipv6_next = 0

    # -- public addresses ---------------------------------------------------------------

    def take_public_ipv4(self) -> str:
        """Reserve the next free public IPv4 address.

        Raises
        ------
        APIError
            412 ``resource_unavailable`` when the pool is exhausted.
        """
        size = self.pool.num_addresses
        base = int(self.pool.network_address)
        for step in range(size):
            offset = (self._cursor + step) % size
            address = ipaddress.IPv4Address(base + offset)
            if address.packed[-1] in (0, 255) or address in self._used:
                continue
            if not port_bindable(str(address), self.ssh_port):
                logger.debug("skipping %s: port %d is taken on this host", address, self.ssh_port)
                continue
            self._cursor = (offset + 1) % size
            self._used.add(address)
            return str(address)
        raise APIError(
            412, "resource_unavailable", f"no free public IPv4 address left in {self.pool}"
        )

    def take_ipv6_network(self) -> str:
        """A fresh /64 from the documentation range (nothing listens on it)."""
        self._ipv6_next += 1
        return f"2001:db8:{self._ipv6_site:x}:{self._ipv6_next:x}::/64"

    def release(self, addresses: Iterable[str | None]) -> None:
        """Give addresses back (IPv6 networks and ``None`` are ignored)."""
        for text in addresses:
            if text and ":" not in text:
                self._used.discard(ipaddress.IPv4Address(text))

    # -- private networks ---------------------------------------------------------------

    def network_range_problem(self, ip_range: ipaddress.IPv4Network) -> str | None:
        """Why ``ip_range`` cannot be a private network here, or ``None``."""
        if (
            not ip_range.subnet_of(LOOPBACK)
            or ip_range.overlaps(RESERVED)
            or (ip_range.overlaps(self.pool))
        ):
            return (
                f"the emulator runs every network on the loopback interface: ip_range "
                f"{ip_range} must lie inside {LOOPBACK}, outside {RESERVED} and outside "
                f"the public pool {self.pool} (for example 127.128.0.0/16)"
            )
        return None

    def is_free(self, address: ipaddress.IPv4Address) -> bool:
        """True if ``address`` is not used by this emulator and bindable on this host."""
        return address not in self._used and port_bindable(str(address), self.ssh_port)

    def take_private(
        self,
        subnet: ipaddress.IPv4Network,
        gateway: ipaddress.IPv4Address,
        wanted: ipaddress.IPv4Address | None = None,
    ) -> str | None:
        """Reserve ``wanted`` or the lowest free host address of ``subnet``.

        The subnet's network and broadcast addresses and the network gateway are never
        handed out.  Returns ``None`` if ``wanted`` is taken or nothing is free.
        """
        reserved = {subnet.network_address, subnet.broadcast_address, gateway}
        if wanted is not None:
            if wanted in reserved or wanted not in subnet or not self.is_free(wanted):
                return None
            self._used.add(wanted)
            return str(wanted)
        for address in subnet:
            if address in reserved or address in self._used:
                continue
            if not port_bindable(str(address), self.ssh_port):
                continue
            self._used.add(address)
            return str(address)
        return None
