"""``Endpoint``: what discovery finds and balancing picks from, so it sits below both."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Endpoint", "split_host_port"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One place a service answers: ``address`` is ``host:port`` (``[v6]:port`` for IPv6)."""

    address: str
    weight: int = 1
    metadata: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.weight < 1:
            raise ValueError(f"endpoint weight must be >= 1, got {self.weight}")
        host, sep, port = self.address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"endpoint address must be host:port, got {self.address!r}")

    @property
    def host(self) -> str:
        """The host part, without IPv6 brackets."""
        return self.address.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])


def split_host_port(text: str) -> tuple[str, str]:
    """``[v6]:port``, ``host:port`` or a bare host (an IPv6 address included) as
    ``(host, port text)``, the port text empty when there is none; nothing is checked."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else ""
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    return text, ""
