"""The EMA teacher: a float32 copy of the student, teacher = m * teacher + (1 - m) * student."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from svformer.config import SSLConfig


class EMATeacher:
    """A float32, eval-mode, gradient-free copy of the student, updated by exponential moving average.

    Call it like the model (`teacher(video)`); `module` is the underlying network and
    `state_dict()` is a plain model state dict (loadable into `build_model(...)`).
    """

    def __init__(self, student: nn.Module) -> None:
        # Copy, then upcast: the teacher is float32 whatever the student's precision.
        self.module = copy.deepcopy(student).float().eval().requires_grad_(False)

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.module(*args, **kwargs)

    @torch.no_grad()
    def update(self, student: nn.Module, decay: float) -> None:
        """teacher = decay * teacher + (1 - decay) * student for every parameter; buffers copied.

        Args:
            student: the student network (parameters in any float dtype; bf16/fp16 are upcast).
            decay: m in [0, 1].
        """
        params = list(self.module.parameters())  # fetched each time: survives module.to(...)
        src = [p.detach() for p in student.parameters()]
        if len(src) != len(params):
            raise ValueError(f"EMA update: {len(src)} student tensors for {len(params)} teacher parameters")
        src = [s.to(device=t.device, dtype=torch.float32) for s, t in zip(src, params)]
        # lerp(t, s, w) = t + w * (s - t), exact at w = 0 and w = 1; one fused pass over all tensors.
        torch._foreach_lerp_(params, src, 1.0 - float(decay))
        for t, s in zip(self.module.buffers(), student.buffers()):
            t.copy_(s)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The teacher's weights as a plain (float32) model state dict."""
        return self.module.state_dict()

    def load_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Restore weights saved by `state_dict` (strict; values are cast to float32)."""
        self.module.load_state_dict(state_dict)


def ema_decay_at(step: int, ssl_cfg: SSLConfig) -> float:
    """EMA decay for SSL step `step` (0-based): constant `ema_decay`, or a linear ramp from 0 to
    `ema_decay` over `ema_warmup_steps` (early teachers then follow the student closely)."""
    if ssl_cfg.ema_warmup_steps <= 0:
        return ssl_cfg.ema_decay
    return ssl_cfg.ema_decay * min(1.0, step / ssl_cfg.ema_warmup_steps)
