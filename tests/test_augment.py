"""Video transforms: shapes, crop semantics, identical ops on every frame, purity."""

from __future__ import annotations

import pytest
import torch

from svformer.config import SSLConfig
from svformer.randaugment import OP_NAMES, rand_augment
from svformer.ssl import apply_temporal_warp
from svformer.views import channel_dropout, normalize, train_view, weak_strong_views
from svformer.views import test_views as make_test_views


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def coordinate_clip(t: int = 4, h: int = 24, w: int = 36) -> torch.Tensor:
    """float (3, T, H, W) whose value encodes (frame, y, x): 10000 t + 100 y + x."""
    tt, yy, xx = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    return (10000 * tt + 100 * yy + xx).float().expand(3, t, h, w).clone()


def random_clip(t: int = 4, h: int = 40, w: int = 56, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (3, t, h, w), dtype=torch.uint8, generator=gen(seed))


def repeated_frame_clip(t: int = 4, h: int = 40, w: int = 56) -> torch.Tensor:
    return random_clip(1, h, w).expand(3, t, h, w).clone()


def frames_identical(clip: torch.Tensor) -> bool:
    return bool((clip == clip[:, :1]).all())


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_train_view_shape_dtype_and_input_unchanged(dtype):
    clip = random_clip() if dtype == torch.uint8 else random_clip().float() / 255
    before = clip.clone()
    out = train_view(clip, 32, [36, 48], True, gen())
    assert out.shape == (3, 4, 32, 32) and out.dtype == dtype
    assert torch.equal(clip, before)


def test_train_view_without_scaling_is_an_exact_crop_of_every_frame():
    clip = coordinate_clip()
    flips = set()
    for seed in range(20):
        out = train_view(clip, 16, [24, 24], True, gen(seed))  # short side 24 -> 24: no resize
        x_left, x_right = out[0, 0, 0, 0] % 100, out[0, 0, 0, -1] % 100
        flipped = bool(x_left > x_right)
        flips.add(flipped)
        top, left = int(out[0, 0, 0, 0] // 100 % 100), int(min(x_left, x_right))
        expected = clip[:, :, top : top + 16, left : left + 16]
        assert torch.equal(out, expected.flip(-1) if flipped else expected)
    assert flips == {True, False}


def test_train_view_never_flips_when_hflip_is_off():
    clip = coordinate_clip()
    for seed in range(10):
        out = train_view(clip, 16, [24, 24], False, gen(seed))
        assert out[0, 0, 0, 0] < out[0, 0, 0, -1]


def test_train_view_applies_the_same_crop_to_every_frame():
    assert frames_identical(train_view(repeated_frame_clip(), 32, [36, 48], True, gen(3)))
    clip = random_clip(t=3)
    out = train_view(clip, 32, [36, 48], True, gen(5))
    for t in range(3):  # a one-frame clip with the same seed draws the same crop
        assert torch.equal(out[:, t : t + 1], train_view(clip[:, t : t + 1], 32, [36, 48], True, gen(5)))


@pytest.mark.parametrize("op", OP_NAMES)
def test_rand_augment_op_is_identical_on_every_frame_and_pure(op):
    clip = repeated_frame_clip(t=3, h=24, w=24)
    before = clip.clone()
    out = rand_augment(clip, 1, 9.0, 0.5, gen(1), ops=(op,))
    assert out.shape == clip.shape and out.dtype == torch.uint8
    assert frames_identical(out)
    assert torch.equal(clip, before)


def test_rand_augment_changes_the_clip_and_works_on_float():
    clip = random_clip(t=2, h=24, w=24)
    assert not torch.equal(rand_augment(clip, 3, 9.0, 0.5, gen(2)), clip)
    out = rand_augment(clip.float() / 255, 3, 9.0, 0.5, gen(2))
    assert out.dtype == torch.float32 and out.min() >= 0 and out.max() <= 1


def test_strong_view_is_the_weak_crop_when_no_strong_ops():
    clip = random_clip()
    cfg = SSLConfig(temporal_warp=False, strong_ops="none")
    weak, strong = weak_strong_views(clip, 32, [36, 48], True, cfg, gen(4))
    assert torch.equal(weak, strong) and weak.data_ptr() != strong.data_ptr()
    assert torch.equal(weak, train_view(clip, 32, [36, 48], True, gen(4)))


def test_strong_view_with_warp_shows_weak_frames_in_order():
    clip = random_clip(t=8)
    cfg = SSLConfig(temporal_warp=True, strong_ops="none")
    for seed in range(5):
        weak, strong = weak_strong_views(clip, 32, [36, 48], True, cfg, gen(seed))
        src = [next(i for i in range(8) if torch.equal(strong[:, t], weak[:, i])) for t in range(8)]
        assert src == sorted(src)
        assert torch.equal(strong, apply_temporal_warp(weak, torch.tensor(src)))


def test_strong_view_without_warp_keeps_identical_frames_identical():
    clip = repeated_frame_clip()
    before = clip.clone()
    cfg = SSLConfig(temporal_warp=False, strong_ops="randaugment", randaugment_n=4)
    weak, strong = weak_strong_views(clip, 32, [36, 48], True, cfg, gen(6))
    assert frames_identical(weak) and frames_identical(strong)
    assert strong.shape == weak.shape == (3, 4, 32, 32)
    assert torch.equal(clip, before)


def test_test_views_three_crops_move_along_the_long_side():
    wide = coordinate_clip(h=24, w=40)
    views = make_test_views(wide, 24, 24, 3)
    assert views.shape == (3, 3, 4, 24, 24)
    assert [int(v[0, 0, 0, 0]) for v in views] == [0, 8, 16]  # left, centre, right: x0 = 0, 8, 16
    tall = coordinate_clip(h=40, w=24)
    assert [int(v[0, 0, 0, 0]) for v in make_test_views(tall, 24, 24, 3)] == [0, 800, 1600]  # y0 = 0, 8, 16
    centre = make_test_views(coordinate_clip(h=30, w=40), 30, 20, 1)
    assert centre.shape == (1, 3, 4, 20, 20) and int(centre[0, 0, 0, 0, 0]) == 5 * 100 + 10


def test_test_views_resize_the_short_side_and_keep_dtype():
    clip = random_clip(h=48, w=64)
    before = clip.clone()
    views = make_test_views(clip, 24, 24, 3)
    assert views.shape == (3, 3, 4, 24, 24) and views.dtype == torch.uint8
    assert torch.equal(clip, before)
    with pytest.raises(ValueError):
        make_test_views(clip, 24, 24, 2)


def test_normalize_is_per_channel_on_any_leading_dims():
    batch = torch.full((2, 5, 3, 2, 4, 4), 255, dtype=torch.uint8)
    mean, std = [0.5, 0.25, 0.0], [0.5, 0.25, 1.0]
    out = normalize(batch, mean, std)
    assert out.dtype == torch.float32 and out.shape == batch.shape
    assert torch.allclose(out[0, 0, :, 0, 0, 0], torch.tensor([1.0, 3.0, 1.0]))
    assert torch.allclose(normalize(batch[0, 0], mean, std), out[0, 0])


def test_channel_dropout_zeroes_whole_channels_and_rescales():
    batch = torch.rand(200, 3, 2, 4, 4) + 0.5
    before = batch.clone()
    out = channel_dropout(batch, 0.2, gen(7))
    assert torch.equal(batch, before)
    ratio = out / batch
    dropped = (ratio == 0).flatten(2)
    kept = torch.isclose(ratio, torch.tensor(1.25)).flatten(2)
    assert (dropped.all(-1) | kept.all(-1)).all()  # each (clip, channel) is all dropped or all kept
    assert 0.14 < dropped.all(-1).float().mean() < 0.26
    assert torch.equal(channel_dropout(batch, 0.0, gen()), batch)
    assert torch.equal(channel_dropout(batch, 0.2, gen(7)), out)
