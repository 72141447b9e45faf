"""``h2mesh lb-config nginx|haproxy|envoy TARGET``: a proxy config from a discovery target.

::

    h2mesh lb-config haproxy registry://demo.v1.Greeter --listen 127.0.0.1:8443 -o edge.cfg
    h2mesh lb-config nginx registry://demo.v1.Greeter --listen :8080 --listen-http1 :8081 \\
        -o nginx.conf --watch --reload 'nginx -p . -c nginx.conf -s reload'

With ``--watch`` the file is rewritten (atomically) whenever the set of replicas changes,
and ``--reload CMD`` runs after each rewrite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import signal
import sys
import tempfile
import time
from typing import Any

from ._cli_util import FAILED, USAGE, UsageError, load_object
from ._endpoint import Endpoint
from ._lbconfig import PROXIES, EdgeSpec, MethodRoute, render
from ._loop import new_event_loop
from .discovery import parse_address, resolve
from .service import Service

__all__ = ["add_lb_config_parser"]


def _listen(text: str) -> str:
    # ":8080" means every address, as in nginx and HAProxy.
    if text.startswith(":"):
        text = "0.0.0.0" + text
    try:
        host, port = parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _service_name(target: str) -> str:
    """The registry name in ``registry://NAME`` and ``etcd://host/NAME``, else ""."""
    scheme, _, rest = target.partition("://")
    if scheme == "registry":
        return rest.strip("/")
    if scheme == "etcd":
        return rest.partition("/")[2].strip("/")
    return ""


def _methods(specs: list[str]) -> list[MethodRoute]:
    routes: list[MethodRoute] = []
    for spec in specs:
        obj = load_object(spec)
        if not (isinstance(obj, Service) or (isinstance(obj, type) and issubclass(obj, Service))):
            raise UsageError(f"--service {spec} is a {type(obj).__name__}, not a Service")
        for method in obj.__methods__.values():
            streaming = method.kind.client_streams or method.kind.server_streams
            routes.append(MethodRoute(method.path, method.idempotent, streaming))
    return routes


def _spec(args: argparse.Namespace, endpoints: tuple[Endpoint, ...]) -> EdgeSpec:
    name = _service_name(args.target)
    return EdgeSpec(
        name=name or "h2mesh",
        endpoints=endpoints,
        listen=args.listen,
        listen_http1=args.listen_http1,
        health_service=args.health_service if args.health_service is not None else name,
        timeout=args.timeout,
        stream_timeout=args.stream_timeout,
        check_interval=args.check_interval,
        methods=args.routes,
        command=_command_line(args),
    )


def _command_line(args: argparse.Namespace) -> str:
    words = ["h2mesh", "lb-config", args.proxy, args.target, "--listen", args.listen]
    if args.listen_http1:
        words += ["--listen-http1", args.listen_http1]
    for spec in args.service:
        words += ["--service", spec]
    return shlex.join(words)


def _write(path: str | None, text: str) -> None:
    if path in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    assert path is not None
    # Write beside the target and rename over it: a reloading proxy never reads half a file.
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".lb-config-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"{stamp} lb-config: {message}", file=sys.stderr, flush=True)


async def _reload(command: str) -> bool:
    proc = await asyncio.create_subprocess_shell(command)
    code = await proc.wait()
    if code != 0:
        _log(f"reload command exited with status {code}: {command}")
    return code == 0


async def _generate(args: argparse.Namespace) -> int:
    try:
        resolver = resolve(args.target)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    async with resolver:
        try:
            endpoints = await resolver.first(timeout=args.resolve_timeout)
        except (TimeoutError, RuntimeError) as exc:
            _log(f"cannot resolve {args.target}: {exc}")
            return FAILED
        text = render(args.proxy, _spec(args, endpoints))
        _write(args.output, text)
        if not args.watch:
            return 0
        _log(f"wrote {args.output} ({len(endpoints)} replicas); watching {args.target}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        stopper = asyncio.ensure_future(stop.wait())
        updates = resolver.updates()
        try:
            while True:
                nxt = asyncio.ensure_future(anext(updates, None))
                done, _ = await asyncio.wait({nxt, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    return 0
                update: tuple[Endpoint, ...] | None = nxt.result()
                if update is None:
                    _log(f"{args.target}: the resolver stopped")
                    return FAILED
                endpoints = update
                new_text = render(args.proxy, _spec(args, endpoints))
                if new_text == text:
                    continue
                text = new_text
                _write(args.output, text)
                addresses = ", ".join(ep.address for ep in endpoints) or "none"
                _log(f"wrote {args.output}: {len(endpoints)} replicas ({addresses})")
                if args.reload:
                    await _reload(args.reload)
        finally:
            stopper.cancel()


def _run(args: argparse.Namespace) -> int:
    if args.watch and args.output in (None, "-"):
        print("error: --watch needs -o FILE", file=sys.stderr)
        return USAGE
    if args.reload and not args.watch:
        print("error: --reload is for --watch", file=sys.stderr)
        return USAGE
    args.routes = _methods(args.service)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(_generate(args))


def add_lb_config_parser(sub: Any) -> None:
    """Register ``h2mesh lb-config`` on the CLI's subparsers."""
    parser = sub.add_parser(
        "lb-config",
        help="write an nginx, HAProxy or Envoy config for the replicas of a target",
        description="Write a complete nginx, HAProxy or Envoy config that balances over the "
        "replicas TARGET resolves to (registry://NAME, etcd://HOST:PORT/NAME, "
        "static://H:P,H:P, dns://NAME:PORT): HTTP/2 to the replicas, health checks, "
        "safe retries, timeouts, ejection of failing replicas.",
    )
    parser.add_argument("proxy", choices=sorted(PROXIES))
    parser.add_argument("target", metavar="TARGET")
    parser.add_argument(
        "--listen",
        required=True,
        type=_listen,
        metavar="HOST:PORT",
        help="where the proxy takes HTTP/2 cleartext (and HTTP/1.1 too on HAProxy and Envoy)",
    )
    parser.add_argument(
        "--listen-http1",
        type=_listen,
        metavar="HOST:PORT",
        help="a second port for HTTP/1.1 (needed for HTTP/1.1 clients with nginx)",
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write FILE (default: stdout)")
    parser.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="MODULE:SERVICE",
        help="a Service class whose methods get their own routes: idempotent ones may be "
        "retried after they reached a replica, streaming ones get --stream-timeout "
        "(repeatable)",
    )
    parser.add_argument(
        "--health-service",
        metavar="NAME",
        help="the grpc.health.v1 service to check (default: the registry name; '' = server)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long a call may wait for the replica without a deadline of its own "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--stream-timeout",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="how long a streaming call may stay quiet (default %(default)s)",
    )
    parser.add_argument(
        "--check-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="active health check interval (default %(default)s)",
    )
    parser.add_argument(
        "--resolve-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the first set of replicas (default %(default)s)",
    )
    parser.add_argument(
        "--watch", action="store_true", help="keep FILE current as the replicas change"
    )
    parser.add_argument(
        "--reload", metavar="CMD", help="shell command to run after each rewrite (--watch)"
    )
    parser.set_defaults(func=_run)
