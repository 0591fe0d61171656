"""Decode one video into JPEG frames with one ffmpeg process: fps cap, short-side resize, JPEG encode.

Stream facts come from PyAV (container header only, a few milliseconds), because the fps cap must
be decided before ffmpeg starts: the `fps` filter is inserted only when the source rate is above
the cap (or unknown), so a source at or below the cap keeps exactly its own frames (variable frame
rate included: stored fps is then the source's average rate). The rotation angle comes from the
same ffmpeg process's stderr (`Display Matrix: rotation of ...`), which PyAV does not expose.

Choices (also in docs/architecture.md's terms):
- Resize: the short side becomes `short_side`, aspect kept; never upscaled (a smaller source keeps
  its size). ffmpeg autorotates by default, so the stored height/width (read from the JPEG SOF)
  are after rotation; `src_width`/`src_height` are the display size (after rotation) too.
- JPEG quality 1..100 maps linearly onto ffmpeg's mjpeg quantiser scale `-q:v` 31..2
  (q = round(2 + 29 * (100 - quality) / 99): 100 -> 2, 90 -> 5, 75 -> 9, 1 -> 31); 4:2:0, full range.
- The path reaches ffmpeg as `file:<absolute path>`: never an option, never another protocol.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
from dataclasses import dataclass

import av
import ffmpeg

from svformer.video.ffmpeg_bin import ffmpeg_exe
from svformer.video.jpeg import JpegError, jpeg_size, split_jpeg_stream

_ROTATION = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees", re.IGNORECASE)


class DecodeError(Exception):
    """A video that cannot be prepped; str(err) is the one-line reason recorded in failures.tsv."""


@dataclass(frozen=True)
class DecodeSettings:
    """What prep does to every video (all of it changes the stored bytes)."""

    short_side: int = 256
    """Target short side in pixels (never upscaled)."""
    fps: float = 30.0
    """Frame-rate cap; sources at or below it keep their own frames."""
    quality: int = 90
    """JPEG quality 1..100 (mapped onto mjpeg -q:v 31..2)."""


@dataclass(frozen=True)
class StreamInfo:
    """Facts about a video's first video stream, before decoding."""

    fps: float | None
    """Average frame rate (frames per second), None when the container does not say."""
    width: int
    height: int
    """Coded size in pixels (before rotation)."""
    duration: float | None
    """Seconds, None when unknown."""


@dataclass
class Decoded:
    """One decoded video: its JPEG frames and the facts recorded in the shard JSON."""

    frames: list[bytes]
    height: int
    width: int
    fps: float
    src_fps: float | None
    src_width: int
    src_height: int
    src_duration: float | None
    src_rotation: int


def jpeg_qscale(quality: int) -> int:
    """mjpeg `-q:v` (2 best .. 31 worst) for a JPEG quality 1..100 (100 best)."""
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    return round(2 + 29 * (100 - quality) / 99)


def check_file(path: str) -> None:
    """Raise DecodeError for a missing, non-regular, zero-byte or unreadable file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DecodeError("file not found") from None
    except OSError as err:
        raise DecodeError(f"cannot stat file ({err.strerror})") from None
    if not os.path.isfile(path):
        raise DecodeError("not a regular file")
    if st.st_size == 0:
        raise DecodeError("zero-byte file")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as err:
        raise DecodeError(f"unreadable file ({err.strerror})") from None


def _rate(value: object) -> float | None:
    """A PyAV Fraction rate as float, None when missing or not positive."""
    try:
        rate = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return rate if math.isfinite(rate) and rate > 0 else None


def probe(path: str) -> StreamInfo:
    """Stream facts of the first real video stream (PyAV, header only); DecodeError if there is none."""
    try:
        with av.open(os.path.abspath(path), metadata_errors="ignore") as container:
            streams = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
            if not streams:
                kinds = sorted({s.type for s in container.streams}) or ["no streams"]
                raise DecodeError(f"no video stream (has: {', '.join(kinds)})")
            stream = streams[0]
            fps = _rate(stream.average_rate) or _rate(stream.guessed_rate)
            if stream.duration is not None and stream.time_base is not None:
                duration: float | None = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            else:
                duration = None
            width, height = stream.codec_context.width, stream.codec_context.height
    except av.error.FFmpegError as err:
        raise DecodeError(_open_failure_reason(path, err)) from None
    if width <= 0 or height <= 0:
        raise DecodeError(f"video stream has no frame size ({width}x{height})")
    return StreamInfo(fps=fps, width=width, height=height, duration=duration)


def needs_fps_filter(info: StreamInfo, settings: DecodeSettings) -> bool:
    """Whether the source must be resampled: its rate is above the cap, or unknown."""
    return info.fps is None or info.fps > settings.fps + 1e-6


def ffmpeg_command(path: str, info: StreamInfo, settings: DecodeSettings, output: str = "pipe:") -> list[str]:
    """The ffmpeg argv that decodes `path` into an MJPEG stream at `output` (pipe: or a %06d.jpg pattern)."""
    stream = ffmpeg.input("file:" + os.path.abspath(path))["v:0"]
    if needs_fps_filter(info, settings):
        stream = stream.filter("fps", fps=_fps_arg(settings.fps))
    s = settings.short_side
    # Short side -> s, aspect kept (-1), never upscaled (min); evaluated after autorotation.
    stream = stream.filter("scale", w=f"if(lte(iw,ih),min(iw,{s}),-1)", h=f"if(lte(iw,ih),-1,min(ih,{s}))")
    fmt = "image2pipe" if output == "pipe:" else "image2"
    out = stream.output(
        output,
        format=fmt,
        vcodec="mjpeg",
        pix_fmt="yuv420p",
        fps_mode="passthrough",
        **{"q:v": jpeg_qscale(settings.quality)},
    )
    return out.compile(cmd=[ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats"])


def _fps_arg(fps: float) -> str:
    """An exact rate string for ffmpeg (30 -> '30', 29.97 -> '29.97')."""
    return f"{fps:g}"


_PREFIX = re.compile(r"^(\[[^]]*@ 0x[0-9a-f]+\]\s*)+")
# ffmpeg's closing chatter, which names no cause.
_NOISE = re.compile(
    r"Terminating thread|Task finished|Conversion failed|Nothing was written|Could not open encoder"
    r"|Cannot determine format|Consider increasing|^frame=|Error opening input file"
)
_ERRORISH = re.compile(r"error|invalid|corrupt|partial file|not found|no such|failed|missing", re.IGNORECASE)


def _stderr_cause(stderr: str) -> str:
    """The line of ffmpeg's stderr that names the cause, without its `[ctx @ 0x...]` prefix."""
    lines = [_PREFIX.sub("", ln.strip()) for ln in stderr.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not _NOISE.search(ln)]
    for ln in lines:  # the cause that explains the rest, when ffmpeg names one
        if "partial file" in ln or "moov atom not found" in ln:
            return f"truncated or incomplete file ({ln})"
    errors = [ln for ln in lines if _ERRORISH.search(ln)]
    return (errors or lines or ["no message"])[0][:200]


def _open_failure_reason(path: str, err: Exception) -> str:
    """Why a file does not open as a video, from ffmpeg's own stderr (PyAV keeps libav logs off)."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", "file:" + os.path.abspath(path)]
    try:
        stderr = subprocess.run(cmd, capture_output=True, timeout=60, check=False).stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        stderr = ""
    if "misdetection possible" in stderr or ("Invalid data found" in stderr and "moov atom" not in stderr):
        return "not a video file (ffmpeg does not recognise the format)"
    if "moov atom not found" in stderr:
        return "truncated or incomplete file (moov atom not found)"
    return f"not a readable video ({getattr(err, 'strerror', None) or type(err).__name__})"


def _ffmpeg_reason(returncode: int, stderr: str) -> str:
    """A one-line reason from a failed ffmpeg run's stderr."""
    return f"ffmpeg exited with {returncode}: {_stderr_cause(stderr)}"


def decode_video(path: str, settings: DecodeSettings, timeout_s: float = 600.0) -> Decoded:
    """Decode `path` into JPEG frames (fps cap, short-side resize, JPEG) with one ffmpeg process.

    Returns: Decoded with `frames` (JPEG bytes, list order = time order), the stored size and fps
    and the source facts. Raises: DecodeError with a one-line reason for any bad input.
    """
    check_file(path)
    info = probe(path)
    cmd = ffmpeg_command(path, info, settings)
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise DecodeError(f"ffmpeg timed out after {timeout_s:.0f} s") from None
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise DecodeError(_ffmpeg_reason(proc.returncode, stderr))
    try:
        frames = split_jpeg_stream(proc.stdout)
    except JpegError as err:
        raise DecodeError(f"malformed JPEG stream from ffmpeg: {err}") from None
    if not frames:
        raise DecodeError(f"no frames decoded ({_stderr_cause(stderr)})")
    height, width = jpeg_size(frames[0])
    match = _ROTATION.search(stderr.split("Output #0", 1)[0])  # the input's display matrix only
    rotation = int(round(float(match.group(1)))) % 360 if match else 0
    swap = rotation in (90, 270)
    filtered = needs_fps_filter(info, settings)
    return Decoded(
        frames=frames,
        height=height,
        width=width,
        fps=float(settings.fps) if filtered else float(info.fps),  # type: ignore[arg-type]
        src_fps=info.fps,
        src_width=info.height if swap else info.width,
        src_height=info.width if swap else info.height,
        src_duration=info.duration,
        src_rotation=rotation,
    )
