"""The ``h2mesh`` command: serve services, and call them from the shell.

::

    h2mesh serve examples.greeter:Greeter --port 8080
    h2mesh serve examples.greeter:Greeter myapp:app      # services beside an ASGI/WSGI app
    h2mesh proto examples.greeter:Greeter -o greeter.proto
    h2mesh openapi examples.users:Users -o openapi.json
    h2mesh call http://127.0.0.1:8080 demo.v1.Greeter/SayHello '{"name": "x"}'

Over the 400-line guideline because it holds ``serve`` (most of it: flags, TLS reload,
workers, registration) beside the dispatcher; every other command has a module of its own
(``_call_cli``, ``_bench_cli``, ``_registry_cli``, ``_lbconfig_cli``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import msgspec

from ._bench_cli import add_bench_parser
from ._call_cli import add_call_parsers
from ._cli_util import FAILED, USAGE, UsageError, load_object
from ._lbconfig_cli import add_lb_config_parser
from ._loop import new_event_loop
from ._registry_cli import add_registry_parser
from ._version import __version__
from .server import Server, server_ssl_context
from .server._app import DEFAULTS, check_app_options, check_interface
from .server._asgi import LifespanFailed
from .server._limits import ConnectionLimits
from .server._supervisor import worker_count
from .service import Service

__all__ = ["UsageError", "load_server", "main"]

log = logging.getLogger("h2mesh.cli")


# -- serve ------------------------------------------------------------------------------
def load_server(specs: str | Sequence[str], interface: str = "auto") -> Server:
    """The ``Server`` for one or more ``MODULE:OBJECT`` targets, importing each MODULE from
    the current directory.

    Each target is a Service class or instance, a list of services, a Server (at most
    one; the other targets are added to it), or an ASGI or WSGI application (at most
    one; ``interface`` forces which).
    """
    if isinstance(specs, str):
        specs = [specs]
    server: Server | None = None
    services: list[Service] = []
    app: tuple[Any, str] | None = None
    for spec in specs:
        obj = load_object(spec)
        if isinstance(obj, Server):
            if server is not None:
                raise UsageError(f"{spec}: only one Server can be served")
            server = obj
        elif _is_service(obj) or _is_service_list(obj):
            items = list(obj) if isinstance(obj, list | tuple) else [obj]
            services += [_instantiate(item, spec) for item in items]
        elif callable(obj) and not isinstance(obj, type):
            if app is not None:
                raise UsageError(f"{spec}: at most one ASGI or WSGI application ({app[1]})")
            _check_interface(obj, spec, interface)
            app = (obj, spec)
        else:
            raise UsageError(
                f"{spec} is a {type(obj).__name__}; expected a Service class, a Service "
                "instance, a list of services, a Server, or an ASGI or WSGI application"
            )
    if app is None and interface != "auto":
        # (A Server target's own mount says how its application is called.)
        raise UsageError(f"--interface {interface}: no application target is given")
    try:
        if server is None:
            server = Server(services)
        else:
            for service in services:
                server.add_service(service)
        if app is not None:
            server.mount(app[0], interface=interface)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{' '.join(specs)}: {exc}") from None
    return server


def _check_interface(app: Any, spec: str, interface: str) -> None:
    """A forced ``--interface`` that ``app`` certainly cannot be called as is a usage
    error (see ``check_interface``)."""
    try:
        check_interface(app, interface)
    except TypeError as exc:
        raise UsageError(f"{spec}: --interface {exc}") from None


def _is_service(obj: object) -> bool:
    return isinstance(obj, Service) or (isinstance(obj, type) and issubclass(obj, Service))


def _is_service_list(obj: object) -> bool:
    return isinstance(obj, list | tuple) and bool(obj) and all(_is_service(s) for s in obj)


def _instantiate(obj: Service | type[Service], spec: str) -> Service:
    if isinstance(obj, Service):
        return obj
    try:
        return obj()
    except Exception as exc:
        raise UsageError(
            f"{spec}: cannot create {obj.__qualname__}() with no arguments: {exc}"
        ) from None


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "asyncio":
        return asyncio.new_event_loop
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise UsageError("--loop uvloop: uvloop is not installed") from None
        return uvloop.new_event_loop
    return new_event_loop


def _url(scheme: str, sockname: Any) -> str:
    host, port = str(sockname[0]), int(sockname[1])
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def _configure_logging(args: argparse.Namespace) -> None:
    if args.log_config is None:
        logging.basicConfig(
            level=args.log_level.upper(),
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
        )
        return
    from logging import config as logging_config

    try:
        if args.log_config.endswith(".json"):
            with open(args.log_config, encoding="utf-8") as f:
                logging_config.dictConfig(msgspec.json.decode(f.read()))
        else:
            logging_config.fileConfig(args.log_config, disable_existing_loggers=False)
    except (OSError, ValueError, KeyError, TypeError, msgspec.DecodeError) as exc:
        raise UsageError(f"--log-config {args.log_config}: {exc}") from None


def _tls_factory(args: argparse.Namespace) -> Callable[[], ssl.SSLContext | None]:
    """Loads the certificate files each time it is called: new workers see new files."""
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if args.tls_cert is None:
        if args.tls_client_ca is not None:
            raise UsageError("--tls-client-ca needs --tls-cert and --tls-key")
        return lambda: None

    def load() -> ssl.SSLContext:
        return server_ssl_context(args.tls_cert, args.tls_key, client_ca=args.tls_client_ca)

    try:
        load()
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load the TLS certificate or key: {exc}") from None
    return load


def _listeners(args: argparse.Namespace, reuse_port: bool) -> list[socket.socket]:
    """The listening sockets: --uds and --fd if given, else --host/--port."""
    from .server._sockets import bind_tcp, bind_unix, from_fd

    socks: list[socket.socket] = []
    try:
        socks.extend(from_fd(fd) for fd in args.fd)
        socks.extend(bind_unix(path) for path in args.uds)
        if not socks:
            # With SO_REUSEPORT each worker listens on its own socket: this one only
            # holds the port.
            listen = not reuse_port
            socks.append(bind_tcp(args.host, args.port, reuse_port=reuse_port, listen=listen))
    except OSError as exc:
        for sock in socks:
            sock.close()
        named = [*(f"fd {fd}" for fd in args.fd), *args.uds]
        where = ", ".join(named) or f"{args.host}:{args.port}"
        raise _ListenError(f"error: cannot listen on {where}: {exc}") from None
    return socks


class _ListenError(Exception):
    pass


def _project_modules(before: set[str]) -> list[str]:
    """Modules imported since ``before`` that live in the served project (the current
    directory, outside any virtualenv or site-packages): what a reload imports again."""
    cwd = os.getcwd() + os.sep
    prefixes = tuple({sys.prefix + os.sep, sys.base_prefix + os.sep})
    out = []
    for name in set(sys.modules) - before:
        path = getattr(sys.modules[name], "__file__", None) or ""
        if path.startswith(cwd) and not path.startswith(prefixes) and "site-packages" not in path:
            out.append(name)
    return out


def _serve(args: argparse.Namespace) -> int:
    _configure_logging(args)
    tls_factory = _tls_factory(args)
    factory = _loop_factory(args.loop)
    try:
        workers = worker_count(args.workers)
    except ValueError as exc:
        raise UsageError(f"--workers: {exc}") from None
    if args.max_requests < 0 or args.max_requests_jitter < 0:
        raise UsageError("--max-requests and --max-requests-jitter must be >= 0")
    before = set(sys.modules)
    server = load_server(args.targets, args.interface)
    project = _project_modules(before)
    _configure_server(server, args)
    supervised = workers > 1 or args.max_requests > 0 or args.reload or args.reuse_port
    admin = (args.admin_host, args.admin_port) if args.admin_port is not None else None
    access = (args.access_log or None, args.log_format) if args.access_log is not None else None
    scheme = "https" if args.tls_cert is not None else "http"
    try:
        sockets = _listeners(args, reuse_port=args.reuse_port)
    except _ListenError as exc:
        print(exc, file=sys.stderr)
        return FAILED
    uds = [s.getsockname() for s in sockets if s.family == socket.AF_UNIX]

    def announce(names: Sequence[Any]) -> None:
        # One line on stdout, for scripts that wait for the server and parse its address.
        urls = [f"unix:{n}" if isinstance(n, str) else _url(scheme, n) for n in names]
        print(f"h2mesh serving on {' '.join(urls)}", flush=True)

    try:
        if supervised:
            return _run_supervised(
                args,
                server,
                sockets,
                project,
                workers,
                tls_factory,
                admin,
                access,
                announce,
                factory,
            )
        if access is not None:
            from .observability import AccessLog
            from .observability._observer import observer_of

            observer = observer_of(server)
            observer.access = AccessLog(*access)
            server.observer = observer

        tls = tls_factory()

        def ready(srv: Server) -> None:
            announce(srv.sockets)
            for method in srv.methods:
                log.info("route %s (%s)", method.path, method.kind.value)
            if srv.app is not None:
                log.info("every other path: %s", srv.app.describe())
            if tls is not None:
                _reload_tls_on_sighup(tls, args)

        async def serve() -> None:
            await server.serve(sockets=sockets, tls=tls, grace=args.grace, ready=ready, admin=admin)

        with asyncio.Runner(loop_factory=factory) as runner:
            try:
                runner.run(serve())
            except OSError as exc:
                print(f"error: cannot serve: {exc}", file=sys.stderr)
                return FAILED
            except LifespanFailed as exc:
                print(f"error: the application did not start: {exc}", file=sys.stderr)
                return FAILED
    finally:
        for path in uds:
            with contextlib.suppress(OSError):
                os.unlink(path)
    log.info("stopped")
    return 0


def _reload_tls_on_sighup(ctx: ssl.SSLContext, args: argparse.Namespace) -> None:
    """SIGHUP to a single process: load the certificate files again, in place, for the
    handshakes that follow (with workers, new workers load them instead)."""

    def reload() -> None:
        try:
            ctx.load_cert_chain(args.tls_cert, args.tls_key)
            if args.tls_client_ca is not None:
                ctx.load_verify_locations(args.tls_client_ca)  # adds; never drops a CA
        except (OSError, ssl.SSLError) as exc:
            log.error("SIGHUP: keeping the current certificate: %s", exc)
        else:
            log.info("SIGHUP: reloaded %s", args.tls_cert)

    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)


def _run_supervised(
    args: argparse.Namespace,
    server: Server,
    sockets: list[socket.socket],
    project: list[str],
    workers: int,
    tls_factory: Callable[[], ssl.SSLContext | None],
    admin: tuple[str, int] | None,
    access: tuple[str | None, str] | None,
    announce: Callable[[Sequence[Any]], None],
    factory: Callable[[], asyncio.AbstractEventLoop],
) -> int:
    from .server._supervisor import Supervisor

    targets, interface = args.targets, args.interface

    def load() -> Server:
        # A worker imports the project afresh, so a reload (SIGHUP) serves new code.
        for name in project:
            sys.modules.pop(name, None)
        importlib.invalidate_caches()
        fresh = load_server(targets, interface)
        _configure_server(fresh, args)
        return fresh

    supervisor = Supervisor(
        server,
        sockets,
        load=load,
        workers=workers,
        tls=tls_factory,
        grace=args.grace,
        max_requests=args.max_requests,
        max_requests_jitter=args.max_requests_jitter,
        registration=server.registration,
        admin=admin,
        access_log=access,
        ready=lambda sup: announce([s.getsockname() for s in sup.sockets]),
        reuse_port=args.reuse_port,
        reload_paths=[os.getcwd()] if args.reload else [],
        loop_factory=factory,
    )
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        try:
            code = runner.run(supervisor.run())
        except OSError as exc:
            print(f"error: cannot serve: {exc}", file=sys.stderr)
            return FAILED
    if code != 0:
        print(f"error: {supervisor.error}", file=sys.stderr)
        return FAILED
    log.info("stopped")
    return 0


def _configure_server(server: Server, args: argparse.Namespace) -> None:
    """What the command line sets on a loaded server (in the supervisor and each worker)."""
    if args.register:
        _enable_registration(server, args)
    if args.forwarded_allow_ips is not None:
        try:
            server.forwarded_allow_ips = args.forwarded_allow_ips
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    _configure_app(server, args)
    if args.max_connections is not None or args.max_connections_per_address is not None:
        try:
            server.connection_limits = ConnectionLimits(
                args.max_connections, args.max_connections_per_address
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None


def _configure_app(server: Server, args: argparse.Namespace) -> None:
    """The application flags (``--root-path``, ``--lifespan``, ``--no-*-header``,
    ``--wsgi-threads``, ``--ws-*``): they override what the mounted application was given."""
    given = {name: getattr(args, name) for name in _APP_FLAGS if getattr(args, name) is not None}
    if not given:
        return
    flags = ", ".join("--" + name.replace("_", "-") for name in given)
    if server.app is None:
        raise UsageError(f"{flags}: no application is served")
    try:
        checked: Mapping[str, object] = check_app_options(given)
    except ValueError as exc:
        raise UsageError(f"{flags}: {exc}") from None
    host = server.app
    for name in given:
        if name == "wsgi_threads":
            from .server._wsgi import WsgiAdapter

            adapter = host.app
            if not isinstance(adapter, WsgiAdapter):
                raise UsageError(f"--wsgi-threads: the application is {host.kind}, not WSGI")
            adapter.threads = cast(int, checked[name])  # (its pool is made when first used)
        elif name == "lifespan" and host.kind == "WSGI" and checked[name] == "on":
            raise UsageError("--lifespan on: a WSGI application has no lifespan")
        elif name == "lifespan" and host.kind == "WSGI":
            continue  # (WSGI: always off)
        else:
            setattr(host, name, checked[name])


def _enable_registration(server: Server, args: argparse.Namespace) -> None:
    from .server._registration import ServerRegistration

    try:
        server.registration = ServerRegistration(
            args.register, args.registry, ttl=args.register_ttl, address=args.register_address
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


# The options of a mounted application that have a flag (names of AppOptions).
_APP_FLAGS = (
    "root_path",
    "lifespan",
    "server_header",
    "date_header",
    "wsgi_threads",
    "ws_max_size",
    "ws_ping_interval",
    "ws_ping_timeout",
    "ws_per_message_deflate",
)


def _threads(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"not a positive number of threads: {text!r}")
    return n


def _seconds_or_off(text: str) -> float:
    """A number of seconds; ``none``, ``off`` and ``0`` are 0 (off)."""
    if text.strip().lower() in ("none", "off"):
        return 0.0
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None


def _boolean(text: str) -> bool:
    """``true``/``false`` (also ``yes``/``no``, ``on``/``off``, ``1``/``0``)."""
    word = text.strip().lower()
    if word in ("true", "yes", "on", "1"):
        return True
    if word in ("false", "no", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"not true or false: {text!r}")


def _add_app_flags(serve: argparse.ArgumentParser) -> None:
    """How the application is served: its scope and responses, the WSGI pool, WebSocket
    limits and keepalive (named as uvicorn's where uvicorn has them). Each overrides what
    the application was mounted with."""
    app = serve.add_argument_group("the application")
    app.add_argument(
        "--root-path",
        metavar="PATH",
        help="the ASGI root_path (WSGI SCRIPT_NAME) of every request, for an application "
        "mounted below a proxy's path prefix (default: none)",
    )
    app.add_argument(
        "--lifespan",
        choices=("auto", "on", "off"),
        help="run the ASGI lifespan protocol: auto = if the application supports it, on = "
        "it must (a failure stops the server), off = never (default auto)",
    )
    app.add_argument(
        "--no-server-header",
        dest="server_header",
        action="store_const",
        const=False,
        help="send no 'server: h2mesh' field (the application's own is always kept)",
    )
    app.add_argument(
        "--no-date-header",
        dest="date_header",
        action="store_const",
        const=False,
        help="send no 'date' field unless the application gives one",
    )
    app.add_argument(
        "--wsgi-threads",
        type=_threads,
        metavar="N",
        help=f"threads a WSGI application runs in (default {DEFAULTS['wsgi_threads']})",
    )
    group = serve.add_argument_group("the application's WebSockets")
    group.add_argument(
        "--ws-max-size",
        type=int,
        metavar="BYTES",
        help="largest WebSocket message taken; a larger one closes with 1009 "
        f"(default {DEFAULTS['ws_max_size']})",
    )
    group.add_argument(
        "--ws-ping-interval",
        type=_seconds_or_off,
        metavar="SECONDS",
        help="ping each WebSocket this often; 0 or none: no pings "
        f"(default {DEFAULTS['ws_ping_interval']:g})",
    )
    group.add_argument(
        "--ws-ping-timeout",
        type=_seconds_or_off,
        metavar="SECONDS",
        help="fail a WebSocket (close 1011, drop the connection) whose client stays silent "
        "this long after a ping; 0 or none: never "
        f"(default {DEFAULTS['ws_ping_timeout']:g})",
    )
    group.add_argument(
        "--ws-per-message-deflate",
        type=_boolean,
        metavar="BOOLEAN",
        help="compress WebSocket messages (permessage-deflate) when the client offers it "
        f"(default {str(DEFAULTS['ws_per_message_deflate']).lower()})",
    )


def _add_production_flags(serve: argparse.ArgumentParser) -> None:
    """Workers, listeners, the admin listener and logs (docs/deployment.md)."""
    group = serve.add_argument_group("workers and listeners")
    group.add_argument(
        "--workers",
        default="1",
        metavar="N|auto",
        help="worker processes sharing the listeners under a supervisor; auto = one per "
        "CPU (default %(default)s)",
    )
    group.add_argument(
        "--reuse-port",
        action="store_true",
        help="give each worker its own SO_REUSEPORT socket instead of sharing one",
    )
    group.add_argument(
        "--max-requests",
        type=int,
        default=0,
        metavar="N",
        help="replace a worker after it served N requests (default: never)",
    )
    group.add_argument(
        "--max-requests-jitter",
        type=int,
        default=0,
        metavar="N",
        help="add a random 0..N to each worker's --max-requests",
    )
    group.add_argument(
        "--reload",
        action="store_true",
        help="development: replace the workers when a .py file under the current "
        "directory changes (needs watchfiles)",
    )
    group.add_argument(
        "--uds", action="append", default=[], metavar="PATH", help="listen on a Unix socket"
    )
    group.add_argument(
        "--fd",
        action="append",
        default=[],
        type=int,
        metavar="N",
        help="serve the listening socket inherited as file descriptor N (socket activation)",
    )
    admin = serve.add_argument_group("admin pages and logs")
    admin.add_argument(
        "--admin-port",
        type=int,
        metavar="PORT",
        help="serve /metrics, /status, /healthz and /readyz on this port (turns metrics on)",
    )
    admin.add_argument(
        "--admin-host",
        default="127.0.0.1",
        help="address of the admin listener (default %(default)s)",
    )
    admin.add_argument(
        "--access-log",
        nargs="?",
        const="",
        metavar="FILE",
        help="log one line per request to FILE (default: stderr)",
    )
    admin.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="access log lines as text or JSON (default %(default)s)",
    )
    admin.add_argument(
        "--log-config",
        metavar="FILE",
        help="logging configuration: a dictConfig .json file, or a fileConfig .ini file",
    )


# -- proto ------------------------------------------------------------------------------
def _write_output(text: str, path: str | None) -> None:
    """Write ``text`` to stdout (``-`` or no path) or to ``path``, creating its folder."""
    if path in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    output = Path(path)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None


def _proto(args: argparse.Namespace) -> int:
    from .schema import SchemaError, render_proto, service_file

    obj = load_object(args.target)
    if not _is_service(obj):
        raise UsageError(f"{args.target} is a {type(obj).__name__}; expected a Service class")
    try:
        header = f"Generated by `h2mesh proto {args.target}`: change the service, not this file."
        text = render_proto(service_file(obj), header=header)
    except SchemaError as exc:
        raise UsageError(f"{args.target}: {exc}") from None
    _write_output(text, args.output)
    return 0


# -- openapi ----------------------------------------------------------------------------
def _openapi(args: argparse.Namespace) -> int:
    from .server._pages import server_openapi

    server = load_server(args.target)
    try:
        doc = server_openapi(server)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{args.target}: {exc}") from None
    text = msgspec.json.format(msgspec.json.encode(doc), indent=2).decode() + "\n"
    _write_output(text, args.output)
    return 0


# -- entry point -------------------------------------------------------------------------
def _output_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE instead of standard output"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``h2mesh`` command."""
    parser = argparse.ArgumentParser(
        prog="h2mesh", description="Typed Python microservices on HTTP/2."
    )
    parser.add_argument("--version", action="version", version=f"h2mesh {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="serve services and an ASGI/WSGI application",
        description="Serve each MODULE:OBJECT (Service classes or instances, lists of "
        "services, a Server, and at most one ASGI or WSGI application, told apart "
        "automatically) on one port until SIGTERM/SIGINT, then drain in-flight calls and "
        "exit. Requests for a service method go to the service; every other request goes "
        "to the application.",
    )
    serve.add_argument("targets", metavar="MODULE:OBJECT", nargs="+")
    serve.add_argument(
        "--interface",
        choices=("auto", "asgi", "wsgi"),
        default="auto",
        help="how to call the application target (default: detected)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    serve.add_argument(
        "--port", type=int, default=8080, help="port to bind; 0 picks one (default %(default)s)"
    )
    serve.add_argument("--tls-cert", metavar="FILE", help="PEM certificate chain (enables TLS)")
    serve.add_argument("--tls-key", metavar="FILE", help="PEM private key")
    serve.add_argument(
        "--tls-client-ca",
        metavar="FILE",
        help="require client certificates signed by a CA in FILE (mutual TLS)",
    )
    serve.add_argument(
        "--grace",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long in-flight calls may run after a stop signal (default %(default)s)",
    )
    serve.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto")
    serve.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error", "critical"),
        default="info",
    )
    serve.add_argument(
        "--register", metavar="NAME", help="announce this server as NAME in a registry"
    )
    serve.add_argument(
        "--registry",
        metavar="URL",
        help="registry://[/FILE] or etcd://HOST:PORT (default: the embedded registry at "
        "$H2MESH_REGISTRY)",
    )
    serve.add_argument(
        "--register-ttl",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="the entry lapses this long after the last heartbeat (default %(default)s)",
    )
    serve.add_argument(
        "--register-address",
        metavar="HOST[:PORT]",
        help="the address to announce (default: the bound one; 127.0.0.1 for 0.0.0.0)",
    )
    serve.add_argument(
        "--forwarded-allow-ips",
        metavar="IPS",
        default=os.environ.get("FORWARDED_ALLOW_IPS"),
        help="comma-separated proxy addresses/networks (or '*') whose Forwarded and "
        "X-Forwarded-For headers give the client's address (default: $FORWARDED_ALLOW_IPS, "
        "else none)",
    )
    serve.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help="close new connections beyond N open ones (default: no cap)",
    )
    serve.add_argument(
        "--max-connections-per-address",
        type=int,
        metavar="N",
        help="close new connections from a client IP address that holds N (default: no cap)",
    )
    _add_app_flags(serve)
    _add_production_flags(serve)
    serve.set_defaults(func=_serve)

    proto = sub.add_parser(
        "proto",
        help="write the .proto of a Python-first service",
        description="Write the proto3 file equivalent to MODULE:SERVICE (a Service class), "
        "for gRPC tools and other languages. Field numbers follow declaration order.",
    )
    proto.add_argument("target", metavar="MODULE:SERVICE")
    _output_option(proto)
    proto.set_defaults(func=_proto)

    openapi = sub.add_parser(
        "openapi",
        help="write the OpenAPI 3.1 document of services or a Server",
        description="Write the OpenAPI 3.1 document (JSON) that a server of MODULE:OBJECT "
        "serves at /openapi.json: its HTTP routes and the Connect endpoints of its methods.",
    )
    openapi.add_argument("target", metavar="MODULE:OBJECT")
    _output_option(openapi)
    openapi.set_defaults(func=_openapi)

    add_call_parsers(sub)
    add_bench_parser(sub)
    add_registry_parser(sub)
    add_lb_config_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``h2mesh`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of our output went away (e.g. `| head`): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return FAILED
