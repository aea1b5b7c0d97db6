"""Splitting a syslog TCP byte stream into frames (RFC 6587). Pure and incremental.

Both framings are read on the same connection, frame by frame: a frame starting with a
digit is octet-counted (``LEN SP MSG``), any other is non-transparent (ends at LF; a CR
before it is dropped). Frames larger than ``max_frame`` are skipped whole and counted in
:attr:`FrameSplitter.oversized`; the stream stays in sync after them.
"""

from __future__ import annotations

__all__ = ["FrameSplitter"]

_MAX_LEN_DIGITS = 10
_SPACE_LIKE = b" \t\r\n\x00"


class FrameSplitter:
    """Feed it bytes as they arrive; it returns the complete frames."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self.oversized = 0
        self._buf = bytearray()
        self._skip = 0  # bytes of an oversized octet-counted frame still to discard
        self._discard_line = False  # inside an oversized LF-framed frame

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the frames it completed, in order."""
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        pos = 0
        end = len(buf)
        max_frame = self.max_frame
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                pos += step
                self._skip -= step
                continue
            if self._discard_line:
                idx = buf.find(b"\n", pos)
                if idx < 0:
                    pos = end
                    break
                pos = idx + 1
                self._discard_line = False
                continue
            first = buf[pos]
            if first in _SPACE_LIKE:
                pos += 1
                continue
            if 0x30 <= first <= 0x39:
                sp = buf.find(b" ", pos, pos + _MAX_LEN_DIGITS + 1)
                if sp < 0 and end - pos <= _MAX_LEN_DIGITS:
                    break  # the length is not complete yet
                digits = buf[pos:sp] if sp > 0 else b""
                if digits.isdigit():
                    size = int(digits)
                    if size > max_frame:
                        self.oversized += 1
                        pos = sp + 1
                        self._skip = size
                        continue
                    if sp + 1 + size > end:
                        break  # wait for the rest of the frame
                    frames.append(bytes(buf[sp + 1 : sp + 1 + size]))
                    pos = sp + 1 + size
                    continue
            idx = buf.find(b"\n", pos)
            if idx < 0:
                if end - pos > max_frame:
                    self.oversized += 1
                    self._discard_line = True
                    pos = end
                break
            stop = idx - 1 if idx > pos and buf[idx - 1] == 0x0D else idx
            if stop - pos > max_frame:
                self.oversized += 1
            else:
                frames.append(bytes(buf[pos:stop]))
            pos = idx + 1
        del buf[:pos]
        return frames

    def flush(self) -> bytes | None:
        """At end of stream: the last frame if it was not terminated (LF framing)."""
        rest = bytes(self._buf).strip(_SPACE_LIKE)
        self._buf.clear()
        if not rest or self._skip or self._discard_line:
            return None
        if len(rest) > self.max_frame:
            self.oversized += 1
            return None
        return rest

    def drop_partial(self) -> int:
        """Forget the frame begun and not complete (or being skipped); its bytes, which were
        never a frame, are dropped. Returns how many bytes were held."""
        held = len(self._buf)
        self._buf.clear()
        self._skip = 0
        self._discard_line = False
        return held

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf)
