"""Content-encodings a provider may answer with, decoded incrementally for translation, and request
bodies a client compressed, decoded whole before parsing.

When the gateway rewrites a response it asks the provider for `identity`, but a provider (or a
proxy in front of it) may compress anyway; these decoders make that harmless. Clients that compress
large request bodies (`content-encoding: gzip|br|zstd`) get them read the same way, with a cap.
"""

from __future__ import annotations

import zlib
from typing import Protocol

import brotli
import zstandard

# A provider's response, decoded, is never larger than this: a compression bomb (a few KB that inflate
# to gigabytes) is cut off here instead of exhausting a worker's memory. LLM responses are megabytes.
DECODED_LIMIT = 64 * 1024 * 1024


class DecodedTooLarge(ValueError):
    """The decoded response would exceed DECODED_LIMIT."""


class Decoder(Protocol):
    def feed(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


class _Identity:
    def feed(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class _Budget:
    """Counts decoded bytes; every codec below asks it how much more it may produce."""

    complete = True  # the data ended where its encoding says it ends (a truncated body does not)

    def __init__(self, limit: int) -> None:
        self.left = limit

    def take(self, out: bytes) -> bytes:
        self.left -= len(out)
        if self.left < 0:
            raise DecodedTooLarge(f"the decoded response exceeds {DECODED_LIMIT} bytes")
        return out


class _Zlib(_Budget):
    def __init__(self, wbits: int, limit: int) -> None:
        super().__init__(limit)
        self._d = zlib.decompressobj(wbits)

    def feed(self, data: bytes) -> bytes:
        # max_length bounds the output of this call; one byte over the budget means too large
        return self.take(self._d.decompress(data, self.left + 1))

    def flush(self) -> bytes:
        return self.take(self._d.flush())

    @property
    def complete(self) -> bool:  # type: ignore[override]
        return self._d.eof


class _Brotli(_Budget):
    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self._d = brotli.Decompressor()

    def feed(self, data: bytes) -> bytes:
        return self.take(self._d.process(data, output_buffer_limit=self.left + 1))

    def flush(self) -> bytes:
        return b""

    @property
    def complete(self) -> bool:  # type: ignore[override]
        return self._d.is_finished()


class _Zstd(_Budget):
    """zstandard's stream writer hands its output over in small pieces, so the budget stops a bomb
    after at most one piece beyond it."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self._out: list[bytes] = []
        # zstandard only calls the sink's write(); its stub asks for a whole IO[bytes]
        self._w = zstandard.ZstdDecompressor().stream_writer(
            self, write_size=65536, closefd=False)  # pyright: ignore[reportArgumentType]

    def write(self, piece: bytes) -> int:  # the stream writer's sink
        self._out.append(self.take(bytes(piece)))
        return len(piece)

    def feed(self, data: bytes) -> bytes:
        self._w.write(data)
        out, self._out = b"".join(self._out), []
        return out

    def flush(self) -> bytes:
        return b""


SUPPORTED = frozenset({"", "identity", "gzip", "x-gzip", "deflate", "br", "zstd"})


class CorruptBody(ValueError):
    """The body is not valid data of its content-encoding."""


def decode_body(data: bytes, content_encoding: str, limit: int) -> bytes:
    """A whole body in a SUPPORTED encoding, decoded to at most `limit` bytes (else DecodedTooLarge);
    CorruptBody when it is not what its encoding says."""
    d = decoder(content_encoding, limit)
    try:
        out = d.feed(data) + d.flush()
    except DecodedTooLarge:
        raise
    except (zlib.error, brotli.error, zstandard.ZstdError) as exc:
        raise CorruptBody(f"the request body is not valid {content_encoding.strip()} data: {exc}") from None
    if not getattr(d, "complete", True):
        raise CorruptBody(f"the request body is not valid {content_encoding.strip()} data: it is cut short")
    return out


def decoder(content_encoding: str, limit: int = DECODED_LIMIT) -> Decoder:
    """A decoder for a `content-encoding` value, producing at most `limit` bytes in all (then
    DecodedTooLarge); raises ValueError for an encoding we cannot read."""
    enc = content_encoding.strip().lower()
    if enc in ("", "identity"):
        return _Identity()
    if enc in ("gzip", "x-gzip"):
        return _Zlib(16 + zlib.MAX_WBITS, limit)
    if enc == "deflate":
        return _Zlib(zlib.MAX_WBITS, limit)
    if enc == "br":
        return _Brotli(limit)
    if enc == "zstd":
        return _Zstd(limit)
    raise ValueError(f"unsupported content-encoding {content_encoding!r}")
