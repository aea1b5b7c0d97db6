"""RFC 6587 framing: octet counting and LF, mixed, split anywhere, oversized frames."""

from __future__ import annotations

import pytest

from killkrill.receivers.syslog_framing import FrameSplitter

STREAM = b"5 hello<13>a b\r\n<13>xx\n13 <14>1 - - - -\n<2>tail"
FRAMES = [b"hello", b"<13>a b", b"<13>xx", b"<14>1 - - - -"]


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64])
def test_frames_survive_any_split(step: int) -> None:
    splitter = FrameSplitter(100)
    out: list[bytes] = []
    for i in range(0, len(STREAM), step):
        out += splitter.feed(STREAM[i : i + step])
    assert out == FRAMES
    assert splitter.flush() == b"<2>tail"
    assert splitter.oversized == 0


def test_oversized_frames_are_skipped_and_counted() -> None:
    splitter = FrameSplitter(10)
    data = b"30 " + b"x" * 30 + b"<1>" + b"y" * 30 + b"\n<2>ok\n3 abc"
    assert splitter.feed(data) == [b"<2>ok", b"abc"]
    assert splitter.oversized == 2


def test_unterminated_oversized_line_is_discarded_until_newline() -> None:
    splitter = FrameSplitter(10)
    assert splitter.feed(b"<1>" + b"z" * 50) == []
    assert splitter.buffered == 0
    assert splitter.feed(b"zz\n<2>ok\n") == [b"<2>ok"]
    assert splitter.oversized == 1


def test_drop_partial_forgets_the_frame_begun_and_the_next_one_starts_clean() -> None:
    splitter = FrameSplitter(max_frame=64)
    assert splitter.feed(b"5 hello3 ab") == [b"hello"]
    assert splitter.drop_partial() == 4
    assert splitter.buffered == 0
    assert splitter.feed(b"3 xyz") == [b"xyz"]
    splitter.feed(b"100 " + b"a" * 10)  # an oversized frame being skipped
    assert splitter.drop_partial() == 0
    assert splitter.feed(b"2 ok") == [b"ok"]
