"""The SVFormer method (SVFORMER.md section 4): supervised warm-up, then the EMA teacher labels weak views.

L = L_s + gamma1 * L_un + gamma2 * L_mix
  L_s   = CE(student(x_l), y_l)
  L_un  = mean(c * CE(student(strong'), argmax p)), p = softmax(teacher(weak)), c = max p >= delta
  L_mix = weighted loss of student(Tube-TokenMix(strong', strong'[idx], lambda)) vs mixed targets
strong' = the strong view after its device-side ops (`views.strong_device_ops`). The method owns the
teacher: it is created as an exact copy of the student when warm-up ends and moved towards the
student by EMA after every optimizer step. All of the method's randomness comes from its generator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager as ContextManager
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from svformer.config import SSLConfig
from svformer.data import Stream, labeled_loader, unlabeled_loader
from svformer.methods.base import Batch, Context, Method, StepLogs, param_dtype
from svformer.methods.supervised import Supervised, labeled_loss, supervised_logs
from svformer.ssl.ema import EMATeacher, ema_decay_at
from svformer.ssl.losses import mix_loss, mixed_targets, pseudo_labels, supervised_loss, unlabeled_loss
from svformer.ssl.masks import make_mask, sample_beta
from svformer.views import normalize, strong_device_ops


def mix_inputs(
    cfg: SSLConfig, batch_u: int, frames: int, grid: tuple[int, int], g: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw lambda ~ Beta(alpha, alpha), the token mask and the partner permutation (all on the CPU).

    Returns (mask bool (B_u, T, gh, gw), lam float32 (B_u,) = the realised fraction of own tokens,
    mix_index long (B_u,)).
    """
    draws = batch_u if cfg.mask_per_sample else 1
    lam = sample_beta(cfg.mix_alpha, draws, g)
    mask = make_mask(cfg.mask_shape, draws, frames, grid, lam, g).expand(batch_u, -1, -1, -1)
    # The mask holds int(lambda * n) tokens; the targets use the fraction actually kept.
    lam = mask.float().mean(dim=(1, 2, 3))
    mix_index = torch.randperm(batch_u, generator=g)
    return mask, lam, mix_index


def svformer_loss(
    student: Callable[..., torch.Tensor],
    teacher: Callable[..., torch.Tensor] | None,
    labeled: Sequence[torch.Tensor],
    unlabeled: Sequence[torch.Tensor],
    cfg: SSLConfig,
    g: torch.Generator | None,
    num_classes: int,
    patch_size: int,
    unlabeled_labels: torch.Tensor | None = None,
    teacher_autocast: Callable[[], ContextManager] = nullcontext,
) -> tuple[torch.Tensor, StepLogs]:
    """The SVFormer loss for one labeled + one unlabeled batch.

    Args:
        student: the trained network (train mode); inputs are cast to its parameter dtype.
        teacher: the EMA teacher (float32 weights, eval); ignored when cfg.teacher == "student"
            (FixMatch-style: the student labels its own weak views, without gradient).
        labeled: (x_l float (B_l, C, T, H, W) normalised, y_l long (B_l,)).
        unlabeled: (weak, strong) float (B_u, C, T, H, W) normalised; strong already warped/RandAugmented.
        cfg: the `ssl` config section.
        g: CPU generator for the device-side strong ops, lambda, masks and partners.
        num_classes: K. patch_size: token side in pixels.
        unlabeled_labels: optional long (B_u,), -1 = unknown; only for the pseudo-label accuracy logs.
        teacher_autocast: context for the teacher's forward (the student's autocast; its weights stay fp32).
    Returns:
        (loss float32 scalar with graph, StepLogs: loss, loss_sup, loss_unlabeled, loss_mix, mask_rate,
        confidence, lambda; ratios pseudo_acc / pseudo_acc_confident when labels are given).
    """
    x_l, y_l = labeled
    weak, strong = unlabeled
    b_l, b_u = x_l.shape[0], weak.shape[0]
    dtype = param_dtype(student)
    if b_u == 0:  # no unlabeled clips (data.unlabeled_ratio 0): the supervised loss alone
        return _supervised(student, x_l, y_l, dtype)

    with torch.no_grad():
        if cfg.teacher == "student":
            teacher_logits = student(weak.to(dtype))
        else:
            if teacher is None:
                raise ValueError("svformer_loss: ssl.teacher is ema but no teacher was given")
            with teacher_autocast():
                teacher_logits = teacher(weak.float())
    probs, hard, confident = pseudo_labels(teacher_logits, cfg.threshold)
    strong = strong_device_ops(strong, cfg, g)

    # One student forward for all three inputs (no BatchNorm, so batching them is exact): labeled,
    # strong, and the token-mixed strong clips. Unmixed rows keep all their own tokens (mask True).
    videos = [x_l, strong]
    lam = torch.ones(b_u)
    if cfg.mix:
        t, h, w = strong.shape[2:]
        grid = (h // patch_size, w // patch_size)
        mask, lam, mix_index = mix_inputs(cfg, b_u, t, grid, g)
        plain = b_l + b_u
        full_mask = torch.cat([torch.ones(plain, t, *grid, dtype=torch.bool), mask])
        full_index = torch.cat([torch.arange(plain), b_l + mix_index])  # partners among the strong rows
        videos.append(strong)
        logits = student(
            torch.cat(videos).to(dtype), mix_mask=full_mask.to(strong.device), mix_index=full_index.to(strong.device)
        )
    else:
        logits = student(torch.cat(videos).to(dtype))
    logits_l, logits_u, logits_mix = logits[:b_l], logits[b_l : b_l + b_u], logits[b_l + b_u :]

    loss_sup = supervised_loss(logits_l, y_l)
    loss_un = unlabeled_loss(logits_u, hard, confident)
    if cfg.mix:
        y_mix, weights = mixed_targets(
            probs, hard, confident, lam.to(probs.device), mix_index.to(probs.device), num_classes
        )
        loss_mix = mix_loss(logits_mix, y_mix, weights, cfg.mix_loss)
    else:
        loss_mix = loss_sup.new_zeros(())
    loss = loss_sup + cfg.lambda_unlabeled * loss_un + cfg.lambda_mix * loss_mix
    return loss, _logs(loss, loss_sup, loss_un, loss_mix, probs, hard, confident, lam, unlabeled_labels)


def _supervised(student, x_l: torch.Tensor, y_l: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, StepLogs]:
    loss = supervised_loss(student(x_l.to(dtype)), y_l)
    return loss, supervised_logs(loss)


def _logs(
    loss: torch.Tensor,
    loss_sup: torch.Tensor,
    loss_un: torch.Tensor,
    loss_mix: torch.Tensor,
    probs: torch.Tensor,
    hard: torch.Tensor,
    confident: torch.Tensor,
    lam: torch.Tensor,
    unlabeled_labels: torch.Tensor | None,
) -> StepLogs:
    """Detached device scalars; nothing is read back to the host here."""
    conf = confident.float()
    means = {
        "loss": loss,
        "loss_sup": loss_sup,
        "loss_unlabeled": loss_un,
        "loss_mix": loss_mix,
        "mask_rate": conf.mean(),
        "confidence": probs.max(dim=-1).values.mean(),
        "lambda": lam.float().mean(),
    }
    ratios = {}
    if unlabeled_labels is not None:
        labels = unlabeled_labels.to(hard.device)
        known = labels >= 0
        correct = (hard == labels) & known
        ratios["pseudo_acc"] = (correct.sum().float(), known.sum().float())
        ratios["pseudo_acc_confident"] = ((correct & confident).sum().float(), (known & confident).sum().float())
    return StepLogs({k: v.detach().float().reshape(()) for k, v in means.items()}, ratios)


class SVFormer(Method):
    """Supervised warm-up for `train.warmup_steps`, then the SVFormer loss with an EMA teacher."""

    name = "svformer"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.teacher: EMATeacher | None = None
        self.warmup_steps = ctx.cfg.train.warmup_steps
        if self._uses_teacher() and self.warmup_steps == 0:
            self.teacher = EMATeacher(ctx.student_module)

    def _uses_teacher(self) -> bool:
        return self.ctx.cfg.ssl.teacher == "ema"

    def open_streams(self, start_step: int) -> dict[str, Stream]:
        cfg, ctx = self.ctx.cfg, self.ctx
        return {
            "labeled": labeled_loader(cfg, ctx.rank, seed=cfg.train.seed, start_step=start_step),
            "unlabeled": unlabeled_loader(cfg, ctx.rank, seed=cfg.train.seed, start_step=start_step),
        }

    def wants(self, step: int) -> tuple[str, ...]:
        return ("labeled",) if step < self.warmup_steps else ("labeled", "unlabeled")

    def loss(self, batch: Batch, step: int) -> tuple[torch.Tensor, StepLogs]:
        cfg = self.ctx.cfg
        mean, std = cfg.data.mean, cfg.data.std
        if step < self.warmup_steps:
            loss = labeled_loss(self.ctx.student, batch["labeled"], mean, std)
            return loss, supervised_logs(loss)
        labeled, unlabeled = batch["labeled"], batch["unlabeled"]
        x_l = normalize(labeled["video"], mean, std)
        weak, strong = normalize(unlabeled["weak"], mean, std), normalize(unlabeled["strong"], mean, std)
        return svformer_loss(
            self.ctx.student,
            self.teacher,
            (x_l, labeled["label"]),
            (weak, strong),
            cfg.ssl,
            self.generator,
            cfg.model.num_classes,
            self.ctx.student_module.patch_size,
            unlabeled_labels=unlabeled["label"],
            teacher_autocast=self.ctx.autocast,
        )

    def after_step(self, step: int) -> None:
        if not self._uses_teacher():
            return
        if step >= self.warmup_steps:
            # DINO-style: teacher = m * teacher + (1 - m) * student, m from the schedule
            self.teacher.update(self.ctx.student_module, ema_decay_at(step - self.warmup_steps, self.ctx.cfg.ssl))
        elif step + 1 == self.warmup_steps:
            self.teacher = EMATeacher(self.ctx.student_module)  # warm-up ends: an exact copy of the student

    def eval_models(self) -> dict[str, nn.Module]:
        models = {"student": self.ctx.student_module}
        if self.teacher is not None:
            models["teacher"] = self.teacher.module
        return models

    def state_dict(self) -> dict[str, Any]:
        return {"teacher": self.teacher.state_dict()} if self.teacher is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("teacher") is not None and self._uses_teacher():
            if self.teacher is None:
                self.teacher = EMATeacher(self.ctx.student_module)
            self.teacher.load_state_dict(state["teacher"])


__all__ = ["SVFormer", "Supervised", "mix_inputs", "svformer_loss"]
