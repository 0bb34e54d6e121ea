"""Content-encodings a provider may answer with, decoded incrementally for translation.

When the gateway rewrites a response it asks the provider for `identity`, but a provider (or a
proxy in front of it) may compress anyway; these decoders make that harmless.
"""

from __future__ import annotations

import zlib
from typing import Protocol

import brotli
import zstandard


class Decoder(Protocol):
    def feed(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


class _Identity:
    def feed(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class _Zlib:
    def __init__(self, wbits: int) -> None:
        self._d = zlib.decompressobj(wbits)

    def feed(self, data: bytes) -> bytes:
        return self._d.decompress(data)

    def flush(self) -> bytes:
        return self._d.flush()


class _Brotli:
    def __init__(self) -> None:
        self._d = brotli.Decompressor()

    def feed(self, data: bytes) -> bytes:
        return self._d.process(data)

    def flush(self) -> bytes:
        return b""


class _Zstd:
    def __init__(self) -> None:
        self._d = zstandard.ZstdDecompressor().decompressobj()

    def feed(self, data: bytes) -> bytes:
        return self._d.decompress(data)

    def flush(self) -> bytes:
        return b""


SUPPORTED = frozenset({"", "identity", "gzip", "x-gzip", "deflate", "br", "zstd"})


def decoder(content_encoding: str) -> Decoder:
    """A decoder for a `content-encoding` value; raises ValueError for one we cannot read."""
    enc = content_encoding.strip().lower()
    if enc in ("", "identity"):
        return _Identity()
    if enc in ("gzip", "x-gzip"):
        return _Zlib(16 + zlib.MAX_WBITS)
    if enc == "deflate":
        return _Zlib(zlib.MAX_WBITS)
    if enc == "br":
        return _Brotli()
    if enc == "zstd":
        return _Zstd()
    raise ValueError(f"unsupported content-encoding {content_encoding!r}")
