"""Temporal Warping Augmentation (TWAug) for the strong view.

With probability 1/3 each keep all T frames, 2 frames or 4 frames (at random). Positions before the
first kept frame show it, positions after the last show the last, and each gap between consecutive
kept frames a < b is split at a random s with a <= s < b: positions a..s show a, s+1..b show b.
Every kept frame keeps its own position, so a keep-k warp shows exactly k distinct frames
(the released code can lose a kept frame; this does not).
"""

from __future__ import annotations

import torch

KEEP_CHOICES = (None, 2, 4)  # None: keep all frames


def temporal_warp_batch(batch: int, num_frames: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """One independent warp per clip: LongTensor (B, T) of source frame indices, monotone in t.

    For T < 4 a keep-k choice keeps min(k, T) frames.
    """
    T = num_frames
    pos = torch.arange(T).expand(batch, T)
    mode = torch.randint(len(KEEP_CHOICES), (batch,), generator=generator)
    keep_counts = torch.tensor([T if k is None else min(k, T) for k in KEEP_CHOICES])[mode]
    ranks = torch.rand(batch, T, generator=generator).argsort(dim=1).argsort(dim=1)
    kept = ranks < keep_counts[:, None]  # (B, T), k True per row
    # prev[t]: last kept frame <= t (-1 if none); nxt[t]: first kept frame >= t (T if none).
    prev = torch.where(kept, pos, -1).cummax(dim=1).values
    nxt = torch.where(kept, pos, T).flip(1).cummin(dim=1).values.flip(1)
    # One split per gap, drawn at the gap's left kept frame: s = a + floor(u * (b - a)) in [a, b).
    u = torch.rand(batch, T, generator=generator)
    a = prev.clamp_min(0)
    gap = (nxt - prev).clamp_min(1)
    split = a + (u.gather(1, a) * gap).long().clamp(max=gap - 1)
    inside = torch.where(pos <= split, prev, nxt)
    return torch.where(prev < 0, nxt, torch.where(nxt >= T, prev, inside))


def temporal_warp_indices(num_frames: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """TWAug for one clip: LongTensor (T,) of source frame indices (e.g. [0,0,0,4,4,4,4,4])."""
    return temporal_warp_batch(1, num_frames, generator)[0]


def apply_temporal_warp(clip: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Gather frames along T (dim -3) into a new tensor.

    Args:
        clip: (C, T, H, W) with indices (T,), or (B, C, T, H, W) with indices (B, T).
    """
    indices = indices.to(clip.device)
    if clip.dim() == 4:
        return clip.index_select(1, indices)
    return torch.take_along_dim(clip, indices[:, None, :, None, None], dim=2)
