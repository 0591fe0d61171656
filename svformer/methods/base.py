"""The training-method interface: what one step's loss is, which streams feed it, what state it owns.

The loop (`svformer/train.py`) knows no method: for each step it pulls the batches a method asks for
(`wants`), accumulates `loss` over micro-steps, steps the optimizer and calls `after_step`. Anything
a method keeps between steps (an EMA teacher, its random generator) it saves and restores itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from svformer.config import Config
from svformer.data import Stream

Batch = dict[str, dict[str, Any]]
"""One step's input: {stream name: that stream's batch dict}, tensors already on the device."""


@dataclass
class StepLogs:
    """One micro-step's scalars as detached 0-dim device tensors (no host sync until the monitor flushes).

    means: averaged over the micro-steps of a log window.
    ratios: (numerator, denominator) pairs, each summed over the window, then divided (e.g. pseudo-label
        accuracy = correct / known over every clip of the window).
    """

    means: dict[str, torch.Tensor]
    ratios: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


@dataclass
class Context:
    """What the loop hands a method: the run's config, the engine and its module, where it runs."""

    cfg: Config
    student: Callable[..., torch.Tensor]
    """The engine (or any module): calling it runs the student's forward under the engine's precision."""
    student_module: nn.Module
    """The bare student network (its parameters, for copies and EMA updates)."""
    device: torch.device
    rank: int
    world_size: int
    autocast: Callable[[], ContextManager]
    """The student's autocast context (bf16 or none), for forwards that run outside the engine."""


class Method(ABC):
    """A training method; subclasses say which streams feed a step and what its loss is."""

    name = "method"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # Every random draw the method makes comes from here (saved per rank in each checkpoint).
        self.generator = torch.Generator().manual_seed(ctx.cfg.train.seed * 1000 + ctx.rank)

    @abstractmethod
    def open_streams(self, start_step: int) -> dict[str, Stream]:
        """The training streams this method reads, opened once (resumed runs pass their step)."""

    @abstractmethod
    def wants(self, step: int) -> tuple[str, ...]:
        """Names of the streams whose next batch feeds step `step`."""

    @abstractmethod
    def loss(self, batch: Batch, step: int) -> tuple[torch.Tensor, StepLogs]:
        """The scalar loss of one micro-step (with graph) and its logs."""

    def after_step(self, step: int) -> None:  # noqa: B027 (an optional hook: most methods need none)
        """Called after optimizer step `step` (0-based) has been applied."""

    def eval_models(self) -> dict[str, nn.Module]:
        """The networks quick validation scores, by name."""
        return {"student": self.ctx.student_module}

    def state_dict(self) -> dict[str, Any]:
        """State shared by all ranks, saved once per checkpoint (RNG state is saved per rank)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 (optional, as state_dict)
        """Restore what `state_dict` saved."""


def param_dtype(model: nn.Module) -> torch.dtype:
    """The dtype inputs are cast to: the student's parameter dtype (bf16/fp16 when the engine keeps
    low-precision weights, else float32)."""
    return next(model.parameters()).dtype
