"""Data variants for learnability.py: which property of a synthetic video the label names.

events     prep.synth's 8 "events" classes: every colour of the frame turns about one of four RGB
           axes, one way or the other
motion     prep.synth's 8 motion classes: the object moves, turns or grows, in time-reversed pairs
scene      8 whole-frame classes in time-reversed pairs, with a static object: brighten / darken,
           hue turns one way / the other, pan left / right, tilt up / down (the whole frame shifts on
           the torus); the brightness and hue sawtooth phases are uniform, so one frame cannot tell a pair apart
shape      the object's shape (6 classes), whatever it does: an appearance label
fg_colour  the object's dominant RGB channel (3 classes)
bg_colour  the background's dominant RGB channel (3 classes)
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from prep import synth

TASKS = ("events", "motion", "scene", "shape", "fg_colour", "bg_colour")
NUM_CLASSES = {"events": 8, "motion": 8, "scene": 8, "shape": len(synth.SHAPES), "fg_colour": 3, "bg_colour": 3}


def _scene_frames(params: synth.VideoParams, label: int, rng: np.random.Generator) -> np.ndarray:
    """The static-object video of `params` with scene class `label`'s whole-frame change applied."""
    phase, rate, theta0, omega = (
        rng.uniform(0, 1),
        rng.uniform(0.3, 0.5),
        rng.uniform(0, 2 * math.pi),
        rng.uniform(1.5, 3.0),
    )
    speed = rng.uniform(0.5, 0.9) * min(params.width, params.height)
    still = dataclasses.replace(params, vx=0.0, vy=0.0, omega=0.0, rate=0.0)
    frames = synth.render_video(still).astype(np.float32)
    sign = 1 if label % 2 == 0 else -1
    for i, t in enumerate(np.arange(params.num_frames) / params.fps):
        if label < 2:
            frames[i] *= 0.35 + 0.9 * ((phase + sign * rate * t) % 1.0)
        elif label < 4:
            frames[i] = (frames[i] - 128) @ synth.colour_turn((1.0, 1.0, 1.0), theta0 + sign * omega * t).T + 128
        else:
            frames[i] = np.roll(frames[i], int(round(sign * speed * t)), axis=1 if label < 6 else 0)
    return np.clip(frames, 0, 255).astype(np.uint8)


def video(task: str, index: int, split_seed: int, object_scale: float = 1.0) -> tuple[np.ndarray, int, int]:
    """Video `index` of split `split_seed` for `task`: uint8 (T, H, W, 3) frames, fps and label."""
    rng = np.random.default_rng([split_seed, index])
    params = synth.sample_params(rng, index % 8, kind="events" if task == "events" else "motion")
    params = dataclasses.replace(params, smin=params.smin * object_scale)
    if task == "scene":
        label = index % 8
        return _scene_frames(params, label, np.random.default_rng([split_seed, index, 1])), params.fps, label
    label = {
        "events": params.label,
        "motion": params.label,
        "shape": synth.SHAPES.index(params.shape),
        "fg_colour": int(np.argmax(params.foreground)),
        "bg_colour": int(np.argmax(np.add(*params.background))),
    }[task]
    return synth.render_video(params), params.fps, label
