"""Message compressors: tiny objects with ``name``, ``compress`` and ``decompress``.

``decompress`` takes the largest size the result may have and raises ``RpcError``
(``RESOURCE_EXHAUSTED``) as soon as the output would pass it, so a small compressed
message cannot inflate into a huge one (a decompression bomb) in memory.

``gzip``, ``deflate`` (zlib format, as gRPC uses the name) and ``identity`` are always
there; ``zstd`` when the optional ``zstandard`` package is installed.
"""

from __future__ import annotations

import zlib
from typing import Protocol

from .._errors import Code, RpcError

__all__ = [
    "DEFLATE",
    "GZIP",
    "IDENTITY",
    "Compressor",
    "compressor_for",
    "supported_names",
]

_CHUNK = 64 * 1024


class Compressor(Protocol):
    """What every compressor provides."""

    name: str

    def compress(self, data: bytes) -> bytes: ...

    def decompress(self, data: bytes, max_size: int) -> bytes: ...


def _too_large(max_size: int) -> RpcError:
    return RpcError(Code.RESOURCE_EXHAUSTED, f"decompressed message larger than {max_size} bytes")


class _Identity:
    name = "identity"

    def compress(self, data: bytes) -> bytes:
        return data

    def decompress(self, data: bytes, max_size: int) -> bytes:
        if len(data) > max_size:
            raise _too_large(max_size)
        return data

    def __repr__(self) -> str:
        return "<compressor identity>"


class _Zlib:
    """gzip and deflate: the same algorithm with a different wrapper."""

    def __init__(self, name: str, wbits: int) -> None:
        self.name = name
        self._wbits = wbits

    def compress(self, data: bytes) -> bytes:
        obj = zlib.compressobj(6, zlib.DEFLATED, self._wbits)
        return obj.compress(data) + obj.flush()

    def decompress(self, data: bytes, max_size: int) -> bytes:
        obj = zlib.decompressobj(self._wbits)
        parts: list[bytes] = []
        size = 0
        pending = data
        try:
            while True:
                # max_length bounds what one call may produce; the rest of the input
                # waits in unconsumed_tail, so memory stays at the limit plus one chunk.
                out = obj.decompress(pending, min(_CHUNK, max_size - size + 1))
                size += len(out)
                if size > max_size:
                    raise _too_large(max_size)
                parts.append(out)
                pending = obj.unconsumed_tail
                if obj.eof or (not pending and not out):
                    break
            if not obj.eof:
                tail = obj.flush(max_size - size + 1)
                size += len(tail)
                if size > max_size:
                    raise _too_large(max_size)
                parts.append(tail)
                if not obj.eof:
                    raise RpcError(Code.INTERNAL, f"truncated {self.name} data")
        except zlib.error as exc:
            raise RpcError(Code.INTERNAL, f"invalid {self.name} data: {exc}") from None
        return b"".join(parts)

    def __repr__(self) -> str:
        return f"<compressor {self.name}>"


IDENTITY: Compressor = _Identity()
GZIP: Compressor = _Zlib("gzip", 16 + zlib.MAX_WBITS)
DEFLATE: Compressor = _Zlib("deflate", zlib.MAX_WBITS)

_COMPRESSORS: dict[str, Compressor] = {"gzip": GZIP, "deflate": DEFLATE, "identity": IDENTITY}

try:
    from ._zstd import ZSTD
except ImportError:  # the optional ``zstandard`` package is not installed
    pass
else:
    _COMPRESSORS["zstd"] = ZSTD


def compressor_for(name: str) -> Compressor | None:
    """The compressor registered under ``name`` (``gzip``, ``zstd``...), or None."""
    return _COMPRESSORS.get(name)


def supported_names() -> list[str]:
    """Every compressor name this installation knows, most preferred first."""
    return list(_COMPRESSORS)
