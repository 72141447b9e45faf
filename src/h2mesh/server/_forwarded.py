"""Trusted proxies: the caller's address from ``Forwarded`` / ``X-Forwarded-For``, and
the scheme it used from ``Forwarded: proto=`` / ``X-Forwarded-Proto``.

A proxy in front of the server connects from its own address; the client's is in the
headers it adds. Those headers are believed only when the connection comes from an
address the server was told to trust (``Server(forwarded_allow_ips=...)``, ``h2mesh serve
--forwarded-allow-ips``), as uvicorn and gunicorn do; anyone else could forge them.

Each proxy appends the address it saw, so the list is read from the right: the first
address that is not itself a trusted proxy is the client. ``Forwarded`` (RFC 7239) wins
over ``X-Forwarded-For`` when both are present. The scheme is the ``proto`` of the same
``Forwarded`` element, or else ``X-Forwarded-Proto`` when it is one value (``http`` or
``https``; a list or anything else is ignored, as uvicorn does). Pure functions, no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

from .._endpoint import split_host_port

__all__ = ["ProxyTrust", "forwarded_client", "forwarded_scheme"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProxyTrust:
    """Which immediate peers may tell the server who the client is.

    ``spec`` is a comma-separated string or a list of addresses and networks
    (``"127.0.0.1,10.0.0.0/8,::1"``); ``"*"`` trusts every peer, Unix sockets included.
    """

    __slots__ = ("_everyone", "_networks")

    def __init__(self, spec: str | Iterable[str]) -> None:
        items = spec.split(",") if isinstance(spec, str) else list(spec)
        self._everyone = False
        self._networks: list[_Network] = []
        for raw in items:
            item = raw.strip()
            if not item:
                continue
            if item == "*":
                self._everyone = True
                continue
            try:
                self._networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(
                    f"forwarded_allow_ips: {item!r} is not an IP address or network"
                ) from None

    def __bool__(self) -> bool:
        return self._everyone or bool(self._networks)

    def trusts(self, host: str) -> bool:
        """True if ``host`` (an IP address) is a trusted proxy."""
        if self._everyone:
            return True
        try:
            addr = ipaddress.ip_address(host.strip("[]").partition("%")[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self._networks)

    def trusts_peer(self, peer: Any) -> bool:
        if isinstance(peer, tuple) and peer:
            return self.trusts(str(peer[0]))
        return self._everyone  # a Unix socket, or unknown

    def __repr__(self) -> str:
        parts = ["*"] if self._everyone else []
        return f"ProxyTrust({','.join(parts + [str(n) for n in self._networks])!r})"


def _parse_node(node: str) -> tuple[str, int] | None:
    """``for=`` node of RFC 7239 or an X-Forwarded-For item, as (host, port)."""
    node = node.strip().strip('"')
    if not node or node.lower() == "unknown" or node.startswith("_"):
        return None  # obfuscated identifiers say nothing about the address
    host, port = split_host_port(node)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return host, int(port) if port.isdigit() and int(port) < 65536 else 0


def _forwarded_for(value: str) -> list[tuple[str, int] | None]:
    out: list[tuple[str, int] | None] = []
    for element in value.split(","):
        found: tuple[str, int] | None = None
        for pair in element.split(";"):
            name, sep, val = pair.partition("=")
            if sep and name.strip().lower() == "for":
                found = _parse_node(val)
        out.append(found)
    return out


def _values(headers: Sequence[tuple[bytes, bytes]], x_name: bytes) -> tuple[list[str], list[str]]:
    """The values of the ``Forwarded`` fields and of the ``x_name`` fields, in order."""
    forwarded: list[str] = []
    x_values: list[str] = []
    for name, value in headers:
        if name == b"forwarded":
            forwarded.append(value.decode("latin-1"))
        elif name == x_name:
            x_values.append(value.decode("latin-1"))
    return forwarded, x_values


def forwarded_client(headers: Sequence[tuple[bytes, bytes]], peer: Any, trust: ProxyTrust) -> Any:
    """The client's ``(host, port)`` if ``peer`` is trusted and says so, else ``peer``.

    The port is 0 when the proxy did not pass it on.
    """
    if not trust.trusts_peer(peer):
        return peer
    forwarded, x_forwarded = _values(headers, b"x-forwarded-for")
    if forwarded:
        hops = _forwarded_for(",".join(forwarded))
    elif x_forwarded:
        hops = [_parse_node(item) for item in ",".join(x_forwarded).split(",")]
    else:
        return peer
    for hop in reversed(hops):
        if hop is None:
            return peer  # a hop we cannot read: believe nothing further left
        if not trust.trusts(hop[0]):
            return hop
    return hops[0] if hops and hops[0] is not None else peer


_SCHEMES = {"http": "http", "https": "https"}


def _element_for_and_proto(element: str) -> tuple[tuple[str, int] | None, str]:
    """The ``for=`` node and the ``proto=`` value of one ``Forwarded`` element."""
    node: tuple[str, int] | None = None
    proto = ""
    for pair in element.split(";"):
        name, sep, val = pair.partition("=")
        if sep:
            name = name.strip().lower()
            if name == "for":
                node = _parse_node(val)
            elif name == "proto":
                proto = val.strip().strip('"').lower()
    return node, proto


def forwarded_scheme(
    headers: Sequence[tuple[bytes, bytes]], peer: Any, trust: ProxyTrust
) -> str | None:
    """``"http"`` or ``"https"``: how the client reached the first proxy, if ``peer`` is
    trusted and says so; None otherwise (the connection's own scheme stands)."""
    if not trust.trusts_peer(peer):
        return None
    forwarded, x_proto = _values(headers, b"x-forwarded-proto")
    if forwarded:
        # The element the client's address is taken from (see forwarded_client): walk
        # from the right while the hop it names is a trusted proxy.
        proto = ""
        for element in reversed(",".join(forwarded).split(",")):
            node, proto = _element_for_and_proto(element)
            if node is None or not trust.trusts(node[0]):
                break
        return _SCHEMES.get(proto)
    if len(x_proto) == 1:
        return _SCHEMES.get(x_proto[0].strip().lower())
    return None
