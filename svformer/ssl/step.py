"""One SVFormer training iteration (loss only: the trainer owns backward, the optimizer and the EMA update).

L = L_s + gamma1 * L_un + gamma2 * L_mix (SVFORMER.md section 4):
  L_s   = CE(student(x_l), y_l)
  L_un  = mean(c * CE(student(strong'), argmax p)), p = softmax(teacher(weak)), c = max p >= delta
  L_mix = weighted loss of student(Tube-TokenMix(strong', strong'[idx], lambda)) vs mixed targets
strong' = channel_dropout(strong) when ssl.strong_ops is dropout/both. All randomness comes from `g`.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from svformer.augment import channel_dropout
from svformer.config import SSLConfig
from svformer.ssl.ema import EMATeacher
from svformer.ssl.losses import mix_loss, mixed_targets, pseudo_labels, supervised_loss, unlabeled_loss
from svformer.ssl.masks import make_mask, sample_beta

Batch = Sequence[torch.Tensor]


def _param_dtype(model: nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


def _patch_size(model: nn.Module) -> int:
    """The model's patch side (`model.patch_size`, also behind a `.module` wrapper such as DeepSpeed's)."""
    for m in (model, getattr(model, "module", None)):
        if m is not None and isinstance(getattr(m, "patch_size", None), int):
            return m.patch_size
    raise ValueError("svformer_step: pass patch_size= (the student has no integer .patch_size)")


def supervised_step(student: nn.Module, labeled: Batch) -> tuple[torch.Tensor, dict[str, float]]:
    """Warm-up stage / supervised baseline: (CE loss, logs {loss, loss_sup}) on (x_l float normalised, y_l)."""
    x_l, y_l = labeled
    loss = supervised_loss(student(x_l.to(_param_dtype(student))), y_l)
    value = float(loss.detach())
    return loss, {"loss": value, "loss_sup": value}


def _mix_inputs(cfg: SSLConfig, batch_u: int, frames: int, grid: tuple[int, int],
                g: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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


def svformer_step(student: nn.Module, teacher: EMATeacher | nn.Module | None, labeled: Batch, unlabeled: Batch,
                  cfg: SSLConfig, g: torch.Generator | None, num_classes: int, patch_size: int | None = None,
                  unlabeled_labels: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The SVFormer loss for one labeled + one unlabeled batch.

    Args:
        student: the trained network (train mode); inputs are cast to its parameter dtype.
        teacher: the EMA teacher (float32, eval); ignored when cfg.teacher == "student" (FixMatch-style:
            the student labels its own weak views, without gradient).
        labeled: (x_l float (B_l, C, T, H, W) normalised, y_l long (B_l,)).
        unlabeled: (weak, strong) float (B_u, C, T, H, W) normalised; strong already warped/RandAugmented.
        cfg: the `ssl` config section.
        g: CPU generator for channel dropout, lambda, masks and partners.
        num_classes: K.
        patch_size: token side in pixels; default `student.patch_size`.
        unlabeled_labels: optional long (B_u,), -1 = unknown; only for the pseudo-label accuracy logs.
    Returns:
        (loss float32 scalar with graph, logs: loss, loss_sup, loss_unlabeled, loss_mix, mask_rate,
        confidence, lambda, and pseudo_acc / pseudo_acc_confident when known labels allow).
    """
    x_l, y_l = labeled
    weak, strong = unlabeled
    b_l, b_u = x_l.shape[0], weak.shape[0]
    if b_u == 0:  # no unlabeled clips (data.unlabeled_ratio 0): the supervised loss alone
        return supervised_step(student, labeled)
    dtype = _param_dtype(student)

    with torch.no_grad():
        if cfg.teacher == "student":
            teacher_logits = student(weak.to(dtype))
        else:
            if teacher is None:
                raise ValueError("svformer_step: ssl.teacher is ema but no teacher was given")
            teacher_logits = teacher(weak.float())
    probs, hard, confident = pseudo_labels(teacher_logits, cfg.threshold)

    if cfg.strong_ops in ("dropout", "both"):
        strong = channel_dropout(strong, cfg.channel_dropout, g)

    # One student forward for all three inputs (no BatchNorm, so batching them is exact): labeled,
    # strong, and the token-mixed strong clips. Unmixed rows keep all their own tokens (mask True).
    videos = [x_l, strong]
    lam = torch.ones(b_u)
    if cfg.mix:
        p = patch_size or _patch_size(student)
        t, h, w = strong.shape[2:]
        mask, lam, mix_index = _mix_inputs(cfg, b_u, t, (h // p, w // p), g)
        plain = b_l + b_u
        full_mask = torch.cat([torch.ones(plain, t, h // p, w // p, dtype=torch.bool), mask])
        full_index = torch.cat([torch.arange(plain), b_l + mix_index])  # partners among the strong rows
        videos.append(strong)
        logits = student(torch.cat(videos).to(dtype), mix_mask=full_mask.to(strong.device),
                         mix_index=full_index.to(strong.device))
    else:
        logits = student(torch.cat(videos).to(dtype))
    logits_l, logits_u, logits_mix = logits[:b_l], logits[b_l:b_l + b_u], logits[b_l + b_u:]

    loss_sup = supervised_loss(logits_l, y_l)
    loss_un = unlabeled_loss(logits_u, hard, confident)
    if cfg.mix:
        lam_dev = lam.to(probs.device)
        y_mix, weights = mixed_targets(probs, hard, confident, lam_dev, mix_index.to(probs.device), num_classes)
        loss_mix = mix_loss(logits_mix, y_mix, weights, cfg.mix_loss)
    else:
        loss_mix = loss_sup.new_zeros(())
    loss = loss_sup + cfg.lambda_unlabeled * loss_un + cfg.lambda_mix * loss_mix
    return loss, _logs(loss, loss_sup, loss_un, loss_mix, probs, hard, confident, lam, unlabeled_labels)


def _logs(loss: torch.Tensor, loss_sup: torch.Tensor, loss_un: torch.Tensor, loss_mix: torch.Tensor,
          probs: torch.Tensor, hard: torch.Tensor, confident: torch.Tensor, lam: torch.Tensor,
          unlabeled_labels: torch.Tensor | None) -> dict[str, float]:
    """Detached scalars, read back with a single device sync."""
    dev = loss.device
    conf = confident.float()
    values = {
        "loss": loss, "loss_sup": loss_sup, "loss_unlabeled": loss_un, "loss_mix": loss_mix,
        "mask_rate": conf.mean(),
        "confidence": probs.max(dim=-1).values.mean(),
        "lambda": lam.float().mean(),
    }
    if unlabeled_labels is not None:
        labels = unlabeled_labels.to(hard.device)
        known = labels >= 0
        correct = (hard == labels) & known
        values["_known"] = known.sum().float()
        values["_correct"] = correct.sum().float()
        values["_known_conf"] = (known & confident).sum().float()
        values["_correct_conf"] = (correct & confident).sum().float()
    names = list(values)
    numbers = torch.stack([v.detach().float().to(dev).reshape(()) for v in values.values()]).tolist()
    logs = dict(zip(names, numbers))
    if unlabeled_labels is not None:
        known_n, correct_n = logs.pop("_known"), logs.pop("_correct")
        known_conf, correct_conf = logs.pop("_known_conf"), logs.pop("_correct_conf")
        if known_n:
            logs["pseudo_acc"] = correct_n / known_n
        if known_conf:
            logs["pseudo_acc_confident"] = correct_conf / known_conf
    return logs
