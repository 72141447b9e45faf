"""``Channel``: calls to a target, balanced per call over its discovered endpoints.

target -> resolver (discovery) -> ``Endpoints`` (balancer, a pool per endpoint, health and
backoff) -> ``UnaryCalls`` / ``hedged_call`` / ``StreamCalls`` (attempts and retries) ->
``CallFlow`` (one attempt on one stream, with the protocol's hooks). A single fixed
endpoint with no per-endpoint policy takes a shorter path that skips the bookkeeping.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .. import _malloc
from .._deadline import current_deadline, effective_timeout
from .._errors import Code, RpcError, UnprocessedError
from ..balancing import Balancer, OutlierDetection
from ..discovery import Resolver, StaticResolver, resolve
from ..observability._tracing import client_tracer
from ..protocol import Metadata, ResponseMetadata
from ..resilience import HedgingPolicy, RetryPolicy, RetryThrottle
from ..service import MethodDescriptor, Service
from ..transport import DEFAULT_MAX_MESSAGE_SIZE, TransportConfig
from ._call import CallFlow, CallOptions
from ._endpoints import Endpoints
from ._health import HealthChecker
from ._hedged import hedged_call
from ._interceptors import (
    ClientCall,
    ClientInterceptor,
    StreamCall,
    UnaryCall,
    chain_stream,
    chain_unary,
)
from ._metrics import ClientMetrics, client_metrics
from ._pool import EndpointPool
from ._protocols import client_protocol
from ._streaming import StreamCalls
from ._stub import make_stub
from ._traced import TracedCallFlow
from ._unary import UnaryCalls

__all__ = ["Channel"]

S = TypeVar("S", bound=Service)

# Client connections ping after 30 s of silence and close after 5 idle minutes (the pool
# opens a new one on demand), so connections opened for a burst do not linger.
_CLIENT_CONFIG = TransportConfig(idle_timeout=300.0, keepalive_interval=30.0)


class Channel:
    """A client for a target: one server or a discovered set of replicas.

    ``target`` is ``http://host:port`` / ``https://host:port`` (one endpoint),
    ``static://h1:p1,h2:p2``, ``dns://name:port``, ``registry://service`` (the embedded
    registry) or ``etcd://host:port/service``. Each call is balanced by ``policy``
    (``round_robin``, ``pick_first``, ``least_request``, ``ring_hash`` with the call's
    ``key=``, ``weighted``) over the endpoints not ejected by ``outlier_detection`` and
    below ``max_concurrency`` calls in flight (none left: the call fails fast with
    ``UNAVAILABLE``); with ``health_check_interval``, endpoints whose
    ``grpc.health.v1.Health/Check`` does not answer SERVING are left out too. Every
    endpoint gets its own pool of multiplexed HTTP/2 connections.

    ``protocol`` is ``"connect"`` (default codec ``msgpack``), ``"grpc"``, ``"grpc-web"``
    or ``"grpc-web-text"`` (default codec ``proto``); ``compression`` (``"gzip"``,
    ``"deflate"``, ``"zstd"``) compresses request messages (and asks for compressed
    responses).

    Resilience: calls that never reached a server (no connection, refused stream,
    GOAWAY) are sent again transparently. ``retry`` (gRFC A6) retries failed calls of
    methods marked ``@rpc(idempotent=True)`` (all methods with ``retry_all=True``);
    ``hedging`` sends idempotent unary calls to several endpoints, ``hedging_delay``
    apart, and keeps the first success; ``retry_throttle`` bounds both. The deadline
    (``timeout``) covers every attempt.

    ``metrics=True`` counts and times the calls, per-endpoint picks and ejections,
    retries and hedges into the process-wide ``client_metrics()`` (a ``ClientMetrics``
    to keep them apart): see ``h2mesh.client._metrics`` and docs/deployment.md.

    ::

        async with Channel("registry://demo.v1.Greeter", policy="least_request") as ch:
            greeter = ch.stub(Greeter)
            reply = await greeter.say_hello(HelloRequest(name="x"), timeout=1.0)
    """

    def __init__(
        self,
        target: str,
        *,
        protocol: str = "connect",
        codec: str | None = None,
        compression: str | None = None,
        timeout: float | None = None,
        headers: Metadata | None = None,
        ssl_context: ssl.SSLContext | None = None,
        client_cert: tuple[str, str] | None = None,
        use_get: bool = False,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        config: TransportConfig | None = None,
        connect_timeout: float = 5.0,
        policy: str = "round_robin",
        retry: RetryPolicy | None = None,
        retry_all: bool = False,
        hedging: HedgingPolicy | None = None,
        retry_throttle: RetryThrottle | None = None,
        outlier_detection: OutlierDetection | None = None,
        max_concurrency: int | None = None,
        max_connections_per_endpoint: int = 8,
        health_check_interval: float | None = None,
        health_check_service: str = "",
        resolver: Resolver | None = None,
        interceptors: Sequence[ClientInterceptor] = (),
        tracer_provider: Any = None,
        metrics: ClientMetrics | bool = False,
    ) -> None:
        _malloc.tune()  # large messages without page faults (see _malloc.py)
        self.target = target
        scheme, sep, _ = target.partition("://")
        if not sep:
            raise ValueError(f"target must be a URL such as http://host:port, got {target!r}")
        self._ssl = _tls(scheme, ssl_context, client_cert)
        self.protocol = client_protocol(protocol, codec, compression, use_get)
        self.default_timeout = timeout
        self.default_headers = headers
        self.max_message_size = max_message_size
        self.config = config or _CLIENT_CONFIG
        self.connect_timeout = connect_timeout
        self.retry = retry
        self.retry_all = retry_all
        self.hedging = hedging
        self.retry_throttle = retry_throttle
        self.max_connections_per_endpoint = max_connections_per_endpoint
        self.health_check_interval = health_check_interval
        self.health_check_service = health_check_service
        self._base_headers: list[tuple[bytes, bytes]] = [
            (b":method", b"POST"),
            (b":scheme", b"https" if self._ssl is not None else b"http"),
            (b":authority", _authority(target).encode()),
        ]
        # A client span per attempt, when an OpenTelemetry SDK is configured (or given).
        tracer = client_tracer(tracer_provider)
        self._flow = (
            CallFlow(self.protocol, self._base_headers, max_message_size)
            if tracer is None
            else TracedCallFlow(self.protocol, self._base_headers, max_message_size, tracer)
        )
        self.balancer = Balancer(
            policy, outlier_detection=outlier_detection, max_concurrency=max_concurrency
        )
        background = []
        if outlier_detection is not None:
            background.append(self._tick_outliers)
        if health_check_interval is not None:
            background.append(self._check_health)
        self._resolver = resolver if resolver is not None else resolve(target)
        self.endpoints = Endpoints(
            target,
            self._resolver,
            self.balancer,
            ssl_context=self._ssl,
            config=self.config,
            connect_timeout=connect_timeout,
            max_connections=max_connections_per_endpoint,
            background=background,
        )
        self._outlier_detection = outlier_detection
        # One fixed endpoint and nothing per-endpoint to enforce: skip the balancer.
        self._direct: EndpointPool | None = None
        fixed = self._resolver.current
        if (
            isinstance(self._resolver, StaticResolver)
            and fixed is not None
            and len(fixed) == 1
            and outlier_detection is None
            and max_concurrency is None
            and health_check_interval is None
        ):
            self.endpoints.apply(fixed)
            self._direct = self.endpoints.pools[fixed[0].address]
        self._unary_calls = UnaryCalls(self.endpoints, self._flow, retry, retry_all, retry_throttle)
        self._stream_calls = StreamCalls(self.endpoints, self._flow, self._direct)
        # Unary calls on the one fixed endpoint with no retry policy: the shortest path.
        self._fast = self._direct if retry is None and hedging is None else None
        self.interceptors = tuple(interceptors)
        self._intercept_unary: UnaryCall | None = None
        self._intercept_stream: StreamCall | None = None
        #: Where this channel's call metrics go (``metrics=True``: ``client_metrics()``).
        self.metrics = client_metrics() if metrics is True else metrics or None
        self._unary_calls.metrics = self._stream_calls.metrics = self.metrics
        chain = self.interceptors
        if self.metrics is not None:  # innermost: it times the call as sent
            chain = (*chain, self.metrics.bind(self))
        if chain:
            self._intercept_unary = chain_unary(chain, self._unary)
            self._intercept_stream = chain_stream(chain, self._stream)
        # The loop the channel's connections and tasks live on (set by the first call).
        self._loop: asyncio.AbstractEventLoop | None = None

    def _bind_loop(self) -> None:
        """Adopt the running loop: the first call's, or a new one after the old closed."""
        loop = asyncio.get_running_loop()
        old = self._loop
        if old is not None and not old.is_closed():
            raise RuntimeError(
                "this Channel is in use by another event loop; make one Channel per loop "
                "(or per thread)"
            )
        self._loop = loop
        if old is not None:
            # A new asyncio.run() after the one that opened the connections: they, their
            # timers and the background tasks died with the old loop; start afresh.
            self.endpoints.forget()

    # -- background jobs ------------------------------------------------------------
    async def _tick_outliers(self) -> None:
        """Outlier detection's clock: one ``Balancer.tick`` per interval."""
        assert self._outlier_detection is not None
        loop = asyncio.get_running_loop()
        interval = self._outlier_detection.interval
        while True:
            await asyncio.sleep(interval)
            self.balancer.tick(loop.time())

    async def _check_health(self) -> None:
        assert self.health_check_interval is not None
        checker = HealthChecker(
            self.endpoints,
            self._base_headers,
            self.health_check_interval,
            self.health_check_service,
        )
        await checker.run()

    # -- lifecycle ------------------------------------------------------------------
    async def close(self) -> None:
        """Stop discovery and close the connections after in-flight calls (5 s at most)."""
        if self._loop is not None and asyncio.get_running_loop() is not self._loop:
            self._bind_loop()
        await self.endpoints.close()

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- calls ----------------------------------------------------------------------
    def _prepare(self, call: CallOptions) -> tuple[CallOptions, float | None]:
        """``call`` with the channel's default headers under its own, and its deadline
        (an event-loop time): the call's timeout or the channel's, cut to what is left of
        an inherited deadline."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._bind_loop()
        timeout = call.timeout
        if timeout is None:
            timeout = self.default_timeout
        if current_deadline.get() is not None:  # a call made while serving one
            timeout = effective_timeout(timeout)
        defaults = self.default_headers
        if defaults is not None:
            headers = {**defaults, **call.headers} if call.headers else defaults
            call = CallOptions(call.method, headers, call.timeout, call.metadata, call.key)
        return call, None if timeout is None else loop.time() + timeout

    def unary(
        self,
        method: MethodDescriptor,
        request: Any,
        *,
        timeout: float | None = None,
        headers: Metadata | None = None,
        metadata: ResponseMetadata | None = None,
        key: bytes | str | None = None,
    ) -> Awaitable[Any]:
        """Make a unary call; the awaited result is the response message, or it raises
        ``RpcError``."""
        if self._intercept_unary is not None:
            details = ClientCall(method, headers, timeout, metadata, key)
            return self._intercept_unary(request, details)
        return self._unary(request, CallOptions(method, headers, timeout, metadata, key))

    async def _unary(self, request: Any, call: CallOptions) -> Any:
        # (_prepare inline: this runs for every unary call.)
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._bind_loop()
        timeout = call.timeout
        if timeout is None:
            timeout = self.default_timeout
        if current_deadline.get() is not None:  # a call made while serving one
            timeout = effective_timeout(timeout)
        defaults = self.default_headers
        if defaults is not None:
            headers = {**defaults, **call.headers} if call.headers else defaults
            call = CallOptions(call.method, headers, call.timeout, call.metadata, call.key)
        deadline = None if timeout is None else loop.time() + timeout
        # Each attempt ends by the deadline (its timer resets the stream), and so does every
        # wait between attempts: no timeout scope is needed but the hedges'.
        direct = self._fast
        if direct is not None:
            # One fixed endpoint, no retry policy: the call flow on its pool, no more.
            try:
                return await self._flow.unary(direct, call, request, deadline)
            except UnprocessedError:
                # The one attempt never reached the server (refused by a GOAWAY, or no
                # connection): send it again, as the other paths do.
                return await self._unary_calls.call(call, request, deadline, retry=False)
        if self.hedging is None or not call.method.idempotent:
            return await self._unary_calls.call(call, request, deadline)
        attempt = hedged_call(
            self._unary_calls, self.hedging, self.retry_throttle, call, request, deadline
        )
        if deadline is None:
            return await attempt
        try:
            async with asyncio.timeout_at(deadline):
                return await attempt
        except TimeoutError:
            raise RpcError(Code.DEADLINE_EXCEEDED, "deadline exceeded") from None

    def stream(
        self,
        method: MethodDescriptor,
        request: Any = None,
        requests: AsyncIterable[Any] | None = None,
        *,
        timeout: float | None = None,
        headers: Metadata | None = None,
        metadata: ResponseMetadata | None = None,
        key: bytes | str | None = None,
    ) -> AsyncIterator[Any]:
        """Make a streaming call; iterate it for the response messages.

        Pass ``request`` for server streams, ``requests`` for client and bidi streams.
        A server stream that never reached a server is sent again transparently.
        """
        if self._intercept_stream is not None:
            details = ClientCall(method, headers, timeout, metadata, key)
            return self._intercept_stream(request if requests is None else requests, details)
        call, deadline = self._prepare(CallOptions(method, headers, timeout, metadata, key))
        return self._stream_calls.call(call, request, requests, deadline)

    def _stream(self, request: Any, call: CallOptions) -> AsyncIterator[Any]:
        # The innermost step of an intercepted streaming call.
        many = call.method.kind.client_streams
        call, deadline = self._prepare(call)
        return self._stream_calls.call(
            call, None if many else request, request if many else None, deadline
        )

    def stub(self, service: type[S]) -> S:
        """A client for ``service`` whose methods mirror the service's.

        Unary and client-streaming methods are coroutines; server-streaming and bidi
        methods return async iterators. Every method also takes keyword arguments
        ``timeout``, ``headers``, ``metadata`` (a ``ResponseMetadata`` to fill) and
        ``key`` (the ring-hash key).
        """
        return make_stub(self, service)


def _tls(
    scheme: str, ssl_context: ssl.SSLContext | None, client_cert: tuple[str, str] | None
) -> ssl.SSLContext | None:
    """The TLS context of a channel: https targets get a default one; ALPN asks for h2."""
    if scheme == "https" and ssl_context is None:
        ssl_context = ssl.create_default_context()
    if client_cert is not None:
        # Mutual TLS: (certificate chain file, private key file) to present.
        if ssl_context is None:
            raise ValueError("client_cert= needs an https:// target or an ssl_context")
        ssl_context.load_cert_chain(*client_cert)
    if ssl_context is not None:
        ssl_context.set_alpn_protocols(["h2"])
    return ssl_context


def _authority(target: str) -> str:
    """The ``:authority`` for calls to ``target``: host:port, or the service name."""
    scheme, _, rest = target.partition("://")
    if scheme in ("http", "https"):
        return urlsplit(target).netloc.rpartition("@")[2]
    if scheme == "etcd":
        return urlsplit(target).path.strip("/") or rest
    return rest.strip("/").split(",")[0]
