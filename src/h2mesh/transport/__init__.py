"""HTTP/2 (ngh2) and HTTP/1.1 (httptools) connections over asyncio. Knows nothing of RPC."""

from .._http2 import ErrorCode
from ._budget import SendBudget
from ._config import DEFAULT_MAX_MESSAGE_SIZE, TransportConfig
from ._errors import (
    ConnectionLost,
    ConnectionRefused,
    MessageTooLarge,
    StreamReset,
    TransportError,
)
from ._h2 import H2Connection, H2Stream
from ._stream import Headers, Stream, Tunnel

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "ConnectionLost",
    "ConnectionRefused",
    "ErrorCode",
    "H2Connection",
    "H2Stream",
    "Headers",
    "MessageTooLarge",
    "SendBudget",
    "Stream",
    "StreamReset",
    "TransportConfig",
    "TransportError",
    "Tunnel",
]
