"""Telling generated protobuf classes apart, for every layer that treats them specially.

``protobuf`` is optional (``pip install h2mesh[proto]``): nothing here imports it unless a
class derives from one of its types.
"""

from __future__ import annotations

from typing import Any

__all__ = ["is_message_type"]


def is_message_type(tp: Any) -> bool:
    """True if ``tp`` is a generated protobuf message class."""
    if not isinstance(tp, type):
        return False
    # Cheap test first so that non-protobuf types never import protobuf.
    if not any(k.__module__.startswith("google.protobuf") for k in tp.__mro__[1:]):
        return False
    from google.protobuf.message import Message

    return issubclass(tp, Message)
