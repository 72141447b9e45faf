"""HTTP/2 (ngh2) and HTTP/1.1 (httptools) connections over asyncio. Knows nothing of RPC.

Both connection classes are ``asyncio.Protocol`` objects that hand each request (or, on a
client, each response) to the layer above as a :class:`Stream`.
"""

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
from ._h1 import H1Connection, H1Stream
from ._h2 import H2Connection, H2Stream
from ._memory import MemoryListener, create_connection, listen_memory
from ._stream import Headers, Stream, Tunnel

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "ConnectionLost",
    "ConnectionRefused",
    "ErrorCode",
    "H1Connection",
    "H1Stream",
    "H2Connection",
    "H2Stream",
    "Headers",
    "MemoryListener",
    "MessageTooLarge",
    "SendBudget",
    "Stream",
    "StreamReset",
    "TransportConfig",
    "TransportError",
    "Tunnel",
    "create_connection",
    "listen_memory",
]
