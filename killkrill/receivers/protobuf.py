"""A minimal protobuf wire-format reader (varints, fixed64, length-delimited fields).

Enough to decode the few messages the receivers accept without the protobuf runtime.
Every malformed input raises :class:`ProtobufError`; nothing reads past the buffer.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

__all__ = [
    "ProtobufError",
    "as_double",
    "read_fields",
    "read_varint",
    "write_field",
    "write_varint",
]

_DOUBLE = struct.Struct("<d")

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


class ProtobufError(ValueError):
    """The bytes are not a valid protobuf message."""


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Return ``(value, next position)`` of the varint at ``pos``."""
    result = 0
    shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise ProtobufError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ProtobufError("varint longer than 10 bytes")


def read_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield ``(field number, wire type, value)``: an int for varint/fixed, bytes for
    length-delimited fields. Fixed64 values are yielded as raw ints (see :func:`as_double`)."""
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("field number 0")
        if wire == VARINT:
            value, pos = read_varint(buf, pos)
            yield number, wire, value
        elif wire == LENGTH:
            size, pos = read_varint(buf, pos)
            if pos + size > end:
                raise ProtobufError("length-delimited field runs past the end")
            yield number, wire, buf[pos : pos + size]
            pos += size
        elif wire == FIXED64:
            if pos + 8 > end:
                raise ProtobufError("truncated fixed64")
            yield number, wire, int.from_bytes(buf[pos : pos + 8], "little")
            pos += 8
        elif wire == FIXED32:
            if pos + 4 > end:
                raise ProtobufError("truncated fixed32")
            yield number, wire, int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")


def as_double(raw: int) -> float:
    """A fixed64 field's bits as an IEEE 754 double."""
    return float(_DOUBLE.unpack(raw.to_bytes(8, "little"))[0])


def write_varint(value: int) -> bytes:
    """Encode a non-negative int (or an int64, two's complement) as a varint."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def write_field(number: int, wire: int, value: int | bytes | float) -> bytes:
    """Encode one field (the inverse of :func:`read_fields`; doubles for fixed64)."""
    key = write_varint(number << 3 | wire)
    if wire == LENGTH and isinstance(value, bytes):
        return key + write_varint(len(value)) + value
    if wire == FIXED64 and isinstance(value, float):
        return key + _DOUBLE.pack(value)
    if wire == VARINT and isinstance(value, int):
        return key + write_varint(value)
    raise ProtobufError(f"cannot write {type(value).__name__} as wire type {wire}")
