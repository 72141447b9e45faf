"""The client side: channels, typed stubs and the synchronous facade."""

from ._channel import Channel
from ._sync import SyncChannel

__all__ = ["Channel", "SyncChannel"]
