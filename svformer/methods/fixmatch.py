"""FixMatch (Sohn et al. 2020), the semi-supervised baseline the SVFormer paper compares against.

After the supervised warm-up (as SVFormer's, `train.warmup_steps`), each step:
  L = L_s + lambda_u * L_un
  L_s  = CE(model(x_l), y_l)
  L_un = mean(c * CE(model(strong'), argmax p)), p = softmax(model(weak)) without gradient, c = max p >= tau
The SAME model labels its weak view and learns from its strong view: no EMA teacher, no Tube TokenMix.
Settings come from the `ssl` section: tau = ssl.threshold, lambda_u = ssl.lambda_unlabeled; the strong
view is the configured one (ssl.strong_ops, ssl.temporal_warp), strong' after its device-side ops.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from svformer.config import SSLConfig
from svformer.methods.base import StepLogs, param_dtype, register
from svformer.methods.semi_supervised import SemiSupervised, pseudo_label_stats, step_logs
from svformer.ssl.losses import pseudo_labels, supervised_loss, unlabeled_loss
from svformer.views import strong_device_ops


def fixmatch_loss(
    model: Callable[..., torch.Tensor],
    labeled: Sequence[torch.Tensor],
    unlabeled: Sequence[torch.Tensor],
    cfg: SSLConfig,
    g: torch.Generator | None,
    unlabeled_labels: torch.Tensor | None = None,
) -> tuple[torch.Tensor, StepLogs]:
    """The FixMatch loss for one labeled + one unlabeled batch.

    Args:
        model: the trained network (train mode); inputs are cast to its parameter dtype.
        labeled: (x_l float (B_l, C, T, H, W) normalised, y_l long (B_l,)).
        unlabeled: (weak, strong) float (B_u, C, T, H, W) normalised.
        cfg: the `ssl` section (threshold, lambda_unlabeled, the strong view's device-side ops).
        g: CPU generator for the strong view's device-side ops.
        unlabeled_labels: optional long (B_u,), -1 = unknown; only for the pseudo-label accuracy logs.
    Returns:
        (loss float32 scalar with graph, StepLogs: loss, loss_sup, loss_unlabeled, mask_rate, confidence;
        ratios pseudo_acc / pseudo_acc_confident when labels are given).
    """
    x_l, y_l = labeled
    weak, strong = unlabeled
    dtype = param_dtype(model)
    with torch.no_grad():  # the target: the model's own confident guess on the weak view
        probs, hard, confident = pseudo_labels(model(weak.to(dtype)), cfg.threshold)
    strong = strong_device_ops(strong, cfg, g)
    # One forward for labeled and strong clips (no BatchNorm, so batching them is exact).
    logits = model(torch.cat([x_l, strong]).to(dtype))
    b_l = x_l.shape[0]
    loss_sup = supervised_loss(logits[:b_l], y_l)
    loss_un = unlabeled_loss(logits[b_l:], hard, confident)
    loss = loss_sup + cfg.lambda_unlabeled * loss_un
    stats, ratios = pseudo_label_stats(probs, hard, confident, unlabeled_labels)
    return loss, step_logs({"loss": loss, "loss_sup": loss_sup, "loss_unlabeled": loss_un, **stats}, ratios)


@register("fixmatch")
class FixMatch(SemiSupervised):
    """Supervised warm-up for `train.warmup_steps`, then FixMatch: the model labels its own weak views."""

    def unlabeled_step(self, labeled, unlabeled, unlabeled_labels) -> tuple[torch.Tensor, StepLogs]:
        return fixmatch_loss(self.ctx.student, labeled, unlabeled, self.ctx.cfg.ssl, self.generator, unlabeled_labels)


__all__ = ["FixMatch", "fixmatch_loss"]
