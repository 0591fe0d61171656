"""Optimizer and learning-rate schedule from `OptimConfig`.

Weight decay skips biases, norms, the class token and the position/time embeddings (the usual ViT
exclusions). Fused kernels are asked for where the device has them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from svformer.config import Config, OptimConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two parameter groups: with and without weight decay.

    Args:
        model: the student; its `no_weight_decay()` (if any) names parameters to exclude.
        weight_decay: decay of the first group.
    """
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        # 1-D tensors are biases and LayerNorm scales/shifts
        (no_decay if param.ndim <= 1 or name in skip else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: OptimConfig, device: torch.device) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov) or AdamW over `param_groups`, fused/foreach kernels where available."""
    groups = param_groups(model, cfg.weight_decay)
    # fused kernels exist for CUDA (and some CPU builds); foreach is the vectorised fallback
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, **fast)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), **fast)


def lr_factor(cfg: Config) -> Callable[[int], float]:
    """Multiplier of the base LR at optimizer step `s`: linear warm-up, then step or cosine decay."""
    optim, total = cfg.optim, cfg.train.max_steps

    def factor(step: int) -> float:
        if step < optim.lr_warmup_steps:
            return (step + 1) / optim.lr_warmup_steps
        if optim.schedule == "cosine":
            span = max(1, total - optim.lr_warmup_steps)
            progress = min(1.0, (step - optim.lr_warmup_steps) / span)
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return optim.decay_factor ** sum(step >= s for s in optim.decay_steps)

    return factor
