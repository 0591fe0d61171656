"""Supervised-only training on the labeled stream: the baseline, and SVFormer's warm-up stage."""

from __future__ import annotations

import torch

from svformer.config import Config
from svformer.data import Stream, labeled_loader
from svformer.methods.base import Batch, Method, StepLogs, check_class_shards, param_dtype, register
from svformer.ssl.losses import supervised_loss
from svformer.views import normalize


def supervised_logs(loss: torch.Tensor) -> StepLogs:
    value = loss.detach()
    return StepLogs({"loss": value, "loss_sup": value})


def labeled_loss(student, labeled: dict, mean, std) -> torch.Tensor:
    """Cross-entropy of the student on a labeled batch {"video": uint8 (B, C, T, S, S), "label": (B,)}."""
    x_l = normalize(labeled["video"], mean, std)
    return supervised_loss(student(x_l.to(param_dtype(student))), labeled["label"])


@register("supervised")
class Supervised(Method):
    """Cross-entropy on labeled clips only (`train.method: supervised`)."""

    log_keys = {"losses": ("loss", "loss_sup")}

    @classmethod
    def check_data(cls, cfg: Config) -> int:
        return check_class_shards(cfg, ("labeled",))  # an epoch is a pass over the labeled set

    def open_streams(self, start_step: int) -> dict[str, Stream]:
        cfg, ctx = self.ctx.cfg, self.ctx
        return {"labeled": labeled_loader(cfg, ctx.rank, seed=cfg.train.seed, start_step=start_step)}

    def wants(self, step: int) -> tuple[str, ...]:
        return ("labeled",)

    def loss(self, batch: Batch, step: int) -> tuple[torch.Tensor, StepLogs]:
        loss = labeled_loss(self.ctx.student, batch["labeled"], self.ctx.cfg.data.mean, self.ctx.cfg.data.std)
        return loss, supervised_logs(loss)
