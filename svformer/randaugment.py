"""RandAugment over a video clip: the same ops, with the same parameters, on every frame.

The strong view of the paper (timm's `rand-m9-n5-mstd0.5` in the community fork). Ops run on the
(T, C, H, W) frame stack with `torchvision.transforms.v2.functional`, so one call covers all frames.
Ops that depend on image statistics (AutoContrast, Equalize, Contrast) compute them over the
whole clip, not per frame, so the clip does not flicker.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torchvision.transforms.v2.functional as TF
from einops import rearrange
from torchvision.transforms import InterpolationMode

# Largest strength of each op at magnitude 10 (timm's RandAugment ranges).
_MAX_ROTATE_DEG = 30.0
_MAX_ENHANCE = 0.9  # colour/contrast/brightness/sharpness factor 1 +- 0.9
_MAX_SHEAR = 0.3  # shear factor (tan of the angle)
_MAX_TRANSLATE = 0.45  # fraction of the image side
_MAX_POSTERIZE_DROP = 4  # bits removed at magnitude 10 (8 -> 4 bits)

# An op takes (frames (T, C, H, W), level in [0, 1], sign +-1.0) and returns new frames.
Op = Callable[[torch.Tensor, float, float], torch.Tensor]


def _max_value(x: torch.Tensor) -> float:
    return 255.0 if x.dtype == torch.uint8 else 1.0


def _fill(x: torch.Tensor) -> list[float]:
    # Mid-grey borders for geometric ops, as timm does.
    return [128.0 if x.dtype == torch.uint8 else 0.5] * x.shape[-3]


def _clip_level(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Apply a statistics-based op to the clip tiled into one wide image (clip-level statistics)."""
    wide = rearrange(x, "t c h w -> c h (t w)")
    return rearrange(fn(wide), "c h (t w) -> t c h w", t=x.shape[0])


def _affine(x: torch.Tensor, **kwargs) -> torch.Tensor:
    params = dict(angle=0.0, translate=[0, 0], scale=1.0, shear=[0.0, 0.0])
    params.update(kwargs)
    return TF.affine(x, **params, interpolation=InterpolationMode.BILINEAR, fill=_fill(x))


def _solarize(x: torch.Tensor, level: float, sign: float) -> torch.Tensor:
    # By hand: torchvision rejects a threshold above the max value, which level 0 (identity) needs.
    top = _max_value(x)
    threshold = (1.0 - level) * (top + (1.0 if x.dtype == torch.uint8 else 0.0))
    return torch.where(x >= threshold, (top - x.float()).to(x.dtype), x)


def _posterize(x: torch.Tensor, level: float, sign: float) -> torch.Tensor:
    return TF.posterize(x, 8 - int(level * _MAX_POSTERIZE_DROP))


def _enhance(fn: Callable[[torch.Tensor, float], torch.Tensor], clip_stats: bool) -> Op:
    def op(x: torch.Tensor, level: float, sign: float) -> torch.Tensor:
        factor = max(0.0, 1.0 + sign * level * _MAX_ENHANCE)
        if clip_stats:
            return _clip_level(lambda img: fn(img, factor), x)
        return fn(x, factor)

    return op


OPS: dict[str, Op] = {
    "AutoContrast": lambda x, level, sign: _clip_level(TF.autocontrast, x),
    "Equalize": lambda x, level, sign: _clip_level(TF.equalize, x),
    "Rotate": lambda x, level, sign: _affine(x, angle=sign * level * _MAX_ROTATE_DEG),
    "Solarize": _solarize,
    "Color": _enhance(TF.adjust_saturation, clip_stats=False),
    "Posterize": _posterize,
    "Contrast": _enhance(TF.adjust_contrast, clip_stats=True),
    "Brightness": _enhance(TF.adjust_brightness, clip_stats=False),
    "Sharpness": _enhance(TF.adjust_sharpness, clip_stats=False),
    "ShearX": lambda x, level, sign: _affine(x, shear=[math.degrees(math.atan(sign * level * _MAX_SHEAR)), 0.0]),
    "ShearY": lambda x, level, sign: _affine(x, shear=[0.0, math.degrees(math.atan(sign * level * _MAX_SHEAR))]),
    "TranslateX": lambda x, level, sign: _affine(x, translate=[round(sign * level * _MAX_TRANSLATE * x.shape[-1]), 0]),
    "TranslateY": lambda x, level, sign: _affine(x, translate=[0, round(sign * level * _MAX_TRANSLATE * x.shape[-2])]),
}
OP_NAMES = tuple(OPS)


def rand_augment(
    clip: torch.Tensor,
    n: int,
    magnitude: float,
    magnitude_std: float,
    g: torch.Generator | None = None,
    ops: tuple[str, ...] = OP_NAMES,
    prob: float = 1.0,
) -> torch.Tensor:
    """RandAugment one clip with ops shared by all its frames.

    Args:
        clip: uint8 (0-255) or float (0-1) video, (C, T, H, W). Not modified.
        n: ops applied in sequence, each drawn uniformly from `ops` (with replacement, as timm).
        magnitude: strength on the 0-10 scale.
        magnitude_std: std of the Gaussian noise added to the magnitude for each op (0: fixed).
        g: generator for op choice, magnitude noise and signs.
        ops: names from `OPS` to draw from.
        prob: probability that each drawn op is applied (timm's RandAugment uses 0.5; 1.0 applies all n).
    Returns:
        A new clip of the same shape and dtype.
    """
    choice = torch.randint(len(ops), (n,), generator=g).tolist()
    noise = torch.randn(n, generator=g).tolist()
    signs = torch.rand(n, generator=g).tolist()
    applied = (torch.rand(n, generator=g) < prob).tolist()  # drawn even at prob 1: same stream either way
    frames = rearrange(clip, "c t h w -> t c h w")
    for k in range(n):
        if not applied[k]:
            continue
        m = magnitude + magnitude_std * noise[k] if magnitude_std > 0 else magnitude
        level = min(max(m, 0.0), 10.0) / 10.0
        frames = OPS[ops[choice[k]]](frames, level, 1.0 if signs[k] < 0.5 else -1.0)
    out = rearrange(frames, "t c h w -> c t h w")
    return out.clone() if out.data_ptr() == clip.data_ptr() else out
