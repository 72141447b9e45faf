"""Transport limits and timers, with defaults suited to RPC traffic."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportConfig:
    """Per-connection limits and timers.

    Windows bound what a peer may send before the application reads it: a stream's
    receive window reopens only as its data is consumed.
    """

    max_concurrent_streams: int = 256
    max_header_list_size: int = 65_536
    stream_window: int = 1024 * 1024
    connection_window: int = 16 * 1024 * 1024
    max_frame_size: int = 16_384
    # Queued-but-unsent bytes per stream above which a sender waits.
    send_high_water: int = 64 * 1024
    # Response bytes queued for one connection's peer (its window shut) above which every
    # sender on it waits, first come first served (Envoy's per-connection buffer: 1 MiB).
    connection_send_buffer: int = 1024 * 1024
    # The same for all the connections of one server together.
    server_send_buffer: int = 64 * 1024 * 1024
    # (server) Seconds a stream's queued response may wait with the peer taking none of
    # it (its window shut) before the stream is reset (None: never; nginx: 60 s).
    send_timeout: float | None = 60.0
    # Seconds without any stream before an idle connection is closed (None: never).
    idle_timeout: float | None = 300.0
    # Seconds of silence before a PING is sent (None: no keepalive pings).
    keepalive_interval: float | None = 60.0
    # Seconds to wait for the PING acknowledgement before closing the connection.
    keepalive_timeout: float = 20.0
    # Seconds a new connection may take to show which protocol it speaks (preface/request).
    handshake_timeout: float = 10.0
    # HTTP/1.1: seconds a request head may take once it has begun (then 408 and close).
    request_head_timeout: float | None = 10.0
    # HTTP/1.1: bytes of request body buffered before reading pauses.
    h1_buffer_limit: int = 256 * 1024
