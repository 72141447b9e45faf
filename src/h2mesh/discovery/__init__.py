"""Service discovery: resolvers (target -> endpoint sets) and registrars.

``resolve(target)`` picks the resolver from the URL scheme:

=================================  ==============================================
``http://host:port``, ``https://``  one fixed endpoint
``static://h1:p1,h2:p2``            a fixed list
``dns://name:port``                 A/AAAA records, re-resolved periodically
``registry://service``              the embedded SQLite registry of this machine
``etcd://host:port/service``        an etcd v3 cluster (JSON gateway)
=================================  ==============================================
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from ..balancing import Endpoint
from ._dns import DnsResolver
from ._etcd import EtcdClient, EtcdRegistrar, EtcdResolver
from ._registrar import Registrar, Registration
from ._registry import Registry, RegistryRegistrar, RegistryResolver, default_registry_path
from ._resolver import Resolver, StaticResolver, format_address, parse_address

__all__ = [
    "DnsResolver",
    "EtcdClient",
    "EtcdRegistrar",
    "EtcdResolver",
    "Registrar",
    "Registration",
    "Registry",
    "RegistryRegistrar",
    "RegistryResolver",
    "Resolver",
    "StaticResolver",
    "default_registry_path",
    "format_address",
    "parse_address",
    "resolve",
]

SCHEMES = ("http", "https", "static", "dns", "registry", "etcd")


def _endpoint(text: str, default_port: int | None = None) -> Endpoint:
    host, port = parse_address(text, default_port)
    return Endpoint(format_address(host, port))


def resolve(target: str) -> Resolver:
    """The resolver for a target URL (see the module docstring for the schemes)."""
    scheme, sep, rest = target.partition("://")
    if not sep or scheme not in SCHEMES:
        raise ValueError(f"unsupported target {target!r}; schemes: {', '.join(SCHEMES)}")
    if scheme in ("http", "https"):
        url = urlsplit(target)
        if not url.hostname:
            raise ValueError(f"target {target!r} has no host")
        default = 443 if scheme == "https" else 80
        return StaticResolver([Endpoint(format_address(url.hostname, url.port or default))])
    if scheme == "static":
        parts = [p for p in rest.strip("/").split(",") if p.strip()]
        return StaticResolver([_endpoint(p) for p in parts])
    if scheme == "dns":
        # dns://name:port, or gRPC's dns:///name:port (empty authority = system resolver).
        host, port = parse_address(rest.removeprefix("/").rstrip("/"))
        return DnsResolver(host, port)
    if scheme == "registry":
        service = unquote(rest.strip("/"))
        if not service:
            raise ValueError(f"target {target!r} names no service")
        return RegistryResolver(service)
    url = urlsplit(target)
    service = unquote(url.path.strip("/"))
    if not url.hostname or not service:
        raise ValueError(f"etcd target must look like etcd://host:port/service, got {target!r}")
    return EtcdResolver(url.hostname, url.port or 2379, service)
