"""The server: listeners, routing, running handlers, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, Unpack

from .. import _malloc
from .._deadline import current_deadline
from .._errors import Code, RpcError
from .._http2 import ErrorCode
from ..discovery import Registrar
from ..observability._observer import ServerObserver
from ..observability._tracing import server_tracer
from ..protocol import CONNECT, ServerCall, ServerProtocol, negotiate
from ..protocol._base import CallMaker, HttpStatusError, encode_metadata, method_not_allowed
from ..protocol._cors import CorsPolicy
from ..protocol.connect import allowed_methods
from ..protocol.grpc_web import CorsPreflight
from ..protocol.rest import PAGE_METHOD, RestServer
from ..service import MethodDescriptor, MethodKind, Service
from ..transport import (
    DEFAULT_MAX_MESSAGE_SIZE,
    H1Connection,
    H2Connection,
    MemoryListener,
    MessageTooLarge,
    SendBudget,
    Stream,
    TransportConfig,
    TransportError,
    listen_memory,
)
from ..transport._timers import TimerWheel, deadline_width, wheel_of
from ._app import AppOptions, HostedApp, check_app_options, host_app
from ._context import Context
from ._eager import start as start_eagerly
from ._forwarded import ProxyTrust
from ._health import HealthService, ServingStatus
from ._interceptors import Handler, ServerInterceptor
from ._limits import ConnectionLimits, raise_open_file_limit
from ._listener import Sniffer, server_ssl_context
from ._registration import ServerRegistration

if TYPE_CHECKING:
    from ..observability import CallObserver

__all__ = ["Server"]

log = logging.getLogger("h2mesh.server")

# Enum members as module constants: one looked up on its class costs about 0.3 µs (3.11).
_UNARY = MethodKind.UNARY
_SERVER_STREAM = MethodKind.SERVER_STREAM
_CLIENT_STREAM = MethodKind.CLIENT_STREAM
_UNSUPPORTED_MEDIA = [(b":status", b"415"), (b"content-type", b"text/plain; charset=utf-8")]


class _Route:
    """A method as the server calls it, bound once at registration."""

    __slots__ = ("calls", "handler", "kind", "method", "plain")

    def __init__(
        self, method: MethodDescriptor, handler: Handler, plain: Callable[[Any], Any] | None = None
    ) -> None:
        self.method = method
        self.kind = method.kind
        self.handler = handler
        #: A unary method's function of the request alone, when nothing needs the call's
        #: context: its handler takes none and no interceptor wraps it.
        self.plain = plain if method.kind is _UNARY else None
        #: The protocol and call maker (``ServerProtocol.bind``) of each content type its
        #: POST requests came with (a few: they come from the callers).
        self.calls: dict[bytes, tuple[ServerProtocol, CallMaker]] = {}


_MAX_BOUND = 8  # content types bound per route


def _bind(service: Service, method: MethodDescriptor) -> tuple[Handler, Callable[[Any], Any]]:
    """The handler of ``method`` (called with the request and the context), and the
    service's function itself."""
    func = getattr(service, method.python_name)
    if method.takes_context:
        return func, func

    def without_ctx(request: Any, ctx: Context) -> Any:
        return func(request)

    return without_ctx, func


class Server:
    """Serves services over HTTP/2 (h2c and TLS) and HTTP/1.1 on one port.

    ::

        server = Server([Greeter()])
        await server.serve("0.0.0.0", 8080)   # until SIGTERM/SIGINT

    ``app=`` mounts an ASGI 3 or WSGI application beside the services (told apart
    automatically; ``interface="asgi"|"wsgi"`` forces it): every request that no service
    method claims goes to it, so unknown paths get the application's 404. Its lifespan
    startup runs before the port opens, its shutdown after the drain. How it is served
    (``root_path=``, ``lifespan=``, ``wsgi_threads=``, ``ws_ping_interval=``...) are the
    keywords of ``AppOptions``, whose defaults are in ``server/_app.py``.

    Built in, unless turned off: ``grpc.health.v1.Health`` (``health=False``; statuses
    through ``server.health.set(name, status)``), gRPC server reflection, v1 and
    v1alpha (``reflection=False``; served when the ``protobuf`` package is installed),
    the OpenAPI document at ``/openapi.json`` (``openapi=False``) and its interactive
    page at ``/docs`` (``docs=False``; needs ``h2mesh[docs]``). With an application
    mounted, those two paths are the application's (FastAPI's own ``/docs``) unless
    ``openapi=True`` or ``docs=True`` asks for h2mesh's.

    ``cors`` says which browser origins may call, for every protocol: by default any
    origin (echoed, without credentials); a list of origins, or a ``CorsPolicy``, to
    restrict; ``False`` for no CORS headers at all.

    ``max_connections`` and ``max_connections_per_address`` cap the open connections
    (overall, and per client IP address); a connection past a cap is closed as soon as it
    is accepted. Starting raises the open-file limit (RLIMIT_NOFILE) to its hard limit.
    """

    def __init__(
        self,
        services: Iterable[Service | type[Service]],
        *,
        interceptors: Sequence[ServerInterceptor] = (),
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        config: TransportConfig | None = None,
        register: str | None = None,
        registry: Registrar | str | None = None,
        register_ttl: float = 10.0,
        register_address: str | None = None,
        health: bool = True,
        reflection: bool = True,
        cors: CorsPolicy | str | Sequence[str] | bool | None = None,
        openapi: bool | None = None,
        docs: bool | None = None,
        app: Any = None,
        interface: str = "auto",
        executor: Executor | None = None,
        forwarded_allow_ips: str | Sequence[str] | None = None,
        tracer_provider: Any = None,
        max_connections: int | None = None,
        max_connections_per_address: int | None = None,
        **app_options: Unpack[AppOptions],
    ) -> None:
        # (Checked even without an application, so that a misspelt keyword is an error.)
        app_options = check_app_options(app_options)
        self.config = config or TransportConfig()
        # Connections past either cap are closed as soon as they are accepted (_limits.py).
        self.connection_limits = ConnectionLimits(max_connections, max_connections_per_address)
        # Response bytes queued for all HTTP/2 peers together (TransportConfig.server_send_buffer).
        self.send_budget = SendBudget(self.config.server_send_buffer)
        # register="name": announce this server in a registry while serving (_registration.py).
        self.registration = (
            ServerRegistration(register, registry, ttl=register_ttl, address=register_address)
            if register
            else None
        )
        self.max_message_size = max_message_size
        self.interceptors = tuple(interceptors)
        self.services: list[Service] = []
        #: The built-in health service (``set(name, status)``), or None if turned off.
        self.health: HealthService | None = HealthService() if health else None
        self._routes: dict[bytes, _Route] = {}
        # REST routes (@rpc(http=...)) and the pages beside them (_pages.py).
        self._rest = RestServer()
        #: The CORS policy for browsers (None: no CORS headers at all).
        self.cors = _cors_policy(cors)
        self._preflight = CorsPreflight(self.cors, self._methods_for)
        # Runs blocking handlers (grpcio sync servicers); made on first need if not given.
        self._executor = executor
        self._own_executor: ThreadPoolExecutor | None = None
        self._builtins: list[Service] = []
        #: Peers whose Forwarded / X-Forwarded-For headers set ``Context.peer``.
        self.forwarded_allow_ips = forwarded_allow_ips
        for svc in services:
            self.add_service(svc)
        self._add_builtins(reflection)
        # The built-in pages give way to a mounted application unless asked for by name.
        self._pages_yield = openapi is None and docs is None
        self._page_route: _Route | None = None
        self._shadowed: _Route | None = None  # the page route while an app takes its paths
        self._rest_active = True  # False: the only REST routes are pages the app took over
        if openapi is not False or docs is not False:
            from ._pages import add_pages, page_handler

            page = self._page_route = _Route(PAGE_METHOD, page_handler)
            add_pages(self, self._rest, page, openapi=openapi is not False, docs=docs is not False)
        self._rest.check()
        self._servers: list[asyncio.Server | MemoryListener] = []
        self._connections: set[H2Connection | H1Connection] = set()
        # Bound once, not once per connection (each keeps them: 64 bytes a bound method).
        self._stream_callback = self._on_stream
        self._close_callback = self._on_close
        self._stopping: asyncio.Event | None = None
        self._cutting = False  # the shutdown grace is over: cancelled calls answer unavailable
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wheel: TimerWheel | None = None  # the loop's, which times the calls' deadlines
        self._listen_sockets: list[socket.socket] = []
        self.connections_accepted = 0
        # Socket bytes of the connections that have closed (open ones keep their own).
        self.bytes_received = self.bytes_sent = 0
        #: Sees every request (metrics, access log, request counting); None costs nothing.
        self.observer: CallObserver | None = None
        # A server span per call, when an OpenTelemetry SDK is configured (or given).
        tracer = server_tracer(tracer_provider)
        if tracer is not None:
            self.observer = ServerObserver(tracer=tracer)
        #: The hosted ASGI/WSGI application, if one is mounted.
        self.app: HostedApp | None = None
        if app is not None:
            self.mount(app, interface=interface, **app_options)

    def add_service(self, service: Service | type[Service]) -> None:
        """Register a service (an instance, or a class to instantiate with no arguments)."""
        if isinstance(service, type):
            service = service()
        if not isinstance(service, Service):
            raise TypeError(f"{service!r} is not a h2mesh Service")
        for method in service.__methods__.values():
            handler, func = _bind(service, method)
            for interceptor in reversed(self.interceptors):
                handler = interceptor.wrap(method, handler)
            plain = None if method.takes_context or self.interceptors else func
            path = method.path.encode()
            if path in self._routes:
                raise ValueError(f"two services serve {method.path}")
            route = self._routes[path] = _Route(method, handler, plain)
            for rule in method.http:
                self._rest.add(method, rule, route)
        self.services.append(service)
        if self.health is not None and service is not self.health:
            self.health.set(service.__service_name__, ServingStatus.SERVING)

    def mount(self, app: Any, *, interface: str = "auto", **options: Unpack[AppOptions]) -> None:
        """Mount an ASGI or WSGI application (the ``app=`` of the constructor, with the
        same options), before the server starts."""
        if self.app is not None:
            raise ValueError("an application is already mounted")
        if self._servers:
            raise RuntimeError("mount() must come before start()")
        self.app = host_app(app, interface=interface, **options)
        if self._pages_yield:
            self._shadowed = self._page_route
        self.app.trust = self._trust

    # -- grpcio servicers (server/_grpcio.py) -----------------------------------------
    def add_generic_rpc_handlers(self, generic_rpc_handlers: Iterable[Any]) -> None:
        """Serve grpcio method handlers, as ``add_XServicer_to_server(servicer, server)``
        of grpcio's generated code calls it (needs the servicer's grpcio and protobuf)."""
        from ._grpcio import services_from_generic_handlers

        for svc in services_from_generic_handlers(generic_rpc_handlers, self._blocking_pool):
            self._add_grpcio(svc)

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, Any]
    ) -> None:
        """Serve ``{"Method": grpc.RpcMethodHandler}`` (grpcio >= 1.62 generated code)."""
        from ._grpcio import service_from_method_handlers

        self._add_grpcio(
            service_from_method_handlers(service_name, method_handlers, self._blocking_pool)
        )

    def _add_grpcio(self, service: Service) -> None:
        from ._grpcio import GrpcioService

        name = service.__service_name__
        for old in self.services:
            if old.__service_name__ != name:
                continue
            if isinstance(old, GrpcioService) and isinstance(service, GrpcioService):
                if old.paths == service.paths:
                    return  # generated code adds each service twice (generic + registered)
            elif any(old is builtin for builtin in self._builtins):
                self._remove_service(old)  # the caller's service wins over a built-in one
                if old is self.health:
                    self.health = None
                break
        self.add_service(service)

    def _remove_service(self, service: Service) -> None:
        for method in service.__methods__.values():
            self._routes.pop(method.path.encode(), None)
        self.services.remove(service)

    def _blocking_pool(self) -> Executor:
        if self._executor is None:
            self._executor = self._own_executor = ThreadPoolExecutor(
                max_workers=32, thread_name_prefix="h2mesh-sync"
            )
        return self._executor

    def _add_builtins(self, reflection: bool) -> None:
        # A service of the same name given by the caller wins over the built-in one.
        taken = {svc.__service_name__ for svc in self.services}
        builtins: list[Service] = []
        if self.health is not None:
            if self.health.__service_name__ in taken:
                self.health = None
            else:
                builtins.append(self.health)
        if reflection and _have_protobuf():
            from ._reflection import reflection_services

            builtins += reflection_services(lambda: self.services)
        self._builtins = builtins
        for svc in builtins:
            if svc.__service_name__ not in taken:
                self.add_service(svc)

    @property
    def forwarded_allow_ips(self) -> ProxyTrust | None:
        return self._trust

    @forwarded_allow_ips.setter
    def forwarded_allow_ips(self, spec: str | Sequence[str] | ProxyTrust | None) -> None:
        trust = spec if isinstance(spec, ProxyTrust) or spec is None else ProxyTrust(spec)
        self._trust = trust or None
        app: HostedApp | None = getattr(self, "app", None)
        if app is not None:
            app.trust = self._trust

    @property
    def methods(self) -> list[MethodDescriptor]:
        """Every method this server routes to."""
        return [route.method for route in self._routes.values()]

    # -- listening ------------------------------------------------------------------
    async def start(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: ssl.SSLContext | tuple[str, str] | None = None,
        backlog: int = 1024,
        sock: socket.socket | None = None,
    ) -> None:
        """Start listening (port 0 picks a free port; see ``port``), or serve on ``sock``,
        an already bound socket (TCP or Unix; ``h2mesh.server._sockets`` makes them)."""
        _malloc.tune()  # large messages without page faults (see _malloc.py)
        loop = self._loop = asyncio.get_running_loop()
        self._wheel = wheel_of(loop)
        ctx = server_ssl_context(*tls) if isinstance(tls, tuple) else tls
        factory = await self._begin(b"https" if ctx is not None else b"http")
        if sock is None:
            srv = await loop.create_server(factory, host, port, ssl=ctx, backlog=backlog)
        elif sock.family == socket.AF_UNIX:
            srv = await loop.create_unix_server(factory, sock=sock, ssl=ctx, backlog=backlog)
        else:
            srv = await loop.create_server(factory, sock=sock, ssl=ctx, backlog=backlog)
        self._servers.append(srv)
        sockname = srv.sockets[0].getsockname()
        if self.registration is not None and isinstance(sockname, tuple):
            await self.registration.start(sockname)

    async def start_in_memory(self) -> MemoryListener:
        """Serve connections made inside this process, with no socket (``h2mesh.testing``
        runs services this way): the listener's ``address`` is what a Channel dials.

        Every connection still goes through the HTTP/2 (or HTTP/1.1) engine, the router
        and the protocols, exactly as one accepted from a socket.
        """
        loop = self._loop = asyncio.get_running_loop()
        self._wheel = wheel_of(loop)
        listener = listen_memory(await self._begin(b"http"))
        self._servers.append(listener)
        return listener

    async def _begin(self, scheme: bytes) -> Callable[[], asyncio.Protocol]:
        """Start the hosted app and the routes; returns the factory of the protocol every
        accepted connection starts with."""
        if self.app is not None:
            await self.app.startup()  # before the port opens
        self._rest_active = bool(self._rest) and (
            self._shadowed is None or bool(self._rest.routes())
        )

        limits = self.connection_limits if self.connection_limits.active else None
        raise_open_file_limit()

        def factory() -> asyncio.Protocol:
            return Sniffer(
                self._make_h2, self._make_h1, scheme, self.config.handshake_timeout, limits
            )

        return factory

    @property
    def port(self) -> int:
        """The port of the first listener."""
        return int(self.sockets[0][1])

    @property
    def sockets(self) -> list[Any]:
        """The bound addresses of every listener."""
        if not self._servers and self._listen_sockets:
            return [sock.getsockname() for sock in self._listen_sockets]  # supervised
        return [sock.getsockname() for srv in self._servers for sock in srv.sockets]

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        tls: ssl.SSLContext | tuple[str, str] | None = None,
        grace: float = 10.0,
        ready: Callable[[Server], None] | None = None,
        sockets: Sequence[socket.socket] = (),
        workers: int = 1,
        max_requests: int = 0,
        max_requests_jitter: int = 0,
        admin: tuple[str, int] | None = None,
        load: str | None = None,
    ) -> None:
        """Listen and serve until SIGTERM/SIGINT (or ``stop()``), then shut down.

        ``sockets`` replaces ``host``/``port`` with already bound listeners. ``workers=N``
        forks N worker processes that share the listeners under a supervisor (see
        ``h2mesh.server._supervisor``): dead workers are restarted, SIGHUP replaces them
        one at a time, and ``max_requests`` (plus up to ``max_requests_jitter``) recycles
        each worker after that many requests. ``admin=(host, port)`` serves ``/metrics``,
        ``/status``, ``/healthz`` and ``/readyz`` there, and turns call metrics on.

        Workers are forked from this process and run the code it has imported, so a
        SIGHUP restarts them without new code (gunicorn's ``--preload``). To deploy new
        code with SIGHUP, name this server by import string, ``load="app.main:server"``
        (a ``Server``, or a function returning one): each new worker then imports the
        project's modules afresh and serves what that name holds.
        """
        if load is not None:
            from ._loader import check_spec

            check_spec(load)
        if workers != 1 or max_requests > 0:
            from ._sockets import bind_tcp
            from ._supervisor import Supervisor, SupervisorError

            socks = list(sockets) or [bind_tcp(host, port)]
            self._listen_sockets = socks
            from ._loader import import_server

            supervisor = Supervisor(
                self,
                socks,
                load=None if load is None else functools.partial(import_server, load, Server),
                workers=workers,
                tls=lambda: tls,
                grace=grace,
                max_requests=max_requests,
                max_requests_jitter=max_requests_jitter,
                registration=self.registration,
                admin=admin,
                ready=(lambda _: ready(self)) if ready is not None else None,
            )
            if await supervisor.run() != 0:
                raise SupervisorError(supervisor.error or "the workers failed")
            return
        if admin is not None:
            from ._admin import start_local_admin

            admin_listener = await start_local_admin(self, *admin)
        else:
            admin_listener = None
        if sockets:
            for sock in sockets:
                await self.start(sock=sock, tls=tls)
        else:
            await self.start(host, port, tls=tls)
        loop = asyncio.get_running_loop()
        stopping = self._stopping = asyncio.Event()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stopping.set)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        if ready is not None:
            ready(self)
        try:
            await stopping.wait()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            if admin_listener is not None:
                admin_listener.draining = True
            await self.stop(grace)
            if admin_listener is not None:
                await admin_listener.close()

    def request_stop(self) -> None:
        """Ask ``serve()`` to shut down gracefully."""
        if self._stopping is not None:
            self._stopping.set()

    async def stop(self, grace: float = 10.0) -> None:
        """Graceful shutdown: deregister, stop accepting, GOAWAY, drain for ``grace`` s, then
        cancel."""
        if self.health is not None:
            self.health.shutdown()  # watchers hear NOT_SERVING, then their streams end
        if self.app is not None:
            self.app.going_away()  # open WebSockets hear 1012
        if self.registration is not None:
            await self.registration.stop()
        for srv in self._servers:
            srv.close()
        for conn in list(self._connections):
            conn.shutdown()
        pending = [c.closed for c in self._connections if not c.closed.done()]
        if pending:
            await asyncio.wait(pending, timeout=grace)
        await self._end_running_calls()
        for conn in list(self._connections):
            conn.abort()
        pending = [c.closed for c in self._connections if not c.closed.done()]
        if pending:
            await asyncio.wait(pending, timeout=1.0)
        for srv in self._servers:
            await srv.wait_closed()
        self._servers.clear()
        if self.app is not None:
            await self.app.shutdown()
        if self._own_executor is not None:
            # Threads still running a servicer finish on their own; none are waited for.
            self._own_executor.shutdown(wait=False, cancel_futures=True)
            self._executor = self._own_executor = None

    async def _end_running_calls(self) -> None:
        """The grace is over: calls still running end with ``unavailable`` (gRPC trailers,
        the Connect end-of-stream error) before their connections close."""
        tasks = [
            stream.task
            for conn in self._connections
            for stream in conn.active_streams()
            if stream.task is not None and not stream.task.done()
        ]
        if not tasks:
            return
        self._cutting = True
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=1.0)
        self._cutting = False

    async def __aenter__(self) -> Server:
        if not self._servers:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop(grace=1.0)

    # -- connections ------------------------------------------------------------------
    def _make_h2(self) -> H2Connection:
        conn = H2Connection(
            client=False,
            config=self.config,
            on_stream=self._stream_callback,
            on_close=self._close_callback,
            connect_protocol=self.app is not None and bool(self.app.upgrades),
            send_budget=self.send_budget,
        )
        self._connections.add(conn)
        self.connections_accepted += 1
        return conn

    def _make_h1(self, scheme: bytes) -> H1Connection:
        conn = H1Connection(
            config=self.config,
            on_stream=self._stream_callback,
            on_close=self._close_callback,
            scheme=scheme,
            upgrades=self.app.upgrades if self.app is not None else frozenset(),
        )
        self._connections.add(conn)
        self.connections_accepted += 1
        return conn

    def _on_close(self, conn: Any) -> None:
        self._connections.discard(conn)
        self.bytes_received += conn.bytes_received
        self.bytes_sent += conn.bytes_sent
        if self.connection_limits.active:
            self.connection_limits.release(conn.peer)

    def _on_stream(self, stream: Stream) -> None:
        loop = self._loop
        assert loop is not None
        try:
            accepted: Any = self._accept(stream)
        except _Refused as refused:
            accepted = refused
        except Exception:
            accepted = _UNROUTED
        obs = self.observer
        if (
            obs is None
            and stream.inline_start
            and accepted is not None
            and accepted is not _UNROUTED
        ):
            # The common case: the call starts at once (in the transport's event
            # callback) and gets a task only if it has to wait.
            stream.task = start_eagerly(loop, self._serve(stream, accepted))
            return
        app = self.app
        if accepted is None and obs is None and app is not None:
            # The hosted application (a task each: see AsgiHost.serve), with no
            # coroutine of the server's own around its own.
            # Made with its name where no task factory is set: create_task would format
            # a "Task-N" name first, then replace it (a thousand instructions).
            if loop.get_task_factory() is None:
                stream.task = asyncio.Task(app.serve(stream), loop=loop, name="h2mesh-app")
            else:
                stream.task = loop.create_task(app.serve(stream), name="h2mesh-app")
            return
        serve: Callable[[Stream], Coroutine[Any, Any, Any]]
        if accepted is _UNROUTED:
            serve = self._serve_stream  # a bug in routing: a task meets it again, and logs it
        elif accepted is None:
            serve = self._serve_app
        else:
            serve = partial(self._serve_accepted, accepted)
        coro = serve(stream) if obs is None else obs.observe(serve, stream)
        if stream.inline_start and accepted is not None and accepted is not _UNROUTED:
            stream.task = start_eagerly(loop, coro)
        else:
            # The hosted application, a failed routing, and the requests that the
            # HTTP/1.1 transport hands on from inside its parser: a task each.
            stream.task = loop.create_task(coro)

    def _methods_for(self, path: bytes) -> list[str]:
        """The HTTP methods served at ``path`` (for preflights)."""
        route = self._routes.get(path.partition(b"?")[0])
        if route is not None:
            return allowed_methods(route.method)
        return self._rest.methods_for(path)

    @property
    def rest(self) -> RestServer:
        """The HTTP routes of this server's methods (and its built-in pages)."""
        return self._rest

    # -- one request --------------------------------------------------------------
    def _accept(self, stream: Stream) -> _Accepted | None:
        """Route a request to a method and a protocol, or raise ``_Refused``; None hands
        it to the hosted application.

        Order: the exact RPC path (any protocol), then the REST routes, then the hosted
        application, then the 415 / ``unimplemented`` answers. Also returns the CORS
        headers of the response.
        """
        request = stream.fields
        method = request.get(b":method")
        path = request.get(b":path", b"")
        route = self._routes.get(path)
        if route is not None and method == b"POST":
            # The common case: a call of a method with a content type bound before.
            bound = route.calls.get(request.get(b"content-type", b""))
            if bound is not None:
                bound_proto, make = bound
                try:
                    call = make(stream, request, self.max_message_size)
                except RpcError as exc:
                    raise _Refused(bound_proto, request, exc) from None
                # Inline, not _call_cors(): most calls carry no origin, and pay a lookup.
                origin = request.get(b"origin")
                if origin is None or self.cors is None:
                    return route, call, bound_proto, None
                return route, call, bound_proto, self.cors.response_headers(origin)
        if route is None and path.find(b"?") >= 0:  # (not "in": see _h1wire.field_block)
            route = self._routes.get(path.partition(b"?")[0])
        if route is None:
            if self._rest_active:
                if method == b"OPTIONS" and self._rest.methods_for(path):
                    raise _Refused(self._preflight, request, _PREFLIGHT)
                try:
                    hit = self._rest.accept(stream, request, self.max_message_size)
                except HttpStatusError as exc:  # 405: a browser may read it too
                    cors = self._cors_headers(request)
                    if cors:
                        exc.headers += encode_metadata(cors)
                    raise _Refused(self._rest, request, exc) from None
                except RpcError as exc:
                    raise _Refused(self._rest, request, exc) from None
                if hit is not None and hit[0] is not self._shadowed:
                    return hit[0], hit[1], self._rest, self._cors_headers(request)
            if self.app is not None:
                return None  # no service claims it: the hosted application answers
            if method == b"OPTIONS":
                raise _Refused(self._preflight, request, _PREFLIGHT)
            proto = negotiate(method, request.get(b"content-type"))
            if proto is None:
                raise _Refused(None, request, None)
            error = RpcError(Code.UNIMPLEMENTED, f"unknown method {path.decode('latin-1')}")
            raise _Refused(proto, request, error)
        if method == b"OPTIONS":
            raise _Refused(self._preflight, request, _PREFLIGHT)
        content_type = request.get(b"content-type")
        proto = negotiate(method, content_type)
        if proto is None:
            if method not in (b"POST", b"GET"):
                # Every RPC protocol calls with POST (Connect also GET): 405, not 415.
                desc = route.method
                error = method_not_allowed(
                    desc.path, (method or b"").decode("latin-1"), allowed_methods(desc)
                )
                raise _Refused(CONNECT, request, error)
            raise _Refused(None, request, None)
        try:
            if method == b"POST" and content_type is not None:
                make = proto.bind(route.method, content_type)
                if len(route.calls) < _MAX_BOUND:
                    route.calls[content_type] = proto, make
                call = make(stream, request, self.max_message_size)
            else:
                call = proto.server_call(stream, route.method, request, self.max_message_size)
        except RpcError as exc:
            raise _Refused(proto, request, exc) from None
        return route, call, proto, self._call_cors(request)

    def _call_cors(self, request: dict[bytes, bytes]) -> dict[str, str] | None:
        """The CORS headers of a call's response (most calls carry no origin)."""
        origin = request.get(b"origin")
        if origin is None or self.cors is None:
            return None
        return self.cors.response_headers(origin)

    def _cors_headers(self, request: dict[bytes, bytes]) -> dict[str, str] | None:
        if self.cors is None:
            return None
        return self.cors.response_headers(request.get(b"origin"))

    async def _serve_stream(self, stream: Stream) -> Context | _Refused | _Hosted | None:
        """A request routed in its own task."""
        accepted: _Accepted | _Refused | None
        try:
            accepted = self._accept(stream)
        except _Refused as refused:
            accepted = refused
        if accepted is None:
            return await self._serve_app(stream)
        return await self._serve(stream, accepted, True)

    async def _serve_app(self, stream: Stream) -> _Hosted:
        assert self.app is not None
        await self.app.serve(stream)
        return _HOSTED

    def _serve_accepted(self, accepted: _Accepted | _Refused, stream: Stream) -> Any:
        return self._serve(stream, accepted, True)

    async def _serve(
        self, stream: Stream, accepted: _Accepted | _Refused, observed: bool = False
    ) -> Context | _Refused | None:
        # One coroutine per call, from routing to the last byte: every extra await
        # layer on this path costs each call. Returns what an observer reports (if
        # ``observed``): the call's context (method, protocol, code) or the refusal.
        if isinstance(accepted, _Refused):
            with contextlib.suppress(TransportError):  # the peer may have gone away
                await accepted.answer(stream)
            return accepted
        route, call, proto, cors = accepted
        method = route.method
        timeout = call.timeout
        plain = route.plain
        if plain is not None and timeout is None:
            # A unary call that nothing asks the context of: none is made unless it fails
            # (or an observer asks how it went).
            try:
                response = await plain(await call.receive())
                await call.send_unary(response, cors, None)
            except BaseException as exc:
                ctx = Context(stream, method, proto.name, None, cors)
                await self._end_failed(call, ctx, exc)
                return ctx
            return Context(stream, method, proto.name, None, cors) if observed else None
        timer: dict[Any, None] | None = None
        if timeout is not None:
            loop, wheel = self._loop, self._wheel
            assert loop is not None and wheel is not None
            deadline = loop.time() + timeout
            current_deadline.set(deadline)
            ctx = _TimedContext(stream, method, proto.name, deadline, cors)
            # A slot of the loop's timer wheel (_timers.py), not a loop timer of its
            # own: up to deadline_width(timeout) late (at most 50 ms), never early.
            # (It can only fire once the call waits, when the call has its task.)
            timer = wheel.schedule_at(loop, ctx, deadline, deadline_width(timeout))
        else:
            ctx = Context(stream, method, proto.name, None, cors)
        if self._trust is not None:
            ctx._trust = self._trust
        try:
            kind = route.kind
            if kind is _UNARY:
                response = await route.handler(await call.receive(), ctx)
                await call.send_unary(response, ctx._response_headers, ctx._response_trailers)
            elif kind is _SERVER_STREAM:
                await self._stream_out(route.handler(await call.receive(), ctx), call, ctx)
            elif kind is _CLIENT_STREAM:
                response = await route.handler(call.receive_stream(), ctx)
                await call.send_unary(response, ctx._response_headers, ctx._response_trailers)
            else:
                await self._stream_out(route.handler(call.receive_stream(), ctx), call, ctx)
        except BaseException as exc:
            await self._end_failed(call, ctx, exc)
        finally:
            if timer is not None:
                timer.pop(ctx, None)
        return ctx

    async def _end_failed(self, call: ServerCall, ctx: Context, exc: BaseException) -> None:
        """End a call that raised ``exc``: answer with its status, or raise again what is
        not the call's to answer (the caller's cancellation, the interpreter's exit)."""
        if isinstance(exc, RpcError):
            error = exc
        elif isinstance(exc, asyncio.CancelledError):
            if not ctx.timed_out and not self._cutting:
                ctx.code = Code.CANCELED
                raise exc  # the caller reset the stream
            task = call.stream.task
            if task is not None:
                task.uncancel()
            if ctx.timed_out:
                error = RpcError(Code.DEADLINE_EXCEEDED, "deadline exceeded")
            else:
                error = RpcError(
                    Code.UNAVAILABLE, "server shutting down: the call ran past the grace period"
                )
        elif isinstance(exc, MessageTooLarge):
            error = RpcError(Code.RESOURCE_EXHAUSTED, str(exc))
        elif isinstance(exc, TransportError):
            ctx.code = Code.CANCELED  # the peer went away; nothing left to answer
            return
        elif isinstance(exc, Exception):
            log.error("handler %s failed", ctx.method.path, exc_info=exc)
            error = RpcError(Code.INTERNAL, "internal error")
        else:
            raise exc
        await self._fail(call, ctx, error)

    @staticmethod
    async def _stream_out(responses: AsyncIterator[Any], call: ServerCall, ctx: Context) -> None:
        try:
            async for message in responses:
                await call.send_message(message, ctx._response_headers)
        finally:
            aclose = getattr(responses, "aclose", None)
            if aclose is not None:
                await aclose()
        await call.finish(None, ctx._response_headers, ctx._response_trailers)

    @staticmethod
    async def _fail(call: ServerCall, ctx: Context, error: RpcError) -> None:
        ctx.code = error.code
        if call.headers_sent and not call.method.kind.server_streams:
            # The single response already started: all that is left is to abort it.
            call.stream.reset(ErrorCode.INTERNAL_ERROR)
            return
        with contextlib.suppress(TransportError):
            await call.finish(error, ctx._response_headers, ctx._response_trailers)


_PREFLIGHT = RpcError(Code.UNIMPLEMENTED, "OPTIONS is answered as a CORS preflight")


def _cors_policy(cors: CorsPolicy | str | Sequence[str] | bool | None) -> CorsPolicy | None:
    if cors is None or cors is True:
        return CorsPolicy("*")
    if cors is False:
        return None
    if isinstance(cors, CorsPolicy):
        return cors
    return CorsPolicy(cors)


def _have_protobuf() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("google.protobuf") is not None
    except (ImportError, ValueError):
        return False


class _TimedContext(Context):
    """The context of a call with a deadline: its entry in the timer wheel."""

    __slots__ = ()

    def on_timer(self) -> None:
        """The deadline passed: cancel the call, which then answers DEADLINE_EXCEEDED."""
        self.timed_out = True
        task = self._stream.task
        if task is not None:
            task.cancel()


_Accepted = tuple[_Route, ServerCall, ServerProtocol, dict[str, str] | None]
_UNROUTED: Any = object()  # routing raised: the request's task routes it again


class _Refused(Exception):
    """A request that never became a call: no protocol, no such method, bad headers."""

    def __init__(
        self, proto: ServerProtocol | None, request: dict[bytes, bytes], error: RpcError | None
    ) -> None:
        self.proto = proto
        self.request = request
        self.error = error
        # What an observer reads of a request that never became a call.
        self.method = None
        self.protocol = proto.name if proto is not None else None
        self.code = error.code if error is not None else None
        self.status = "415"

    async def answer(self, stream: Stream) -> None:
        if self.proto is None or self.error is None:
            ct = self.request.get(b"content-type", b"(none)").decode("latin-1")
            stream.send_headers(_UNSUPPORTED_MEDIA)
            await stream.send_data(f"unsupported content type {ct}\n".encode(), end_stream=True)
            return
        await self.proto.reject(stream, self.request, self.error)


class _Hosted:
    """What an observer reads of a request the hosted application answered."""

    method = None
    protocol = "app"
    code = None
    status = "app"


_HOSTED = _Hosted()
