"""Split a concatenated JPEG stream (ffmpeg's image2pipe/mjpeg output) into frames by its markers.

A JPEG is SOI (FFD8), then marker segments `FF xx <2-byte big-endian length incl. itself> ...`,
where SOS (FFDA) is followed by entropy-coded data that runs until the next marker: an `FF` not
followed by `00` (a stuffed data byte) or `D0..D7` (restart markers); `FF FF` is fill. EOI (FFD9)
ends the image. Parsing the structure, rather than searching for FFD9, is what makes this safe:
FFD9 can legally appear inside an embedded thumbnail or an APPn payload.
"""

from __future__ import annotations

SOI, EOI, SOS = 0xD8, 0xD9, 0xDA
# SOF0..SOF15 minus DHT (C4), JPG (C8) and DAC (CC): the segments that carry the frame size.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_NO_LENGTH = {SOI, EOI, 0x01} | set(range(0xD0, 0xD8))


class JpegError(ValueError):
    """The byte stream is not a well-formed sequence of JPEG images."""


def _scan_entropy(data: bytes, pos: int) -> int:
    """Position of the marker (its FF byte) that ends the entropy-coded data starting at `pos`."""
    n = len(data)
    while True:
        ff = data.find(b"\xff", pos)
        if ff < 0 or ff + 1 >= n:
            raise JpegError("stream ends inside entropy-coded data")
        code_at = ff + 1
        while code_at < n and data[code_at] == 0xFF:  # fill bytes before a marker
            code_at += 1
        if code_at >= n:
            raise JpegError("stream ends inside entropy-coded data")
        code = data[code_at]
        if code == 0x00 or 0xD0 <= code <= 0xD7:
            pos = code_at + 1
            continue
        return code_at - 1


def _frame_end(data: bytes, start: int) -> int:
    """End offset (exclusive) of the JPEG image that starts at `start` (which must hold SOI)."""
    n = len(data)
    if data[start : start + 2] != b"\xff\xd8":
        raise JpegError(f"no SOI marker at byte {start}")
    pos = start + 2
    while True:
        if pos + 2 > n:
            raise JpegError("stream ends before EOI")
        if data[pos] != 0xFF:
            raise JpegError(f"expected a marker at byte {pos}, found 0x{data[pos]:02x}")
        code = data[pos + 1]
        if code == 0xFF:  # fill byte
            pos += 1
            continue
        if code == EOI:
            return pos + 2
        if code in _NO_LENGTH:
            pos += 2
            continue
        if pos + 4 > n:
            raise JpegError("stream ends inside a segment header")
        length = (data[pos + 2] << 8) | data[pos + 3]
        if length < 2 or pos + 2 + length > n:
            raise JpegError(f"segment 0x{code:02x} at byte {pos} has a bad length {length}")
        pos += 2 + length
        if code == SOS:
            pos = _scan_entropy(data, pos)


def split_jpeg_stream(data: bytes) -> list[bytes]:
    """The JPEG images of a concatenated stream, in order; raises JpegError when malformed."""
    frames: list[bytes] = []
    start, n = 0, len(data)
    while start < n:
        end = _frame_end(data, start)
        frames.append(data[start:end])
        start = end
    return frames


def jpeg_size(frame: bytes) -> tuple[int, int]:
    """(height, width) in pixels from the SOF segment of one JPEG image."""
    pos, n = 2, len(frame)
    while pos + 4 <= n:
        if frame[pos] != 0xFF:
            break
        code = frame[pos + 1]
        if code == 0xFF:
            pos += 1
            continue
        if code in _NO_LENGTH:
            pos += 2
            continue
        length = (frame[pos + 2] << 8) | frame[pos + 3]
        if code in _SOF and pos + 9 <= n:
            return (frame[pos + 5] << 8) | frame[pos + 6], (frame[pos + 7] << 8) | frame[pos + 8]
        if code == SOS:
            break
        pos += 2 + length
    raise JpegError("no SOF segment before the scan data")
