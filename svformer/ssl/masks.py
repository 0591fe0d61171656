"""Token-mix masks (Tube TokenMix and its ablations) and a generator-driven Beta sampler.

A mask is bool (B, T, gh, gw) over the patch-token grid: True keeps the clip's own token, False takes
the partner's. Exact counts come from ranking random scores (argsort), so no loop over the batch.
"""

from __future__ import annotations

import torch

Ratio = float | torch.Tensor


def _counts(ratio: Ratio, batch: int, total: int) -> torch.Tensor:
    """int(ratio * total) per sample as a (B,) long tensor; float64 reproduces Python's int()."""
    r = torch.as_tensor(ratio, dtype=torch.float64).cpu().expand(batch)
    return (r * total).floor().clamp(0, total).long()


def _exact_random(batch: int, n: int, counts: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """bool (B, n) with exactly counts[i] True at uniformly random positions in row i."""
    scores = torch.rand(batch, n, generator=generator)
    ranks = scores.argsort(dim=1).argsort(dim=1)
    return ranks < counts[:, None]


def tube_mask(
    batch: int, frames: int, grid_hw: tuple[int, int], ratio: Ratio, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Tube mask: int(ratio * gh * gw) random spatial positions per clip, the same in every frame.

    Args:
        batch, frames: B and T.
        grid_hw: (gh, gw) patch grid.
        ratio: fraction kept from the clip itself, a float or a (B,) tensor (one lambda per clip).
    Returns:
        bool (B, T, gh, gw) on the CPU.
    """
    gh, gw = grid_hw
    spatial = _exact_random(batch, gh * gw, _counts(ratio, batch, gh * gw), generator)
    return spatial.view(batch, 1, gh, gw).expand(batch, frames, gh, gw).contiguous()


def token_mask(
    batch: int, frames: int, grid_hw: tuple[int, int], ratio: Ratio, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random tokens over the whole clip: int(ratio * T * gh * gw) True per clip. bool (B, T, gh, gw)."""
    gh, gw = grid_hw
    n = frames * gh * gw
    return _exact_random(batch, n, _counts(ratio, batch, n), generator).view(batch, frames, gh, gw)


def frame_mask(
    batch: int, frames: int, grid_hw: tuple[int, int], ratio: Ratio, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Whole frames: int(ratio * T) random frames True per clip. bool (B, T, gh, gw)."""
    gh, gw = grid_hw
    temporal = _exact_random(batch, frames, _counts(ratio, batch, frames), generator)
    return temporal.view(batch, frames, 1, 1).expand(batch, frames, gh, gw).contiguous()


MASKS = {"tube": tube_mask, "token": token_mask, "frame": frame_mask}


def make_mask(
    shape_name: str,
    batch: int,
    frames: int,
    grid_hw: tuple[int, int],
    ratio: Ratio,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Dispatch on `ssl.mask_shape`: tube, token or frame."""
    if shape_name not in MASKS:
        raise ValueError(f"mask shape must be one of {sorted(MASKS)}, not {shape_name!r}")
    return MASKS[shape_name](batch, frames, grid_hw, ratio, generator)


def _standard_gamma(alpha: float, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """n Gamma(alpha, 1) samples (float64) by Marsaglia-Tsang rejection, driven only by `generator`.

    torch's own Gamma/Beta samplers take no generator; this one is reproducible from a seed.
    For alpha < 1, Gamma(alpha) = Gamma(alpha + 1) * U^(1 / alpha).
    """
    boost = alpha < 1.0
    a = alpha + 1.0 if boost else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / (9.0 * d) ** 0.5
    out = torch.empty(n, dtype=torch.float64)
    pending = torch.arange(n)
    while pending.numel():  # acceptance rate >= 0.95, so a couple of rounds
        x = torch.randn(pending.numel(), generator=generator, dtype=torch.float64)
        u = torch.rand(pending.numel(), generator=generator, dtype=torch.float64)
        v = (1.0 + c * x) ** 3
        ok = (v > 0) & (u.log() < 0.5 * x * x + d - d * v + d * v.clamp_min(1e-300).log())
        out[pending[ok]] = d * v[ok]
        pending = pending[~ok]
    if boost:
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        out = out * u.pow(1.0 / alpha)
    return out


def sample_beta(alpha: float, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n samples of Beta(alpha, alpha) (float32, CPU) as X / (X + Y) with X, Y ~ Gamma(alpha)."""
    x = _standard_gamma(alpha, n, generator)
    y = _standard_gamma(alpha, n, generator)
    return (x / (x + y).clamp_min(1e-300)).float()
