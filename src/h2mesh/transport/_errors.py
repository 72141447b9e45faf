"""Transport errors: what can go wrong with a connection or a stream.

Error tree::

    TransportError
    ├── ConnectionLost        the connection closed (or failed) under an open stream
    ├── ConnectionRefused     no connection could be made, or it no longer takes streams
    ├── StreamReset           the peer (or we) reset the stream; ``error_code`` is the
    │                         HTTP/2 code, ``refused`` tells if it was never processed
    └── MessageTooLarge       a body exceeded the configured limit
"""

from __future__ import annotations

from .._http2 import ErrorCode


class TransportError(Exception):
    """Base class of connection and stream failures."""


class ConnectionLost(TransportError):
    """The connection closed while the stream was open."""


class ConnectionRefused(TransportError):
    """A connection could not be made or does not accept new streams.

    Calls that fail this way never reached the server, so they are safe to retry.
    """


class StreamReset(TransportError):
    """The stream was reset (RST_STREAM) or refused before being processed."""

    def __init__(self, error_code: int, message: str = "") -> None:
        super().__init__(message or f"stream reset with HTTP/2 error code {error_code}")
        self.error_code = error_code

    @property
    def refused(self) -> bool:
        """True if the peer never processed the stream (REFUSED_STREAM)."""
        return self.error_code == ErrorCode.REFUSED_STREAM


class MessageTooLarge(TransportError):
    """A request or response body exceeded the configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"message larger than the {limit}-byte limit")
        self.limit = limit
