"""Find the ffmpeg binary that prep, synth and predict run.

Order: `$SVFORMER_FFMPEG` (an explicit override), the binary bundled with imageio-ffmpeg (a pinned
dependency, so every machine runs the same build), then `ffmpeg` on `$PATH`. There is no ffprobe:
stream facts come from PyAV (see `svformer.video.decode.probe`).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess

from svformer.errors import UserError

log = logging.getLogger(__name__)


@functools.cache
def ffmpeg_exe() -> str:
    """Absolute path of the ffmpeg binary to run; raises UserError when there is none."""
    override = os.environ.get("SVFORMER_FFMPEG")
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise UserError(f"SVFORMER_FFMPEG={override} is not an executable file; unset it or fix the path")
        return override
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as err:
        # imageio-ffmpeg raises RuntimeError when its bundled binary is missing for this platform.
        log.debug("imageio-ffmpeg has no binary here (%s); trying ffmpeg on PATH", err)
    found = shutil.which("ffmpeg")
    if found is None:
        raise UserError("no ffmpeg found: install imageio-ffmpeg (pip install imageio-ffmpeg) or put ffmpeg on PATH")
    return found


@functools.cache
def ffmpeg_version() -> str:
    """The first line of `ffmpeg -version` (part of the prep settings: it decides the JPEG bytes)."""
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0].strip() if out.stdout else "unknown"


@functools.cache
def has_encoder(name: str) -> bool:
    """Whether this ffmpeg build has the encoder `name` (e.g. libx264)."""
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True, check=False)
    return any(line.split()[1:2] == [name] for line in out.stdout.splitlines() if line.strip())
