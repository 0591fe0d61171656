"""A synthetic pretraining set without labels, after Yu, Chen & Gandelsman 2024 ("Learning Video
Representations without Natural Videos"): their progression of synthetic videos for VideoMAE, from
moving circles to many accelerating, transforming, textured shapes.

Every video draws a stage of that progression (uniformly unless `stages` is given), and each stage
adds a kind of change to the one before:
  0 moving circles        constant velocity, flat background, 1-3 objects
  1 moving shapes         ellipses, polygons, stars and rings, gradient backgrounds, 1-4 objects
  2 transforming shapes   + rotation, growth/shrinking, a colour turn over time, 1-6 objects
  3 accelerating shapes   + linear and angular acceleration (objects bounce off the frame edges),
                          flat or gradient backgrounds
  4 textured shapes       + gratings on the objects (moving with them) and textured, drifting backgrounds, 1-8 objects
The videos carry no label (all.txt lists them with -1) and are unrelated to the `motion` kind:
other shapes, several objects with random directions, speeds and accelerations instead of one
object and eight classes of motion. Nuisances as in prep/synth.py: size (odd sizes encoded 4:4:4),
fps, duration, luminance noise. Videos are real mp4 files made with prep/synth.py's encoder.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from prep.synth import FPS_CHOICES, colour_turn, encode_video
from svformer.video.ffmpeg_bin import has_encoder

log = logging.getLogger(__name__)

STAGES = ["moving_circles", "moving_shapes", "transforming_shapes", "accelerating_shapes", "textured_shapes"]
SHAPES = ["ellipse", "polygon", "star", "ring"]
BACKGROUNDS = ["flat", "gradient", "gratings", "noise"]
MAX_OBJECTS = [3, 4, 6, 6, 8]  # per stage


@dataclass(frozen=True)
class SceneObject:
    """One object: shape, motion (pixels, seconds, radians), size, colour and texture."""

    shape: str
    sides: int
    """Polygon sides / star points (3..8)."""
    aspect: float
    """Ellipse axis ratio (<= 1)."""
    x0: float
    y0: float
    vx: float
    vy: float
    ax: float
    ay: float
    angle0: float
    omega: float
    alpha: float
    size0: float
    """Radius at t=0, pixels."""
    growth: float
    """d log(size) / dt, per second."""
    colour: tuple[float, float, float]
    colour_rate: float
    """Cycles per second of a hue turn of the object's colour."""
    texture: tuple[float, float, float, float]
    """(amplitude 0..1, ka, kb, speed): a grating in the object's own frame; amplitude 0 = flat colour."""


@dataclass(frozen=True)
class PretrainScene:
    """Everything needed to render one video."""

    stage: int
    width: int
    height: int
    fps: int
    num_frames: int
    background: str
    colours: tuple[tuple[float, float, float], tuple[float, float, float]]
    bg_params: tuple[float, ...]
    """gradient: (angle,); gratings: (ka, kb, phase) x 3; noise: (cell px,); flat: ()."""
    drift: tuple[float, float]
    """Background drift (a camera pan), pixels per second."""
    objects: tuple[SceneObject, ...]
    noise: float
    seed: int


def _colour(rng: np.random.Generator) -> tuple[float, float, float]:
    return tuple(float(c) for c in rng.uniform(0, 255, 3))


def sample_object(rng: np.random.Generator, stage: int, width: int, height: int, duration: float) -> SceneObject:
    """One object of a stage's kind, inside a width x height frame, for a video of `duration` seconds.

    Rates are scaled by the duration so that over a whole video an object's speed changes by at most
    1.2 frame sides per second, and its size by at most 2.5x either way.
    """
    short = min(width, height)
    shape = "ellipse" if stage == 0 else SHAPES[int(rng.integers(len(SHAPES)))]
    speed, heading = float(rng.uniform(0.2, 0.9)) * short, float(rng.uniform(0, 2 * math.pi))
    moves = stage >= 2
    accel = stage >= 3
    a_mag = float(rng.uniform(0.2, 1.2)) * short / duration if accel else 0.0
    a_dir = float(rng.uniform(0, 2 * math.pi)) if accel else 0.0
    textured = stage >= 4 and rng.random() < 0.7
    return SceneObject(
        shape=shape,
        sides=int(rng.integers(3, 9)),
        aspect=1.0 if stage == 0 else float(rng.uniform(0.4, 1.0)),
        x0=float(rng.uniform(0, width)),
        y0=float(rng.uniform(0, height)),
        vx=speed * math.cos(heading),
        vy=speed * math.sin(heading),
        ax=a_mag * math.cos(a_dir),
        ay=a_mag * math.sin(a_dir),
        angle0=float(rng.uniform(0, 2 * math.pi)),
        omega=float(rng.uniform(-math.pi, math.pi)) if moves else 0.0,
        alpha=float(rng.uniform(-2 * math.pi, 2 * math.pi)) if accel else 0.0,
        size0=float(rng.uniform(0.06, 0.2)) * short,
        growth=float(rng.uniform(-1, 1)) * math.log(2.5) / duration if moves else 0.0,
        colour=_colour(rng),
        colour_rate=float(rng.uniform(-0.4, 0.4)) if moves else 0.0,
        texture=(
            float(rng.uniform(0.3, 1.0)) if textured else 0.0,
            float(rng.uniform(-6, 6)),
            float(rng.uniform(-6, 6)),
            float(rng.uniform(-4, 4)),
        ),
    )


def sample_scene(
    rng: np.random.Generator, stages: Sequence[int] = range(len(STAGES)), odd_ok: bool = True
) -> PretrainScene:
    """Draw one video: its stage (uniform over `stages`), frame geometry, background and objects."""
    stage = int(rng.choice(list(stages)))
    odd = rng.random() < 0.25
    height = int(rng.integers(72, 129))
    width = int(round(height * float(rng.uniform(1.0, 1.4))))
    width, height = (width | 1, height | 1) if odd and odd_ok else (width & ~1, height & ~1)
    fps = int(rng.choice(FPS_CHOICES))
    num_frames = max(2, round(float(rng.uniform(1.5, 4.0)) * fps))
    pick = int(rng.integers(4))  # stage 3: flat or gradient; stage 4: any, textured ones included
    background = ["flat", "gradient", "gradient", BACKGROUNDS[pick % 2], BACKGROUNDS[pick]][stage]
    if background == "gradient":
        bg_params: tuple[float, ...] = (float(rng.uniform(0, 2 * math.pi)),)
    elif background == "gratings":
        bg_params = tuple(
            float(v)
            for _ in range(3)
            for v in (rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.4), rng.uniform(0, 2 * math.pi))
        )
    elif background == "noise":
        bg_params = (float(rng.integers(4, 17)),)
    else:
        bg_params = ()
    drift_speed = float(rng.uniform(0, 0.3)) * min(width, height) if stage >= 4 else 0.0
    drift_dir = float(rng.uniform(0, 2 * math.pi))
    count = int(rng.integers(1, MAX_OBJECTS[stage] + 1))
    objects = tuple(sample_object(rng, stage, width, height, num_frames / fps) for _ in range(count))
    return PretrainScene(
        stage=stage,
        width=width,
        height=height,
        fps=fps,
        num_frames=num_frames,
        background=background,
        colours=(_colour(rng), _colour(rng)),
        bg_params=bg_params,
        drift=(drift_speed * math.cos(drift_dir), drift_speed * math.sin(drift_dir)),
        objects=objects,
        noise=float(rng.uniform(0, 2)),
        seed=int(rng.integers(2**31)),
    )


def _bounce(x: np.ndarray, extent: float) -> np.ndarray:
    """Positions folded into [0, extent]: an object bounces off the frame edges."""
    return extent - np.abs(np.mod(x, 2 * extent) - extent)


def _inside(obj: SceneObject, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Membership of object-frame coordinates (radius 1) in the object's shape."""
    r = np.hypot(a, b)
    if obj.shape == "ellipse":
        return (a / obj.aspect) ** 2 + b**2 <= 1.0
    theta = np.arctan2(b, a)
    sector = 2 * math.pi / obj.sides
    if obj.shape == "polygon":  # regular polygon with circumradius 1
        return r * np.cos(np.mod(theta, sector) - sector / 2) <= math.cos(sector / 2)
    if obj.shape == "star":  # radius from 0.45 (between points) to 1 (at a point)
        tri = np.abs(np.mod(theta, sector) / sector - 0.5) * 2
        return r <= 0.45 + 0.55 * tri
    if obj.shape == "ring":
        return (r <= 1.0) & (r >= 0.55)
    raise ValueError(f"unknown shape {obj.shape!r}")


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """A periodic, bilinearly interpolated random field (H, W) in [0, 1]."""
    gh, gw = max(2, height // cell), max(2, width // cell)
    grid = rng.random((gh, gw))
    ys, xs = np.arange(height) * gh / height, np.arange(width) * gw / width
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    y1, x1 = (y0 + 1) % gh, (x0 + 1) % gw
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x1] * fx
    bottom = grid[y1][:, x0] * (1 - fx) + grid[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def render_background(s: PretrainScene, t: np.ndarray) -> np.ndarray:
    """float32 (T, H, W, 3) in 0..255: the scene's background, drifting with s.drift."""
    c1, c2 = (np.array(c, np.float32) for c in s.colours)
    dx, dy = s.drift[0] * t[:, None, None], s.drift[1] * t[:, None, None]
    ys, xs = np.mgrid[0 : s.height, 0 : s.width].astype(np.float32)
    if s.background == "flat":
        mix = np.zeros((len(t), s.height, s.width), np.float32)
    elif s.background == "gradient":
        along = np.cos(s.bg_params[0]) * (xs - dx) + np.sin(s.bg_params[0]) * (ys - dy)
        mix = np.mod(along / (2 * max(s.width, s.height)), 1.0)
        mix = 1 - np.abs(2 * mix - 1)  # a periodic ramp, so drifting never runs out of background
    elif s.background == "gratings":
        p = np.array(s.bg_params, np.float32).reshape(3, 3)
        mix = sum(np.sin(ka * (xs - dx) + kb * (ys - dy) + ph) for ka, kb, ph in p) / 6 + 0.5
    else:  # noise, rolled by whole pixels (periodic)
        field = _smooth_noise(np.random.default_rng(s.seed), s.height, s.width, int(s.bg_params[0]))
        mix = np.stack(
            [
                np.roll(field, (int(round(float(oy))), int(round(float(ox)))), axis=(0, 1))
                for ox, oy in zip(dx[:, 0, 0], dy[:, 0, 0])
            ]
        )
    return (c1 + (c2 - c1) * np.asarray(mix, np.float32)[..., None]).astype(np.float32)


def render_scene(s: PretrainScene) -> np.ndarray:
    """All frames of a video: uint8 (T, H, W, 3) RGB; later objects are drawn over earlier ones."""
    t = np.arange(s.num_frames, dtype=np.float64) / s.fps
    frames = render_background(s, t)
    ys, xs = np.mgrid[0 : s.height, 0 : s.width].astype(np.float32) + 0.5
    for obj in s.objects:
        x = _bounce(obj.x0 + obj.vx * t + 0.5 * obj.ax * t**2, s.width).astype(np.float32)[:, None, None]
        y = _bounce(obj.y0 + obj.vy * t + 0.5 * obj.ay * t**2, s.height).astype(np.float32)[:, None, None]
        angle = (obj.angle0 + obj.omega * t + 0.5 * obj.alpha * t**2).astype(np.float32)[:, None, None]
        size = (obj.size0 * np.exp(obj.growth * t)).astype(np.float32)[:, None, None]
        cos, sin = np.cos(angle), np.sin(angle)
        a = (cos * (xs - x) + sin * (ys - y)) / size  # the object's own frame, radius 1
        b = (-sin * (xs - x) + cos * (ys - y)) / size
        mask = _inside(obj, a, b)[..., None]  # (T, H, W, 1)
        colours = np.stack(
            [
                colour_turn((1.0, 1.0, 1.0), 2 * math.pi * obj.colour_rate * ti)
                @ (np.array(obj.colour, np.float32) - 128)
                + 128
                for ti in t
            ]
        )  # (T, 3)
        fill = np.broadcast_to(colours[:, None, None, :], frames.shape)
        amp, ka, kb, speed = obj.texture
        if amp > 0:  # a grating that moves, turns and scales with the object: darker and lighter bands
            band = np.sin(ka * a + kb * b + speed * t[:, None, None].astype(np.float32))[..., None]
            fill = fill * (1 + 0.5 * amp * band)
        frames = np.where(mask, fill, frames)
    if s.noise > 0:
        frames = frames + s.noise * np.random.default_rng(s.seed).standard_normal(
            (*frames.shape[:3], 1), dtype=np.float32
        )
    return np.clip(frames + 0.5, 0, 255).astype(np.uint8)


def synthesize_pretrain(
    out_dir: str | Path,
    videos: int = 1000,
    seed: int = 0,
    workers: int | None = None,
    stages: Sequence[int] | None = None,
) -> Path:
    """Write videos/pNNNNNN.mp4, all.txt (`<path> -1`) and scenes.jsonl (each video's stage and objects).

    Video i draws its scene from `np.random.default_rng([seed, i])`, so a larger set extends a smaller one.
    Returns: the path of all.txt.
    """
    stages = list(range(len(STAGES))) if stages is None else sorted(set(stages))
    if not stages or any(not 0 <= s < len(STAGES) for s in stages):
        raise ValueError(f"stages must be a non-empty subset of 0..{len(STAGES) - 1}")
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    codec = "libx264" if has_encoder("libx264") else "mpeg4"

    def make(index: int) -> tuple[str, str]:
        scene = sample_scene(np.random.default_rng([seed, index]), stages, odd_ok=codec == "libx264")
        rel = f"videos/p{index:06d}.mp4"
        encode_video(render_scene(scene), scene.fps, out / rel, codec)
        info = {"path": rel, "stage": STAGES[scene.stage], **{k: v for k, v in asdict(scene).items() if k != "stage"}}
        return f"{rel} -1\n", json.dumps(info) + "\n"

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        rows = list(pool.map(make, range(videos)))
    (out / "all.txt").write_text("".join(line for line, _ in rows))
    (out / "scenes.jsonl").write_text("".join(info for _, info in rows))
    log.info("wrote %d synthetic pretraining videos (%s, stages %s) to %s", videos, codec, stages, out)
    return out / "all.txt"
