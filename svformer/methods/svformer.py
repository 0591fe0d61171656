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
from svformer.methods.base import Context, StepLogs, param_dtype, register
from svformer.methods.semi_supervised import SemiSupervised, pseudo_label_stats, step_logs
from svformer.ssl.ema import EMATeacher, ema_decay_at
from svformer.ssl.losses import mix_loss, mixed_targets, pseudo_labels, supervised_loss, unlabeled_loss
from svformer.ssl.masks import make_mask, sample_beta
from svformer.views import strong_device_ops


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
    teacher: Callable[..., torch.Tensor],
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
        teacher: the EMA teacher (float32 weights, eval).
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

    with torch.no_grad(), teacher_autocast():
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
    stats, ratios = pseudo_label_stats(probs, hard, confident, unlabeled_labels)
    means = {"loss": loss, "loss_sup": loss_sup, "loss_unlabeled": loss_un, "loss_mix": loss_mix, **stats}
    return loss, step_logs({**means, "lambda": lam.float().mean()}, ratios)


@register("svformer")
class SVFormer(SemiSupervised):
    """Supervised warm-up for `train.warmup_steps`, then the SVFormer loss with an EMA teacher."""

    log_keys = {
        "losses": ("loss", "loss_sup", "loss_unlabeled", "loss_mix"),
        "pseudo-labels": ("mask_rate", "pseudo_acc", "pseudo_acc_confident", "confidence"),
    }

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.teacher: EMATeacher | None = None
        if self.warmup_steps == 0:
            self.teacher = EMATeacher(ctx.student_module)

    def unlabeled_step(self, labeled, unlabeled, unlabeled_labels) -> tuple[torch.Tensor, StepLogs]:
        cfg = self.ctx.cfg
        return svformer_loss(
            self.ctx.student,
            self.teacher,
            labeled,
            unlabeled,
            cfg.ssl,
            self.generator,
            cfg.model.num_classes,
            self.ctx.student_module.patch_size,
            unlabeled_labels=unlabeled_labels,
            teacher_autocast=self.ctx.autocast,
        )

    def after_step(self, step: int) -> None:
        if step >= self.warmup_steps:
            # DINO-style: teacher = m * teacher + (1 - m) * student, m from the schedule
            self.teacher.update(self.ctx.student_module, ema_decay_at(step - self.warmup_steps, self.ctx.cfg.ssl))
        elif step + 1 == self.warmup_steps:
            self.teacher = EMATeacher(self.ctx.student_module)  # warm-up ends: an exact copy of the student

    def saved_models(self) -> dict[str, nn.Module]:
        return {"teacher": self.teacher.module} if self.teacher is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        teacher = state.get("models", {}).get("teacher")
        if teacher is not None:
            if self.teacher is None:
                self.teacher = EMATeacher(self.ctx.student_module)
            self.teacher.load_state_dict(teacher)


__all__ = ["SVFormer", "mix_inputs", "svformer_loss"]
