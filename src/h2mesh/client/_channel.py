"""``Channel``: calls to a target, balanced per call over its discovered endpoints.

target -> resolver (discovery) -> balancer (picks an endpoint per call) -> the endpoint's
connection pool -> a stream. A single fixed endpoint with no per-endpoint policy takes a
shorter path that skips the bookkeeping.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .._deadline import effective_timeout
from .._errors import Code, RpcError, UnprocessedError
from ..balancing import Balancer, Endpoint, OutlierDetection
from ..codec import JSON, Codec, codec_for
from ..discovery import Resolver, StaticResolver, resolve
from ..observability._tracing import TracedClientProtocol, client_tracer
from ..protocol import (
    ClientProtocol,
    ConnectClient,
    GrpcClient,
    GrpcWebClient,
    Metadata,
    ResponseMetadata,
)
from ..resilience import (
    HedgingPolicy,
    HedgingState,
    HedgingVerdict,
    RetryPolicy,
    RetryState,
    RetryThrottle,
)
from ..service import MethodDescriptor, MethodKind, Service
from ..transport import DEFAULT_MAX_MESSAGE_SIZE, TransportConfig
from ._interceptors import (
    ClientCall,
    ClientInterceptor,
    StreamCall,
    UnaryCall,
    chain_stream,
    chain_unary,
)
from ._metrics import HEDGE, RETRY, TRANSPARENT, ClientMetrics, client_metrics
from ._pool import EndpointPool

__all__ = ["Channel"]

S = TypeVar("S", bound=Service)

# Client connections ping after 30 s of silence and close after 5 idle minutes (the pool
# opens a new one on demand), so connections opened for a burst do not linger.
_CLIENT_CONFIG = TransportConfig(idle_timeout=300.0, keepalive_interval=30.0)

# Outcomes that count against an endpoint (outlier detection); caller errors do not.
_ENDPOINT_FAILURES = frozenset(
    {Code.UNAVAILABLE, Code.INTERNAL, Code.UNKNOWN, Code.DATA_LOSS, Code.DEADLINE_EXCEEDED}
)
# How often a call that never reached a server is sent again before giving up.
_TRANSPARENT_RETRIES = 3
# Backoff of an endpoint that refuses connections before calls try it again.
_DOWN_BACKOFF = 1.0
_DOWN_BACKOFF_MAX = 30.0

# The standard health check, called as Connect JSON with untyped messages.
_HEALTH_CHECK = MethodDescriptor(
    "grpc.health.v1.Health", "Check", "check", MethodKind.UNARY, dict[str, Any], dict[str, Any]
)
_HEALTH_CLIENT = ConnectClient(JSON)


def _codec(name: str) -> Codec:
    codec = codec_for(name)
    if codec is None:
        raise ValueError(f"unknown codec {name!r}; use 'json', 'msgpack' or 'proto'")
    return codec


def _client_protocol(
    protocol: str, codec: str | None, compression: str | None, use_get: bool
) -> ClientProtocol:
    if protocol == "connect":
        return ConnectClient(_codec(codec or "msgpack"), use_get=use_get, compression=compression)
    if protocol == "grpc":
        return GrpcClient(_codec(codec or "proto"), compression)
    if protocol in ("grpc-web", "grpc-web-text"):
        return GrpcWebClient(
            _codec(codec or "proto"), compression, text=protocol == "grpc-web-text"
        )
    raise ValueError(
        f"unsupported protocol {protocol!r}; use 'connect', 'grpc', 'grpc-web' or 'grpc-web-text'"
    )


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
        self.target = target
        scheme, sep, _ = target.partition("://")
        if not sep:
            raise ValueError(f"target must be a URL such as http://host:port, got {target!r}")
        if scheme == "https" and ssl_context is None:
            ssl_context = ssl.create_default_context()
        if client_cert is not None:
            # Mutual TLS: (certificate chain file, private key file) to present.
            if ssl_context is None:
                raise ValueError("client_cert= needs an https:// target or an ssl_context")
            ssl_context.load_cert_chain(*client_cert)
        if ssl_context is not None:
            ssl_context.set_alpn_protocols(["h2"])
        self._ssl = ssl_context
        self._resolver = resolver if resolver is not None else resolve(target)
        self.protocol: ClientProtocol = _client_protocol(protocol, codec, compression, use_get)
        # A client span per attempt, when an OpenTelemetry SDK is configured (or given).
        tracer = client_tracer(tracer_provider)
        if tracer is not None:
            self.protocol = TracedClientProtocol(self.protocol, tracer)
        self.interceptors = tuple(interceptors)
        self._intercept_unary: UnaryCall | None = None
        self._intercept_stream: StreamCall | None = None
        #: Where this channel's call metrics go (``metrics=True``: ``client_metrics()``).
        self.metrics = client_metrics() if metrics is True else metrics or None
        chain = self.interceptors
        if self.metrics is not None:  # innermost: it times the call as sent
            chain = (*chain, self.metrics.bind(self))
        if chain:
            self._intercept_unary = chain_unary(chain, self._unary_call)
            self._intercept_stream = chain_stream(chain, self._stream_call)
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
        self.balancer = Balancer(
            policy, outlier_detection=outlier_detection, max_concurrency=max_concurrency
        )
        self._outlier_detection = outlier_detection
        self._base_headers: list[tuple[bytes, bytes]] = [
            (b":method", b"POST"),
            (b":scheme", b"https" if ssl_context is not None else b"http"),
            (b":authority", _authority(target).encode()),
        ]
        self._pools: dict[str, EndpointPool] = {}
        self._applied: tuple[Endpoint, ...] = ()
        self._unhealthy: set[str] = set()
        self._down: dict[str, asyncio.TimerHandle] = {}
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
            self._apply(fixed)
            self._direct = self._pools[fixed[0].address]
        self._watcher: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._health: asyncio.Task[None] | None = None
        self._closed = False
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
        if old is None:
            return
        # A new asyncio.run() after the one that opened the connections: they, their
        # timers and the background tasks died with the old loop; start afresh.
        for pool in self._pools.values():
            pool.forget_connections()
        self._down.clear()
        self._unhealthy.clear()
        self._watcher = self._ticker = self._health = None
        self._update_balancer()

    # -- endpoints ------------------------------------------------------------------
    def _apply(self, endpoints: Sequence[Endpoint]) -> None:
        """Take a new endpoint set: balancer first, then pools (new ones, drained ones)."""
        endpoints = tuple(endpoints)
        if endpoints == self._applied:
            return  # the watcher's first set repeats the one resolved at start
        self._applied = endpoints
        self._update_balancer()
        wanted = {ep.address: ep for ep in endpoints}
        for address, ep in wanted.items():
            if address not in self._pools:
                self._pools[address] = EndpointPool(
                    ep.host,
                    ep.port,
                    ssl_context=self._ssl,
                    config=self.config,
                    connect_timeout=self.connect_timeout,
                    max_connections=self.max_connections_per_endpoint,
                )
        for address in [a for a in self._pools if a not in wanted]:
            pool = self._pools.pop(address)
            # In-flight calls finish on the old connections; no new call picks them.
            asyncio.get_running_loop().create_task(pool.close(timeout=30.0))

    def _update_balancer(self) -> None:
        """The balancer sees the resolved endpoints that passed their last health check
        and are not backing off after failed connection attempts."""
        out = self._unhealthy | self._down.keys() if self._down else self._unhealthy
        self.balancer.update(
            [ep for ep in self._applied if ep.address not in out] if out else self._applied
        )

    def _mark_down(self, address: str, failures: int) -> None:
        """Take an endpoint that refuses connections out of rotation for a backoff
        (1 s doubling to 30 s with failures in a row), as gRPC does with subchannels in
        TRANSIENT_FAILURE; after it, calls may try it again."""
        if address in self._down or address not in self._pools:
            return
        backoff = min(_DOWN_BACKOFF_MAX, _DOWN_BACKOFF * 2 ** (failures - 1))
        loop = asyncio.get_running_loop()
        self._down[address] = loop.call_later(backoff, self._readmit, address)
        self._update_balancer()

    def _readmit(self, address: str) -> None:
        timer = self._down.pop(address, None)
        if timer is not None:
            timer.cancel()
            if not self._closed:
                self._update_balancer()

    def _only_hope(self) -> Endpoint | None:
        """With every endpoint backing off after failed connections, the one due back
        first: the call tries it now instead of failing, so that a server that came back
        is found by the next call, not when a backoff timer runs out."""
        if self.balancer.endpoints:
            return None  # some endpoint is in rotation (busy or ejected): not all are down
        down = [
            ep
            for ep in self._applied
            if ep.address in self._down and ep.address not in self._unhealthy
        ]
        if not down:
            return None
        return min(down, key=lambda ep: self._down[ep.address].when())

    async def _check_health(self) -> None:
        """Active health checks: ``grpc.health.v1.Health/Check`` on every endpoint, every
        ``health_check_interval`` seconds; endpoints not SERVING take no calls until
        they are again. The check speaks Connect JSON, so the server needs no protobuf."""
        assert self.health_check_interval is not None
        interval = self.health_check_interval
        while True:
            results = await asyncio.gather(
                *(self._probe(address, pool) for address, pool in list(self._pools.items()))
            )
            unhealthy = {address for address, ok in results if not ok}
            if unhealthy != self._unhealthy:
                self._unhealthy = unhealthy
                self._update_balancer()
            await asyncio.sleep(interval)

    async def _probe(self, address: str, pool: EndpointPool) -> tuple[str, bool]:
        assert self.health_check_interval is not None
        try:
            async with asyncio.timeout(self.health_check_interval):
                reply = await _HEALTH_CLIENT.unary(
                    pool.open_stream,
                    self._base_headers,
                    _HEALTH_CHECK,
                    {"service": self.health_check_service},
                    self.health_check_interval,
                    None,
                    None,
                    64 * 1024,
                )
        except (RpcError, TimeoutError):
            return address, False
        return address, isinstance(reply, dict) and reply.get("status") == "SERVING"

    async def _ensure_started(self) -> None:
        if self._closed:
            raise RpcError(Code.UNAVAILABLE, "channel is closed")
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())
            if self._outlier_detection is not None:
                self._ticker = asyncio.get_running_loop().create_task(self._tick())
            if self.health_check_interval is not None:
                self._health = asyncio.get_running_loop().create_task(self._check_health())
        if self._resolver.current is None or not self._pools:
            try:
                endpoints = await self._resolver.first(self.connect_timeout)
            except (TimeoutError, RuntimeError) as exc:
                raise RpcError(Code.UNAVAILABLE, f"cannot resolve {self.target}: {exc}") from None
            if not self._pools:
                self._apply(endpoints)

    async def _watch(self) -> None:
        async for endpoints in self._resolver.updates():
            self._apply(endpoints)

    async def _tick(self) -> None:
        assert self._outlier_detection is not None
        loop = asyncio.get_running_loop()
        interval = self._outlier_detection.interval
        while True:
            await asyncio.sleep(interval)
            self.balancer.tick(loop.time())

    def _pick(self, key: bytes | None) -> tuple[Endpoint, EndpointPool]:
        endpoint = self.balancer.pick(key)
        if endpoint is None and self._down:
            endpoint = self._only_hope()
        if endpoint is None:
            self._resolver.refresh()
            if self._applied and not self.balancer.endpoints:
                reason = (
                    f"all {len(self._applied)} endpoints are unreachable or failing health checks"
                )
            else:
                reason = self.balancer.unavailable_reason()
            raise RpcError(Code.UNAVAILABLE, f"{self.target}: {reason}")
        pool = self._pools.get(endpoint.address)
        if pool is None:  # the set changed under us; the balancer catches up next pick
            raise UnprocessedError(f"{endpoint.address} left {self.target}")
        return endpoint, pool

    async def close(self) -> None:
        """Stop discovery and close the connections after in-flight calls (5 s at most)."""
        if self._loop is not None and asyncio.get_running_loop() is not self._loop:
            self._bind_loop()
        self._closed = True
        for timer in self._down.values():
            timer.cancel()
        self._down.clear()
        for task in (self._watcher, self._ticker, self._health):
            if task is not None:
                task.cancel()
        await self._resolver.aclose()
        pools, self._pools = list(self._pools.values()), {}
        await asyncio.gather(*(pool.close() for pool in pools))

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- calls ----------------------------------------------------------------------
    def _metadata(self, headers: Metadata | None) -> Metadata | None:
        if self.default_headers is None:
            return headers
        if headers is None:
            return self.default_headers
        return {**self.default_headers, **headers}

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
        return self._unary(method, request, timeout, headers, metadata, key)

    def _unary_call(self, request: Any, call: ClientCall) -> Awaitable[Any]:
        # The innermost step of an intercepted unary call.
        return self._unary(
            call.method, request, call.timeout, call.headers or None, call.metadata, call.key
        )

    async def _unary(
        self,
        method: MethodDescriptor,
        request: Any,
        timeout: float | None,
        headers: Metadata | None,
        metadata: ResponseMetadata | None,
        key: bytes | str | None,
    ) -> Any:
        if asyncio.get_running_loop() is not self._loop:
            self._bind_loop()
        timeout = effective_timeout(timeout if timeout is not None else self.default_timeout)
        md = self._metadata(headers)
        direct = self._direct
        fast = direct is not None and self.retry is None and self.hedging is None
        if fast:
            assert direct is not None
            call = self.protocol.unary(
                direct.open_stream,
                self._base_headers,
                method,
                request,
                timeout,
                md,
                metadata,
                self.max_message_size,
            )
        elif self.hedging is not None and method.idempotent:
            call = self._hedged(method, request, timeout, md, metadata, _key(key))
        else:
            call = self._attempts(method, request, timeout, md, metadata, _key(key))
        if timeout is None:
            try:
                return await call
            except UnprocessedError:
                if not fast:
                    raise
                # The fast path's one attempt never reached the server (refused by a
                # GOAWAY, or no connection): send it again, as the other paths do.
                return await self._attempts(method, request, None, md, metadata, None, False)
        if timeout <= 0:
            call.close()
            raise RpcError(Code.DEADLINE_EXCEEDED, "deadline exceeded before the call started")
        try:
            async with asyncio.timeout(timeout) as scope:
                try:
                    return await call
                except UnprocessedError:
                    if not fast:
                        raise
                    when = scope.when()
                    left = None if when is None else when - asyncio.get_running_loop().time()
                    return await self._attempts(method, request, left, md, metadata, None, False)
        except TimeoutError:
            raise RpcError(Code.DEADLINE_EXCEEDED, f"deadline of {timeout:.3f}s exceeded") from None

    async def _attempt(
        self,
        method: MethodDescriptor,
        request: Any,
        deadline: float | None,
        md: Metadata | None,
        metadata: ResponseMetadata | None,
        key: bytes | None,
    ) -> Any:
        """One attempt on one picked endpoint, with the balancer told how it went."""
        await self._ensure_started()
        endpoint, pool = self._pick(key)
        balancer = self.balancer
        balancer.started(endpoint)
        loop = asyncio.get_running_loop()
        started = loop.time()
        ok = True
        try:
            reply = await self.protocol.unary(
                pool.open_stream,
                self._base_headers,
                method,
                request,
                None if deadline is None else deadline - started,
                md,
                metadata,
                self.max_message_size,
            )
        except RpcError as exc:
            ok = exc.code not in _ENDPOINT_FAILURES
            if isinstance(exc, UnprocessedError):
                self._resolver.refresh()
                if pool.connect_failures:
                    self._mark_down(endpoint.address, pool.connect_failures)
            raise
        finally:
            now = loop.time()
            balancer.finished(endpoint, ok, now - started, now)
        if self._down and endpoint.address in self._down:
            self._readmit(endpoint.address)  # it answered: back in rotation now
        return reply

    async def _attempts(
        self,
        method: MethodDescriptor,
        request: Any,
        timeout: float | None,
        md: Metadata | None,
        metadata: ResponseMetadata | None,
        key: bytes | None,
        retry: bool = True,
    ) -> Any:
        """A unary call with transparent retries and, if configured, A6 retries."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        state = (
            RetryState(self.retry, throttle=self.retry_throttle)
            if retry and self.retry is not None and (method.idempotent or self.retry_all)
            else None
        )
        transparent = _TRANSPARENT_RETRIES
        while True:
            try:
                result = await self._attempt(method, request, deadline, md, metadata, key)
            except RpcError as exc:
                # Sent again at once if another endpoint may take it; with every
                # endpoint down, the retry policy's backoff paces the attempts.
                if (
                    isinstance(exc, UnprocessedError)
                    and transparent > 0
                    and (self.balancer.endpoints or not self._down)
                ):
                    transparent -= 1
                    if self.metrics is not None:
                        self.metrics.count(TRANSPARENT, method)
                    continue
                if state is None:
                    raise
                decision = state.on_failure(
                    exc.code,
                    pushback=exc.metadata.get("grpc-retry-pushback-ms"),
                    time_remaining=None if deadline is None else deadline - loop.time(),
                )
                if not decision.retry:
                    raise
                if self.metrics is not None:
                    self.metrics.count(RETRY, method)
                if decision.delay > 0:
                    await asyncio.sleep(decision.delay)
                transparent = _TRANSPARENT_RETRIES
                continue
            if state is not None:
                state.on_success()
            return result

    async def _hedged(
        self,
        method: MethodDescriptor,
        request: Any,
        timeout: float | None,
        md: Metadata | None,
        metadata: ResponseMetadata | None,
        key: bytes | None,
    ) -> Any:
        """An idempotent unary call sent to several endpoints; the first success wins."""
        assert self.hedging is not None
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        state = HedgingState(self.hedging, throttle=self.retry_throttle)
        attempts: dict[asyncio.Task[Any], int] = {}
        last_error: RpcError | None = None
        try:
            while True:
                now = loop.time()
                if state.due(now):
                    remaining = None if deadline is None else deadline - now
                    task = loop.create_task(
                        self._attempts(method, request, remaining, md, metadata, key, retry=False)
                    )
                    attempts[task] = state.sent(now)
                    if attempts[task] > 1 and self.metrics is not None:
                        self.metrics.count(HEDGE, method)
                if not attempts:
                    assert last_error is not None
                    raise last_error
                send_at = state.next_send_at()
                wait = None if send_at is None else max(0.0, send_at - loop.time())
                done, _ = await asyncio.wait(
                    attempts, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    attempt = attempts.pop(task)
                    exc = task.exception()
                    if exc is None:
                        state.on_result(attempt, Code.OK, now=loop.time())
                        return task.result()
                    if not isinstance(exc, RpcError):
                        raise exc
                    last_error = exc
                    outcome = state.on_result(
                        attempt,
                        exc.code,
                        now=loop.time(),
                        pushback=exc.metadata.get("grpc-retry-pushback-ms"),
                    )
                    if outcome.verdict is HedgingVerdict.FAIL:
                        raise exc
        finally:
            for task in attempts:
                task.cancel()

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
        return self._stream(method, request, requests, timeout, headers, metadata, key)

    def _stream_call(self, request: Any, call: ClientCall) -> AsyncIterator[Any]:
        # The innermost step of an intercepted streaming call.
        many = call.method.kind.client_streams
        return self._stream(
            call.method,
            None if many else request,
            request if many else None,
            call.timeout,
            call.headers or None,
            call.metadata,
            call.key,
        )

    async def _stream(
        self,
        method: MethodDescriptor,
        request: Any,
        requests: AsyncIterable[Any] | None,
        timeout: float | None,
        headers: Metadata | None,
        metadata: ResponseMetadata | None,
        key: bytes | str | None,
    ) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._bind_loop()
        timeout = effective_timeout(timeout if timeout is not None else self.default_timeout)
        if timeout is not None and timeout <= 0:
            raise RpcError(Code.DEADLINE_EXCEEDED, "deadline exceeded before the call started")
        deadline = None if timeout is None else loop.time() + timeout
        md = self._metadata(headers)
        transparent = _TRANSPARENT_RETRIES if requests is None else 0
        while True:
            yielded = False
            try:
                async for message in self._stream_attempt(
                    method, request, requests, deadline, md, metadata, _key(key)
                ):
                    yielded = True
                    yield message
                return
            except UnprocessedError:
                if yielded or transparent <= 0:
                    raise
                transparent -= 1
                if self.metrics is not None:
                    self.metrics.count(TRANSPARENT, method)

    async def _stream_attempt(
        self,
        method: MethodDescriptor,
        request: Any,
        requests: AsyncIterable[Any] | None,
        deadline: float | None,
        md: Metadata | None,
        metadata: ResponseMetadata | None,
        key: bytes | None,
    ) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        direct = self._direct
        if direct is not None:
            endpoint = None
            pool = direct
        else:
            await self._ensure_started()
            endpoint, pool = self._pick(key)
            self.balancer.started(endpoint)
        started = loop.time()
        ok = True
        responses = self.protocol.stream(
            pool.open_stream,
            self._base_headers,
            method,
            requests,
            request,
            None if deadline is None else deadline - started,
            md,
            metadata,
            self.max_message_size,
        )
        try:
            if deadline is None:
                async for message in responses:
                    yield message
                return
            try:
                while True:
                    async with asyncio.timeout_at(deadline):
                        message = await anext(responses)
                    yield message
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise RpcError(Code.DEADLINE_EXCEEDED, "deadline exceeded") from None
        except RpcError as exc:
            ok = exc.code not in _ENDPOINT_FAILURES
            raise
        finally:
            await responses.aclose()  # type: ignore[attr-defined]
            if endpoint is not None:
                now = loop.time()
                self.balancer.finished(endpoint, ok, now - started, now)

    def stub(self, service: type[S]) -> S:
        """A client for ``service`` whose methods mirror the service's.

        Unary and client-streaming methods are coroutines; server-streaming and bidi
        methods return async iterators. Every method also takes keyword arguments
        ``timeout``, ``headers``, ``metadata`` (a ``ResponseMetadata`` to fill) and
        ``key`` (the ring-hash key).
        """
        from ._stub import make_stub

        return make_stub(self, service)


def _key(key: bytes | str | None) -> bytes | None:
    return key.encode() if isinstance(key, str) else key


def _authority(target: str) -> str:
    """The ``:authority`` for calls to ``target``: host:port, or the service name."""
    scheme, _, rest = target.partition("://")
    if scheme in ("http", "https"):
        return urlsplit(target).netloc.rpartition("@")[2]
    if scheme == "etcd":
        return urlsplit(target).path.strip("/") or rest
    return rest.strip("/").split(",")[0]
