"""The SVFormer semi-supervised method: EMA teacher, pseudo-labels, Tube TokenMix, temporal warping.

Modules: `masks` (tube/token/frame masks, Beta sampling), `warp` (TWAug), `losses` (pseudo-labels,
mixed targets, losses), `ema` (the teacher), `step` (one training iteration).
"""
from svformer.ssl.ema import EMATeacher, ema_decay_at
from svformer.ssl.losses import mix_loss, mixed_targets, pseudo_labels, supervised_loss, unlabeled_loss
from svformer.ssl.masks import frame_mask, make_mask, sample_beta, token_mask, tube_mask
from svformer.ssl.step import supervised_step, svformer_step
from svformer.ssl.warp import apply_temporal_warp, temporal_warp_batch, temporal_warp_indices

__all__ = [
    "EMATeacher", "ema_decay_at",
    "pseudo_labels", "mixed_targets", "supervised_loss", "unlabeled_loss", "mix_loss",
    "tube_mask", "token_mask", "frame_mask", "make_mask", "sample_beta",
    "svformer_step", "supervised_step",
    "temporal_warp_indices", "temporal_warp_batch", "apply_temporal_warp",
]
