"""zstd through the optional ``zstandard`` package (``pip install h2mesh[zstd]``)."""

from __future__ import annotations

import zstandard

from .._errors import Code, RpcError

_CHUNK = 64 * 1024


class _Zstd:
    name = "zstd"

    def __init__(self) -> None:
        self._compressor = zstandard.ZstdCompressor(level=3)

    def compress(self, data: bytes) -> bytes:
        return self._compressor.compress(data)

    def decompress(self, data: bytes, max_size: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        try:
            # A stream reader yields at most the asked-for bytes per read, so the output
            # is bounded by the limit whatever the input's ratio.
            with zstandard.ZstdDecompressor().stream_reader(data) as reader:
                while True:
                    out = reader.read(min(_CHUNK, max_size - size + 1))
                    if not out:
                        break
                    size += len(out)
                    if size > max_size:
                        raise RpcError(
                            Code.RESOURCE_EXHAUSTED,
                            f"decompressed message larger than {max_size} bytes",
                        )
                    parts.append(out)
        except zstandard.ZstdError as exc:
            raise RpcError(Code.INTERNAL, f"invalid zstd data: {exc}") from None
        return b"".join(parts)

    def __repr__(self) -> str:
        return "<compressor zstd>"


ZSTD = _Zstd()
