"""The SVFormer method's pure parts: tube/token/frame masks, temporal warping, pseudo-labels and losses,
the EMA teacher. The method object that uses them is `svformer.methods.SVFormer`.
"""

from svformer.ssl.ema import EMATeacher, ema_decay_at
from svformer.ssl.losses import mix_loss, mixed_targets, pseudo_labels, supervised_loss, unlabeled_loss
from svformer.ssl.masks import frame_mask, make_mask, sample_beta, token_mask, tube_mask
from svformer.ssl.warp import apply_temporal_warp, temporal_warp_batch, temporal_warp_indices

__all__ = [
    "EMATeacher",
    "ema_decay_at",
    "pseudo_labels",
    "mixed_targets",
    "supervised_loss",
    "unlabeled_loss",
    "mix_loss",
    "tube_mask",
    "token_mask",
    "frame_mask",
    "make_mask",
    "sample_beta",
    "temporal_warp_indices",
    "temporal_warp_batch",
    "apply_temporal_warp",
]
