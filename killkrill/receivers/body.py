"""Reading a request body within limits and undoing its Content-Encoding.

Limits are checked while reading (a body larger than ``max_body_bytes`` is refused with 413
without buffering it all; one that takes longer than its timeout to arrive gets 408) and
while decompressing (gzip output is capped at ``max_decompressed_bytes``, so a compression
bomb costs at most that much memory).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator

import cramjam

from killkrill.receivers.errors import RequestError

__all__ = ["decode_content", "gunzip", "read_limited", "unsnappy"]


async def read_limited(
    chunks: AsyncIterator[bytes],
    content_length: str | None,
    max_bytes: int,
    *,
    within: float | None = None,
) -> bytes:
    """Collect the body from ``chunks``; 413 as soon as it passes ``max_bytes``, 408 when
    it has not all arrived ``within`` seconds after the call (``http.body_timeout``)."""
    if content_length is not None and content_length.isdigit() and int(content_length) > max_bytes:
        raise _too_large(int(content_length), max_bytes)
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(within):
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise _too_large(size, max_bytes, at_least=True)
                parts.append(chunk)
    except TimeoutError:
        raise RequestError(
            408,
            "body_timeout",
            f"the body did not arrive within {within:g} s ({size} bytes came); the limit is "
            "http.body_timeout; nothing was written, send the request again",
            limit="http.body_timeout",
            headers={"Connection": "close"},
        ) from None
    return parts[0] if len(parts) == 1 else b"".join(parts)


def decode_content(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """Undo ``Content-Encoding`` (identity or gzip); 415 for anything else."""
    enc = (encoding or "identity").strip().lower()
    if enc in ("identity", ""):
        return body
    if enc in ("gzip", "x-gzip"):
        return gunzip(body, max_bytes)
    raise RequestError(
        415,
        "unsupported_encoding",
        f"Content-Encoding '{encoding}' is not supported; send gzip or an uncompressed body",
        field="Content-Encoding",
    )


def gunzip(body: bytes, max_bytes: int) -> bytes:
    """Decompress a (possibly multi-member) gzip body, at most ``max_bytes`` of output."""
    out: list[bytes] = []
    size = 0
    data = body
    while data:
        inflater = zlib.decompressobj(wbits=31)
        try:
            chunk = inflater.decompress(data, max_bytes - size + 1)
        except zlib.error as exc:
            raise RequestError(
                400,
                "invalid_gzip",
                f"the body is not valid gzip ({exc}); compress it with gzip or drop "
                "Content-Encoding",
                field="Content-Encoding",
            ) from None
        size += len(chunk)
        if size > max_bytes or inflater.unconsumed_tail:
            raise _too_large(size, max_bytes, at_least=True, decompressed=True)
        out.append(chunk)
        if not inflater.eof:
            raise RequestError(
                400,
                "truncated_gzip",
                "the gzip body is truncated (it ends before the end of the compressed "
                "stream); send the whole body",
                field="Content-Encoding",
            )
        data = inflater.unused_data
    return b"".join(out)


def unsnappy(body: bytes, max_bytes: int) -> bytes:
    """Decompress a snappy *block* (what Prometheus remote_write sends)."""
    length, shift, i = 0, 0, 0
    while i < len(body) and i < 5:  # the uncompressed length, a varint, leads the block
        byte = body[i]
        length |= (byte & 0x7F) << shift
        shift += 7
        i += 1
        if not byte & 0x80:
            break
    if length > max_bytes:
        raise _too_large(length, max_bytes, decompressed=True)
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise RequestError(
            400,
            "invalid_snappy",
            f"the body is not a valid snappy block ({exc}); remote_write bodies are "
            "snappy-compressed protobuf (block format, not framed)",
            field="Content-Encoding",
        ) from None


def _too_large(
    size: int, max_bytes: int, *, at_least: bool = False, decompressed: bool = False
) -> RequestError:
    setting = "http.max_decompressed_bytes" if decompressed else "http.max_body_bytes"
    what = "decompressed body" if decompressed else "body"
    more = "more than " if at_least else ""
    return RequestError(
        413,
        "body_too_large",
        f"the {what} is {more}{size if not at_least else max_bytes} bytes; the limit is "
        f"{max_bytes} ({setting}); send smaller batches",
        limit=setting,
    )
