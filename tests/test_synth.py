"""prep.synth: classes that only time tells apart, and a decodable, balanced demo dataset."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from prep.synth import MOTION_CLASSES as CLASSES
from prep.synth import object_state, render_video, sample_params


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: max distance between the empirical CDFs."""
    grid = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


@pytest.fixture(scope="module")
def params_by_class() -> dict[int, list]:
    """800 videos' parameters per class, all classes drawn from the same seeds."""
    return {
        label: [sample_params(np.random.default_rng([7, seed]), label) for seed in range(800)]
        for label in range(len(CLASSES))
    }


def _normalised_state(params: list, last: bool) -> np.ndarray:
    """(N, 4) states in [0, 1): x / W, y / H, angle / 2pi, log-size phase; first or last frame."""
    rows = []
    for p in params:
        t = (p.num_frames - 1) / p.fps if last else 0.0
        x, y, angle, u = object_state(p, t)
        rows.append((x / p.width, y / p.height, angle / (2 * math.pi), u))
    return np.array(rows, dtype=np.float64)


def test_first_frame_is_identical_for_every_class_with_the_same_seed():
    reference = None
    for label in range(len(CLASSES)):
        frame = render_video(sample_params(np.random.default_rng([3, 5]), label))[0]
        if reference is None:
            reference = frame
        assert np.array_equal(frame, reference), CLASSES[label]


@pytest.mark.parametrize("last", [False, True], ids=["first_frame", "last_frame"])
def test_object_state_distribution_is_the_same_in_every_class(params_by_class: dict[int, list], last: bool):
    # Two-sample KS critical value for n = m = 800 at alpha = 0.001: 1.95 * sqrt(2 / 800) = 0.098.
    states = {label: _normalised_state(params, last) for label, params in params_by_class.items()}
    uniform = np.random.default_rng(0).random(800)
    for label, s in states.items():
        for dim in range(4):
            assert _ks(s[:, dim], states[0][:, dim]) < 0.098, (CLASSES[label], dim)
            assert _ks(s[:, dim], uniform) < 0.098, (CLASSES[label], dim)


@pytest.mark.parametrize("forward, backward", [(0, 1), (2, 3), (4, 5), (6, 7)])
def test_each_class_pair_is_the_time_reversal_of_the_other(forward: int, backward: int):
    p = sample_params(np.random.default_rng([1, 2]), forward)
    duration = (p.num_frames - 1) / p.fps
    x1, y1, a1, u1 = object_state(p, duration)
    q = dataclasses.replace(
        p,
        label=backward,
        x0=float(x1),
        y0=float(y1),
        angle0=float(a1),
        u0=float(u1),
        vx=-p.vx,
        vy=-p.vy,
        omega=-p.omega,
        rate=-p.rate,
    )
    assert q == dataclasses.replace(
        sample_params(np.random.default_rng([1, 2]), backward), x0=q.x0, y0=q.y0, angle0=q.angle0, u0=q.u0
    )
    t = np.linspace(0, duration, p.num_frames)
    for fwd, bwd, period in zip(object_state(p, t), object_state(q, duration - t), (p.width, p.height, 2 * math.pi, 1)):
        gap = np.abs(fwd - bwd)
        assert np.all(np.minimum(gap, period - gap) < 1e-6)


@pytest.mark.parametrize("label, axis, sign", [(0, 1, 1), (1, 1, -1), (2, 0, 1), (3, 0, -1)])
def test_rendered_object_moves_in_the_direction_its_class_names(label: int, axis: int, sign: int):
    p = dataclasses.replace(sample_params(np.random.default_rng([0, 9]), label), noise=0.0)
    video = render_video(p).astype(np.int32)
    fg = np.array(p.foreground).round().astype(np.int32)
    # Circular mean of the object's pixel coordinates (the frame is a torus) in frames 0 and 1.
    positions = []
    for frame in video[:2]:
        coords = np.nonzero(np.abs(frame - fg).sum(-1) <= 3)[axis]
        period = frame.shape[axis]
        angle = np.angle(np.exp(2j * np.pi * coords / period).mean())
        positions.append(angle / (2 * np.pi) * period)
    step = (positions[1] - positions[0] + frame.shape[axis] / 2) % frame.shape[axis] - frame.shape[axis] / 2
    expected = (p.vx if axis == 1 else p.vy) / p.fps
    assert sign * step > 0
    assert step == pytest.approx(expected, abs=1.0)


def test_synth_writes_balanced_list_classes_and_decodable_videos(demo_videos: Path):
    classes = (demo_videos / "classes.txt").read_text().splitlines()
    assert classes == CLASSES
    lines = (demo_videos / "all.txt").read_text().splitlines()
    assert len(lines) == 8 * 4
    labels = [int(line.rsplit(" ", 1)[1]) for line in lines]
    assert Counter(labels) == {label: 4 for label in range(8)}
    sizes = []
    for index, line in enumerate(lines):
        rel, label = line.rsplit(" ", 1)
        params = sample_params(np.random.default_rng([0, index]), int(label))
        with av.open(str(demo_videos / rel)) as container:
            stream = container.streams.video[0]
            frames = [f for f in container.decode(stream)]
            assert stream.codec_context.name == "h264"
        assert len(frames) == params.num_frames
        assert (frames[0].width, frames[0].height) == (params.width, params.height)
        assert float(stream.average_rate) == params.fps
        assert 1.5 <= params.num_frames / params.fps <= 4.05
        sizes.append((params.width, params.height))
    assert any(w % 2 and h % 2 for w, h in sizes), "the demo set includes odd frame sizes"


def _turn_sign(frames: np.ndarray, axis: np.ndarray) -> float:
    """Median sign of each pixel's colour turn about `axis` (through mid-grey) from frame 0 to frame 1."""
    a = frames[0].reshape(-1, 3).astype(np.float64) - 128
    b = frames[1].reshape(-1, 3).astype(np.float64) - 128
    inside = (frames[:2].reshape(2, -1, 3).min(axis=(0, 2)) > 5) & (frames[:2].reshape(2, -1, 3).max(axis=(0, 2)) < 250)
    return float(np.median(np.sign(np.cross(a, b) @ axis)[inside]))


def test_events_pairs_share_the_first_frame_and_turn_opposite_ways_about_their_axis():
    from prep.synth import EFFECT_AXES, EFFECTS, EVENT_CLASSES

    assert len(EVENT_CLASSES) == 2 * len(EFFECTS) == 8
    for seed in range(4):
        videos = [
            render_video(sample_params(np.random.default_rng([4, seed]), label, kind="events")) for label in range(8)
        ]
        for k, effect in enumerate(EFFECTS):
            forward, backward = videos[2 * k], videos[2 * k + 1]
            assert np.array_equal(forward[0], backward[0]) and not np.array_equal(forward[-1], backward[-1])
            axis = np.asarray(EFFECT_AXES[effect]) / np.linalg.norm(EFFECT_AXES[effect])
            assert _turn_sign(forward, axis) == 1.0 and _turn_sign(backward, axis) == -1.0, (effect, seed)
            # A turn leaves each colour's component along the axis alone (up to clipping and noise).
            along = (forward.reshape(len(forward), -1, 3).astype(np.float64) - 128) @ axis
            assert np.abs(along[-1] - along[0]).mean() < 6, effect


def test_events_phase_is_uniform_at_every_frame_in_both_directions():
    from prep.synth import effect_phase

    uniform = np.random.default_rng(0).random(800)
    for label in range(8):
        params = [sample_params(np.random.default_rng([9, seed]), label, kind="events") for seed in range(800)]
        for last in (False, True):
            phases = np.array([effect_phase(p, (p.num_frames - 1) / p.fps if last else 0.0) for p in params])
            assert _ks(phases, uniform) < 0.098, (label, last)


def test_motion_parameters_do_not_depend_on_the_events_kind_existing():
    # The events draws come after every motion draw: the motion demo's videos are unchanged.
    a = sample_params(np.random.default_rng([1, 2]), 3)
    b = sample_params(np.random.default_rng([1, 2]), 3, kind="events")
    assert (a.x0, a.y0, a.fps, a.num_frames, a.foreground) == (b.x0, b.y0, b.fps, b.num_frames, b.foreground)
    assert (
        a.effect == ""
        and b.effect == "red_axis"
        and b.effect_rate < 0
        and (b.vx, b.vy, b.omega, b.rate) == (0, 0, 0, 0)
    )
    with pytest.raises(ValueError, match="unknown kind"):
        sample_params(np.random.default_rng(0), 0, kind="colour")
