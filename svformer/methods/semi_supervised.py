"""What the semi-supervised methods (SVFormer, FixMatch) share: a supervised warm-up of
`train.warmup_steps` optimizer steps on the labeled stream, then a loss on labeled + unlabeled batches
(each unlabeled clip as a weak and a strong view), and the pseudo-label statistics they log."""

from __future__ import annotations

from abc import abstractmethod

import torch

from svformer.config import Config
from svformer.data import Stream, labeled_loader, unlabeled_loader
from svformer.methods.base import Batch, Method, StepLogs, check_class_shards
from svformer.methods.supervised import labeled_loss, supervised_logs
from svformer.views import normalize


class SemiSupervised(Method):
    """Supervised warm-up, then `unlabeled_step` on normalised labeled and weak/strong unlabeled clips."""

    log_keys = {
        "losses": ("loss", "loss_sup", "loss_unlabeled"),
        "pseudo-labels": ("mask_rate", "pseudo_acc", "pseudo_acc_confident", "confidence"),
    }

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.warmup_steps = ctx.cfg.train.warmup_steps

    @classmethod
    def check_data(cls, cfg: Config) -> int:
        return check_class_shards(cfg, ("labeled", "unlabeled"))  # an epoch: a pass over the labeled set

    def open_streams(self, start_step: int) -> dict[str, Stream]:
        cfg, ctx = self.ctx.cfg, self.ctx
        return {
            "labeled": labeled_loader(cfg, ctx.rank, seed=cfg.train.seed, start_step=start_step),
            "unlabeled": unlabeled_loader(cfg, ctx.rank, seed=cfg.train.seed, start_step=start_step),
        }

    def wants(self, step: int) -> tuple[str, ...]:
        return ("labeled",) if step < self.warmup_steps else ("labeled", "unlabeled")

    def loss(self, batch: Batch, step: int) -> tuple[torch.Tensor, StepLogs]:
        mean, std = self.ctx.cfg.data.mean, self.ctx.cfg.data.std
        if step < self.warmup_steps:
            loss = labeled_loss(self.ctx.student, batch["labeled"], mean, std)
            return loss, supervised_logs(loss)
        labeled, unlabeled = batch["labeled"], batch["unlabeled"]
        x_l = normalize(labeled["video"], mean, std)
        weak, strong = normalize(unlabeled["weak"], mean, std), normalize(unlabeled["strong"], mean, std)
        return self.unlabeled_step((x_l, labeled["label"]), (weak, strong), unlabeled["label"])

    @abstractmethod
    def unlabeled_step(
        self,
        labeled: tuple[torch.Tensor, torch.Tensor],
        unlabeled: tuple[torch.Tensor, torch.Tensor],
        unlabeled_labels: torch.Tensor,
    ) -> tuple[torch.Tensor, StepLogs]:
        """The loss of one step after the warm-up: (x_l, y_l), (weak, strong) normalised on the device;
        `unlabeled_labels` (-1 = unknown) only for the pseudo-label accuracy logs."""


def pseudo_label_stats(
    probs: torch.Tensor, hard: torch.Tensor, confident: torch.Tensor, unlabeled_labels: torch.Tensor | None
) -> tuple[dict[str, torch.Tensor], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """(means: mask_rate, confidence; ratios: pseudo_acc, pseudo_acc_confident when labels are given),
    detached device scalars: nothing is read back to the host here."""
    means = {"mask_rate": confident.float().mean(), "confidence": probs.max(dim=-1).values.mean()}
    ratios = {}
    if unlabeled_labels is not None:
        labels = unlabeled_labels.to(hard.device)
        known = labels >= 0
        correct = (hard == labels) & known
        ratios["pseudo_acc"] = (correct.sum().float(), known.sum().float())
        ratios["pseudo_acc_confident"] = ((correct & confident).sum().float(), (known & confident).sum().float())
    return means, ratios


def step_logs(means: dict[str, torch.Tensor], ratios: dict) -> StepLogs:
    """StepLogs of float32 0-dim detached scalars."""
    return StepLogs({k: v.detach().float().reshape(()) for k, v in means.items()}, ratios)
