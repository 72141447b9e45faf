"""Listening sockets made before serving: TCP, Unix domain sockets and inherited fds.

The server and the worker supervisor bind here, so that a socket made once can be
shared by every worker process (or, with ``reuse_port``, bound again by each one).
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat

__all__ = ["bind_tcp", "bind_unix", "from_fd", "sockname_url"]


def bind_tcp(
    host: str, port: int, *, backlog: int = 1024, reuse_port: bool = False, listen: bool = True
) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0 picks one), listening unless told not to."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
        if listen:
            sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_unix(path: str, *, backlog: int = 1024, mode: int = 0o660) -> socket.socket:
    """A listening Unix domain socket at ``path``; a stale socket file there is replaced."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, mode)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def from_fd(fd: int) -> socket.socket:
    """The listening socket inherited as file descriptor ``fd`` (systemd socket activation)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise OSError(f"fd {fd} is not a socket: {exc.strerror}") from None
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
        socket.SOL_SOCKET, socket.SO_ACCEPTCONN
    ):
        sock.detach()
        raise OSError(f"fd {fd} is not a listening stream socket")
    sock.setblocking(False)
    return sock


def sockname_url(scheme: str, sock: socket.socket) -> str:
    """``http://127.0.0.1:8080``, ``http://[::1]:8080`` or ``unix:/path`` for a socket."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name if isinstance(name, str) else name.decode()}"
    host, port = str(name[0]), int(name[1])
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"
