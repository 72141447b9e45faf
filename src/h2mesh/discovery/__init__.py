"""Service discovery: resolvers (target -> endpoint sets) and registrars.

``resolve(target)`` picks the resolver from the URL scheme:

=================================  ==============================================
``http://host:port``, ``https://``  one fixed endpoint
``static://h1:p1,h2:p2``            a fixed list
``dns://name:port``                 A/AAAA records, re-resolved periodically
``registry://service``              the embedded SQLite registry of this machine
``etcd://host:port/service``        an etcd v3 cluster (JSON gateway)
=================================  ==============================================

``registrar_for(url)`` is its counterpart for announcing endpoints: ``registry://``,
``registry:///path/to.db`` or ``etcd://host:port``.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from .._endpoint import Endpoint
from ._dns import DnsResolver
from ._etcd import ETCD_PREFIX, EtcdClient, EtcdRegistrar, EtcdResolver, etcd_key
from ._http import HttpError
from ._registrar import Registrar, Registration
from ._registry import Registry, RegistryRegistrar, RegistryResolver, default_registry_path
from ._resolver import Resolver, StaticResolver, format_address, parse_address

__all__ = [
    "ETCD_PREFIX",
    "DnsResolver",
    "Endpoint",
    "EtcdClient",
    "EtcdRegistrar",
    "EtcdResolver",
    "HttpError",
    "Registrar",
    "Registration",
    "Registry",
    "RegistryRegistrar",
    "RegistryResolver",
    "Resolver",
    "StaticResolver",
    "default_registry_path",
    "etcd_key",
    "format_address",
    "parse_address",
    "parse_registry_url",
    "registrar_for",
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


def parse_registry_url(url: str | None) -> tuple[str, str | None, int]:
    """``("registry", path_or_None, 0)`` or ``("etcd", host, port)`` for a registry URL."""
    if url is None or url in ("registry:", "registry://"):
        return "registry", None, 0
    scheme, sep, rest = url.partition("://")
    if sep and scheme == "registry":
        if rest and not rest.startswith("/"):
            raise ValueError(f"registry URL must be registry:// or registry:///path, got {url!r}")
        return "registry", unquote(rest) or None, 0
    if sep and scheme == "etcd":
        parts = urlsplit(url)
        if not parts.hostname or parts.path.strip("/"):
            raise ValueError(f"etcd registry URL must look like etcd://host:port, got {url!r}")
        return "etcd", parts.hostname, parts.port or 2379
    raise ValueError(f"unsupported registry {url!r}; use registry://, registry:///FILE or etcd://")


def registrar_for(url: str | None) -> Registrar:
    """A new registrar for a registry URL (see the module docstring)."""
    kind, where, port = parse_registry_url(url)
    if kind == "etcd":
        assert where is not None
        return EtcdRegistrar(where, port)
    return RegistryRegistrar(where)
