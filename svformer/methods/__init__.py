"""Training methods behind the one loop: `Supervised`, `SVFormer` (and `MaskedVideo` pretraining).

`build_method(kind, ctx)` picks one: train uses `svformer` (or `supervised` when `ssl.enabled` is
false), pretrain uses `masked_video`.
"""

from __future__ import annotations

from svformer.methods.base import Batch, Context, Method, StepLogs
from svformer.methods.masked_video import MaskedVideo, build_pretrain_model
from svformer.methods.supervised import Supervised
from svformer.methods.svformer import SVFormer, svformer_loss

METHODS: dict[str, type[Method]] = {"supervised": Supervised, "svformer": SVFormer, "masked_video": MaskedVideo}


def build_method(kind: str, ctx: Context) -> Method:
    """The method named `kind` for this run."""
    return METHODS[kind](ctx)


__all__ = [
    "Batch",
    "Context",
    "METHODS",
    "MaskedVideo",
    "Method",
    "StepLogs",
    "SVFormer",
    "Supervised",
    "build_method",
    "build_pretrain_model",
    "svformer_loss",
]
