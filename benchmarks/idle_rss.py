"""Server memory per idle HTTP/2 connection.

``python -m benchmarks.idle_rss [--connections 2000] [--system h2mesh] [--src DIR]``

Starts a benchmark server (``benchmarks.servers``, pinned to CPU 0), opens the
connections from this process (CPU 1): each sends the client preface and its
SETTINGS, makes one unary call (so that the connection is fully set up, as a client's
would be), reads the answer and then stays open, idle. The server's RSS
(``/proc/PID/status`` VmRSS) is read before and after; the difference divided by the
number of connections is the figure. Everything runs on 127.0.0.1 and ends by itself.
"""

from __future__ import annotations

import argparse
import os
import resource
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

from .harness import CLIENT_CPU, SERVER_CPU, _child_env, _pin, _wait_listening, free_port

ROOT = Path(__file__).resolve().parents[1]
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"


def _request() -> bytes:
    """HEADERS + DATA of one Connect JSON call to Echo, HPACK literals without indexing."""

    def literal(name: bytes, value: bytes) -> bytes:
        return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value

    body = b'{"name":"idle"}'
    block = b"".join(
        (
            b"\x83",  # :method POST
            b"\x86",  # :scheme http
            literal(b":path", b"/bench.v1.Bench/Echo"),
            literal(b":authority", b"127.0.0.1"),
            literal(b"content-type", b"application/json"),
        )
    )
    headers = len(block).to_bytes(3, "big") + b"\x01\x04" + (1).to_bytes(4, "big") + block
    data = len(body).to_bytes(3, "big") + b"\x00\x01" + (1).to_bytes(4, "big") + body
    return headers + data


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_idle(port: int, count: int, limit: float) -> list[socket.socket]:
    """``count`` connections, each through one call, then left idle."""
    request = _PREFACE + _SETTINGS + _SETTINGS_ACK + _request()
    socks: list[socket.socket] = []
    sel = selectors.DefaultSelector()
    deadline = time.monotonic() + limit
    batch = 100
    for start in range(0, count, batch):
        pending: dict[socket.socket, bytes] = {}
        for _ in range(min(batch, count - start)):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(request)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            pending[s] = b""
            socks.append(s)
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} connections got no answer in {limit:.0f} s")
            for key, _ in sel.select(1.0):
                s = key.fileobj  # type: ignore[assignment]
                got = pending.get(s)  # type: ignore[call-overload]
                if got is None:
                    continue
                chunk = s.recv(65536)  # type: ignore[attr-defined]
                if not chunk:
                    raise RuntimeError("the server closed a connection")
                got += chunk
                # The call's answer ends with a DATA frame that has END_STREAM (flags 0x1)
                # on stream 1; looking for its header is enough here.
                if b"\x00\x01\x00\x00\x00\x01" in got:
                    del pending[s]  # type: ignore[arg-type]
                    sel.unregister(s)
                else:
                    pending[s] = got  # type: ignore[index]
    return socks


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connections", type=int, default=2000)
    p.add_argument("--system", default="h2mesh", help="a server of benchmarks.servers")
    p.add_argument("--src", type=Path, default=None, help="h2mesh sources to measure instead")
    args = p.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.connections + 64:
        raise SystemExit(f"the open-file limit ({hard}) is too low for {args.connections}")
    pin = _pin(CLIENT_CPU)
    if pin is not None:
        pin()
    env = _child_env()
    if args.src is not None:
        env["PYTHONPATH"] = os.pathsep.join((str(args.src.resolve()), env["PYTHONPATH"]))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.servers", args.system, str(port)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_pin(SERVER_CPU),
    )
    socks: list[socket.socket] = []
    try:
        _wait_listening(port, proc, 30.0)
        socks = open_idle(port, 20, 30.0)  # warm-up: imports, first allocations
        time.sleep(0.5)
        before = rss_kib(proc.pid)
        socks += open_idle(port, args.connections, 120.0)
        time.sleep(1.0)
        after = rss_kib(proc.pid)
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    per = (after - before) / args.connections
    print(
        f"{args.system}: {args.connections} idle connections, server RSS {before / 1024:.1f} MiB "
        f"-> {after / 1024:.1f} MiB: {per:.1f} KiB per connection"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
