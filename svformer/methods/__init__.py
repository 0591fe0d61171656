"""Training methods behind the one loop, by their `train.method` name: `supervised`, `svformer`,
`fixmatch` (train) and `masked_video` (pretrain).

Adding a method: one module with a `Method` subclass decorated `@register("name")`, imported below
(or anywhere before `train` runs, e.g. from a test); `train.method=name` then runs it.
"""

from __future__ import annotations

from svformer.methods.base import METHODS, Batch, Context, Method, StepLogs, method_class, register
from svformer.methods.fixmatch import FixMatch, fixmatch_loss
from svformer.methods.masked_video import MaskedVideo
from svformer.methods.supervised import Supervised
from svformer.methods.svformer import SVFormer, svformer_loss


def build_method(ctx: Context) -> Method:
    """The method `ctx.cfg.train.method` names, for this run."""
    return method_class(ctx.cfg.train.method)(ctx)


__all__ = [
    "Batch",
    "Context",
    "FixMatch",
    "METHODS",
    "MaskedVideo",
    "Method",
    "StepLogs",
    "SVFormer",
    "Supervised",
    "build_method",
    "fixmatch_loss",
    "method_class",
    "register",
    "svformer_loss",
]
