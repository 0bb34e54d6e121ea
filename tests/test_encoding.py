"""Provider responses in any content-encoding decode the same in any chunking, and a compression
bomb is cut off at the limit instead of inflating in memory."""

from __future__ import annotations

import gzip
import zlib

import brotli
import pytest
import zstandard

from extproc.encoding import DecodedTooLarge, decoder

RAW = b'data: {"type":"content_block_delta"}\n\n' * 20_000
COMPRESS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
}


def _decode(enc: str, data: bytes, chunk: int, limit: int | None = None) -> bytes:
    d = decoder(enc) if limit is None else decoder(enc, limit=limit)
    out = b"".join(d.feed(data[i:i + chunk]) for i in range(0, len(data), chunk))
    return out + d.flush()


@pytest.mark.parametrize("enc", COMPRESS)
@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
def test_every_encoding_decodes_in_any_chunking(enc: str, chunk: int) -> None:
    data = COMPRESS[enc](RAW)
    if chunk == 1:
        data = COMPRESS[enc](RAW[:2000])
        assert _decode(enc, data, chunk) == RAW[:2000]
    else:
        assert _decode(enc, data, chunk) == RAW


@pytest.mark.parametrize("enc", COMPRESS)
def test_a_compression_bomb_is_cut_off_at_the_limit(enc: str) -> None:
    bomb = COMPRESS[enc](b"\0" * (64 * 1024 * 1024))  # a few KB on the wire
    assert len(bomb) < 200_000
    with pytest.raises(DecodedTooLarge):
        _decode(enc, bomb, 65536, limit=1024 * 1024)
