"""The synthetic demo datasets: classes that only time can tell apart, of two kinds.

`events` (8 classes, the demo's: make demo): the object stays still while every colour of the
frame turns about one of four axes of RGB space through mid-grey (the grey axis: a hue turn; the
red, green or blue axis), one way or the other. The turn's phase is (u0 +- r t) mod 1 of a full
turn with u0 uniform, so one frame has the same distribution in both classes of a pair, and a turn
has no start or end to give its direction away. A TimeSformer sees these changes at every patch,
which makes them far easier for a small ViT trained from scratch than motion
(bench/probes/README.md). `motion` (8 classes, configs/demo_motion.yaml): the object itself moves.

`motion`: classes come in time-reversed pairs: move right/left/down/up (on a torus: the object
wraps around the frame edges), rotate clockwise/counter-clockwise, grow/shrink (a sawtooth in
log-size: size = smin * (smax/smin) ** ((u0 +- r t) mod 1)). Every video draws the same random
numbers in the same order whatever its class; the class only picks which rates are non-zero and
their sign. Position (uniform on the torus), angle (uniform) and log-size phase (uniform) are
therefore identically distributed in every frame of every class, and for one seed all eight classes
share the very same first frame. A single frame, or a shuffled set of frames, cannot tell a class
from its time reversal. Nuisances: background colours, gradient and texture, object colour and
shape (none rotationally symmetric beyond 90 degrees, so rotation is visible), size range, speed,
noise, resolution (some odd sizes, encoded 4:4:4 since 4:2:0 needs even sizes), duration and fps.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from svformer.video.ffmpeg_bin import ffmpeg_exe, has_encoder

log = logging.getLogger(__name__)

MOTION_CLASSES = ["move_right", "move_left", "move_down", "move_up", "rotate_cw", "rotate_ccw", "grow", "shrink"]
EVENT_CLASSES = [
    "hue_forward",
    "hue_backward",
    "red_axis_forward",
    "red_axis_backward",
    "green_axis_forward",
    "green_axis_backward",
    "blue_axis_forward",
    "blue_axis_backward",
]
KINDS = {"events": EVENT_CLASSES, "motion": MOTION_CLASSES}
SHAPES = ["square", "triangle", "cross", "ell", "bar", "tee"]
FPS_CHOICES = [10, 12, 15, 20, 24, 25, 30]
SIZE_RATIO = 2.2  # smax / smin of the log-size sawtooth
EFFECTS = ["hue", "red_axis", "green_axis", "blue_axis"]  # events: class 2k is effect k forward, 2k+1 backward
EFFECT_AXES = {
    "hue": (1.0, 1.0, 1.0),
    "red_axis": (1.0, 0.0, 0.0),
    "green_axis": (0.0, 1.0, 0.0),
    "blue_axis": (0.0, 0.0, 1.0),
}
"""The RGB-space axis each events effect turns colours about (through mid-grey)."""


@dataclass(frozen=True)
class VideoParams:
    """Everything needed to render one video (lengths in pixels, times in seconds, angles in radians)."""

    label: int
    width: int
    height: int
    fps: int
    num_frames: int
    shape: str
    x0: float
    y0: float
    """Object centre at t=0, pixels, uniform over the frame."""
    angle0: float
    """Orientation at t=0, uniform in [0, 2 pi); positive angles turn clockwise on screen (y down)."""
    u0: float
    """Log-size phase at t=0, uniform in [0, 1)."""
    smin: float
    """Smallest half-extent of the object, pixels."""
    vx: float
    vy: float
    """Velocity, pixels per second (non-zero for the move classes only)."""
    omega: float
    """Angular velocity, radians per second (rotate classes only)."""
    rate: float
    """Log-size phase rate, cycles per second (grow/shrink only)."""
    background: tuple[tuple[float, float, float], tuple[float, float, float]]
    grad_angle: float
    texture: tuple[tuple[float, float, float, float], ...]
    """Sinusoid gratings (amplitude, kx, ky, phase) added to the background."""
    foreground: tuple[float, float, float]
    noise: float
    """Per-frame Gaussian luminance noise sigma, in 0..255 units."""
    seed: int
    effect: str = ""
    """events kind: one of EFFECTS ("" for motion videos)."""
    effect_phase: float = 0.0
    """Phase of the effect at t=0, uniform in [0, 1) (hue: fraction of a full turn)."""
    effect_rate: float = 0.0
    """Signed cycles per second of the effect's phase: positive for the first class of a pair."""


def sample_params(rng: np.random.Generator, label: int, odd_ok: bool = True, kind: str = "motion") -> VideoParams:
    """Draw one video's parameters; the draws (and their order) depend on neither `label` nor `kind`."""
    odd = rng.random() < 0.25
    # aspect in [1, 1.4]: a square training crop then still sees most of the torus the object moves on
    height = int(rng.integers(72, 129))
    width = int(round(height * float(rng.uniform(1.0, 1.4))))
    width, height = (width | 1, height | 1) if odd and odd_ok else (width & ~1, height & ~1)
    fps = int(rng.choice(FPS_CHOICES))
    num_frames = max(2, round(float(rng.uniform(1.5, 4.0)) * fps))
    short = min(width, height)
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    x0, y0 = float(rng.uniform(0, width)), float(rng.uniform(0, height))
    angle0, u0 = float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0, 1))
    smin = float(rng.uniform(0.15, 0.2)) * short
    speed = float(rng.uniform(0.5, 0.9)) * short  # pixels/s: clearly visible within a 1 s clip
    omega = float(rng.uniform(2 * math.pi / 3, math.pi))  # 120..180 deg/s: under 45 deg/frame at 10 fps
    rate = float(rng.uniform(0.4, 0.8))
    c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    grad_angle = float(rng.uniform(0, 2 * math.pi))
    texture = tuple(
        (
            float(rng.uniform(0, 3)),
            float(rng.uniform(-0.3, 0.3)),
            float(rng.uniform(-0.3, 0.3)),
            float(rng.uniform(0, 2 * math.pi)),
        )
        for _ in range(3)
    )
    mean_bg = (c1 + c2) / 2
    fg = rng.uniform(0, 255, (16, 3))
    fg = fg[int(np.argmax(np.abs(fg - mean_bg).sum(axis=1)))]  # most contrasting of 16 draws
    noise = float(rng.uniform(0, 2))
    seed = int(rng.integers(2**31))
    effect_phase, effect_rate = float(rng.uniform(0, 1)), float(rng.uniform(0.3, 0.5))
    common = dict(
        label=label,
        width=width,
        height=height,
        fps=fps,
        num_frames=num_frames,
        shape=shape,
        x0=x0,
        y0=y0,
        angle0=angle0,
        u0=u0,
        smin=smin,
        background=(tuple(c1), tuple(c2)),
        grad_angle=grad_angle,
        texture=texture,
        foreground=tuple(fg),
        noise=noise,
        seed=seed,
    )
    if kind == "events":
        sign = 1.0 if label % 2 == 0 else -1.0
        return VideoParams(
            **common,
            vx=0.0,
            vy=0.0,
            omega=0.0,
            rate=0.0,
            effect=EFFECTS[label // 2],
            effect_phase=effect_phase,
            effect_rate=sign * effect_rate,
        )
    if kind != "motion":
        raise ValueError(f"unknown kind {kind!r}; expected one of {sorted(KINDS)}")
    name = MOTION_CLASSES[label]
    return VideoParams(
        **common,
        vx={"move_right": speed, "move_left": -speed}.get(name, 0.0),
        vy={"move_down": speed, "move_up": -speed}.get(name, 0.0),
        omega={"rotate_cw": omega, "rotate_ccw": -omega}.get(name, 0.0),
        rate={"grow": rate, "shrink": -rate}.get(name, 0.0),
    )


def object_state(p: VideoParams, t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, angle, u) at times t (seconds): centre in pixels (wrapped), angle mod 2 pi, log-size phase."""
    t = np.asarray(t, dtype=np.float64)
    x = np.mod(p.x0 + p.vx * t, p.width)
    y = np.mod(p.y0 + p.vy * t, p.height)
    angle = np.mod(p.angle0 + p.omega * t, 2 * math.pi)
    u = np.mod(p.u0 + p.rate * t, 1.0)
    return x, y, angle, u


def _inside(shape: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Membership of canonical coordinates (a right, b down; the shape spans [-1, 1]) in `shape`."""
    aa, ab = np.abs(a), np.abs(b)
    if shape == "square":
        return np.maximum(aa, ab) <= 0.8
    if shape == "triangle":  # apex up; its outward edge normals point down, up-left, up-right
        return (b <= 0.5) & (-0.866 * a - 0.5 * b <= 0.5) & (0.866 * a - 0.5 * b <= 0.5)
    if shape == "cross":
        return ((aa <= 1) & (ab <= 0.3)) | ((aa <= 0.3) & (ab <= 1))
    if shape == "ell":
        return ((a >= -1) & (a <= -0.35) & (ab <= 1)) | ((aa <= 1) & (b >= 0.4) & (b <= 1))
    if shape == "bar":
        return (aa <= 1) & (ab <= 0.4)
    if shape == "tee":
        return ((aa <= 1) & (b >= -1) & (b <= -0.45)) | ((aa <= 0.3) & (ab <= 1))
    raise ValueError(f"unknown shape {shape!r}")


def _background(p: VideoParams) -> np.ndarray:
    """Static background, float32 (H, W, 3) in 0..255: a two-colour gradient plus gratings."""
    ys, xs = np.mgrid[0 : p.height, 0 : p.width].astype(np.float32)
    along = xs * math.cos(p.grad_angle) + ys * math.sin(p.grad_angle)
    along = (along - along.min()) / max(float(along.max() - along.min()), 1.0)
    c1, c2 = np.array(p.background[0], np.float32), np.array(p.background[1], np.float32)
    bg = c1 + (c2 - c1) * along[..., None]
    for amp, kx, ky, phase in p.texture:
        bg += amp * np.sin(kx * xs + ky * ys + phase)[..., None]
    return bg


def render_video(p: VideoParams) -> np.ndarray:
    """All frames of a video: uint8 (T, H, W, 3) RGB."""
    t = np.arange(p.num_frames) / p.fps
    x, y, angle, u = (v.astype(np.float32)[:, None, None] for v in object_state(p, t))
    size = (p.smin * SIZE_RATIO**u).astype(np.float32)  # half-extent, pixels, (T, 1, 1)
    ys, xs = np.mgrid[0 : p.height, 0 : p.width].astype(np.float32) + 0.5
    # Offsets to the centre on the torus, so the object wraps around the frame edges.
    dx = xs - x
    dx -= p.width * np.floor(dx / p.width + 0.5)
    dy = ys - y
    dy -= p.height * np.floor(dy / p.height + 0.5)
    cos, sin = np.cos(angle), np.sin(angle)
    a = (cos * dx + sin * dy) / size  # rotate by -angle into the object's frame
    b = (-sin * dx + cos * dy) / size
    mask = _inside(p.shape, a, b)[..., None]  # (T, H, W, 1)
    frames = np.where(mask, np.array(p.foreground, np.float32), _background(p)[None])
    if p.effect:
        frames = apply_effect(frames, p, t)
    if p.noise > 0:  # luminance noise, fresh every frame (one channel: a third of the cost)
        frames += p.noise * np.random.default_rng(p.seed).standard_normal((*frames.shape[:3], 1), dtype=np.float32)
    return np.clip(frames + 0.5, 0, 255).astype(np.uint8)


def effect_phase(p: VideoParams, t: np.ndarray | float) -> np.ndarray:
    """The events effect's phase in [0, 1) at times t (seconds)."""
    return np.mod(p.effect_phase + p.effect_rate * np.asarray(t, dtype=np.float64), 1.0)


def colour_turn(axis: tuple[float, float, float], theta: float) -> np.ndarray:
    """3x3 rotation by theta about `axis` of RGB space (the grey axis: a hue turn keeping each pixel's mean)."""
    k = np.asarray(axis) / np.linalg.norm(axis)
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return (np.eye(3) + math.sin(theta) * cross + (1 - math.cos(theta)) * cross @ cross).astype(np.float32)


def apply_effect(frames: np.ndarray, p: VideoParams, t: np.ndarray) -> np.ndarray:
    """The whole-frame change of an events video: every colour turns about the effect's RGB axis through
    mid-grey by 2 pi times the phase. float (T, H, W, 3) frames in, turned frames out."""
    if p.effect not in EFFECT_AXES:
        raise ValueError(f"unknown effect {p.effect!r}")
    out = np.empty_like(frames)
    for i, u in enumerate(effect_phase(p, t)):
        out[i] = (frames[i] - 128.0) @ colour_turn(EFFECT_AXES[p.effect], 2 * math.pi * u).T + 128.0
    return out


def encode_video(frames: np.ndarray, fps: int, path: Path, codec: str) -> None:
    """Encode uint8 (T, H, W, 3) RGB frames into an mp4 through ffmpeg (bit-exact, single-threaded)."""
    t, h, w, _ = frames.shape
    pix_fmt = "yuv420p" if (w % 2 == 0 and h % 2 == 0) or codec != "libx264" else "yuv444p"
    quality = ["-preset", "veryfast", "-crf", "18"] if codec == "libx264" else ["-q:v", "3"]
    cmd = [
        ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{w}x{h}",
        "-r",
        str(fps),
        "-i",
        "pipe:",
        "-c:v",
        codec,
        *quality,
        "-pix_fmt",
        pix_fmt,
        "-threads",
        "1",
        "-fflags",
        "+bitexact",
        "-flags:v",
        "+bitexact",
        "-map_metadata",
        "-1",
        "file:" + str(path.resolve()),
    ]
    proc = subprocess.run(cmd, input=frames.tobytes(), capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg could not encode {path}: {proc.stderr.decode(errors='replace').strip()[-300:]}")


def synthesize(
    out_dir: str | Path, videos_per_class: int = 24, seed: int = 0, workers: int | None = None, kind: str = "motion"
) -> Path:
    """Write a demo dataset to out_dir: videos/vNNNN.mp4, all.txt (`<path> <label>`), classes.txt.

    `kind` picks the class set (KINDS). Video i has label i % (number of classes) and parameters
    from `np.random.default_rng([seed, i])`.
    Returns: the path of all.txt.
    """
    classes = KINDS[kind]
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    codec = "libx264" if has_encoder("libx264") else "mpeg4"
    count = videos_per_class * len(classes)

    def make(index: int) -> str:
        params = sample_params(
            np.random.default_rng([seed, index]), index % len(classes), odd_ok=codec == "libx264", kind=kind
        )
        rel = f"videos/v{index:04d}.mp4"
        encode_video(render_video(params), params.fps, out / rel, codec)
        return f"{rel} {params.label}\n"

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        lines = list(pool.map(make, range(count)))
    (out / "classes.txt").write_text("".join(name + "\n" for name in classes))
    (out / "all.txt").write_text("".join(lines))
    log.info("wrote %d %s videos (%s) to %s", count, kind, codec, out)
    return out / "all.txt"
