"""The training-method interface: what one step's loss is, which streams feed it, what state it owns.

The loop (`svformer/train.py`) knows no method: it asks the method's class for its network
(`build_model`) and whether the data can serve it (`check_data`, which also gives the epoch unit);
then, for each step, it pulls the batches the method asks for (`wants`), accumulates `loss` over
micro-steps, steps the optimizer and calls `after_step`. The progress bar and the report's curves show
the method's `log_keys`; validation, eval and export score `eval_models` / `saved_models` by name.
Anything a method keeps between steps (an EMA teacher, its random generator) it saves and restores itself.
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
from svformer.data import Stream, read_manifest, shard_urls
from svformer.data.sources import is_prep_dir
from svformer.errors import UserError
from svformer.model import build_from_config
from svformer.weight_import import load_configured_init

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
    """A training method; subclasses say which streams feed a step and what its loss is.

    Register a subclass under the name `train.method` selects with `@register("name")`.
    """

    name = "method"
    log_keys: dict[str, tuple[str, ...]] = {"losses": ("loss",)}
    """The scalars of `loss`'s logs worth watching, by panel title: the progress bar shows them, the
    evaluation report's curves.png draws one panel per entry."""

    @classmethod
    def build_model(cls, cfg: Config) -> nn.Module:
        """The network the optimizer trains (the student), with its configured initial weights."""
        return load_configured_init(build_from_config(cfg), cfg.model)

    @classmethod
    def check_data(cls, cfg: Config) -> int:
        """Fail at start, in one line, when the data cannot serve this method. Returns the size of the
        method's epoch in clips (the loop logs `epoch` = clips seen / it), or 0: no epochs."""
        return 0

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

    def saved_models(self) -> dict[str, nn.Module]:
        """Networks besides the student that the method trains and saves, by name (SVFormer's EMA
        "teacher"); eval, export and predict find them in the checkpoint under these names."""
        return {}

    def eval_models(self) -> dict[str, nn.Module]:
        """The networks quick validation scores, by name."""
        return {"student": self.ctx.student_module, **self.saved_models()}

    def state_dict(self) -> dict[str, Any]:
        """State shared by all ranks, saved once per checkpoint (RNG state is saved per rank).

        `"models"` holds `saved_models()`' weights, where `run_dir.load_trained` reads them."""
        models = self.saved_models()
        return {"models": {name: model.state_dict() for name, model in models.items()}} if models else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 (optional, as state_dict)
        """Restore what `state_dict` saved."""


METHODS: dict[str, type[Method]] = {}
"""Every training method by its `train.method` name (filled by `register`)."""


def register(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: make a `Method` subclass the method `train.method=name` runs."""

    def add(cls: type[Method]) -> type[Method]:
        cls.name = name
        METHODS[name] = cls
        return cls

    return add


def method_class(name: str) -> type[Method]:
    """The method registered as `name`, or one line naming `train.method` and the choices."""
    if name not in METHODS:
        raise UserError(f"unknown train.method {name!r}; choose one of {', '.join(sorted(METHODS))}")
    return METHODS[name]


def check_class_shards(cfg: Config, roles: tuple[str, ...]) -> int:
    """The labeled-data checks: the shards of `data.<role>` hold labels the model can output. Returns the
    number of labeled videos (0 when `data.labeled` is a pattern or URLs, checked when the stream opens)."""
    num_labeled = 0
    for role in roles:
        spec = getattr(cfg.data, role)
        if "://" in str(spec):
            shard_urls(spec)  # remote: probed now, so an unreachable store is one line before the engine starts
        if not is_prep_dir(spec):
            continue  # a pattern or URLs: checked when the stream opens
        manifest = read_manifest(spec)
        labels = [int(k) for k in manifest.get("classes", {}) if int(k) >= 0]
        if labels and max(labels) >= cfg.model.num_classes:
            raise UserError(
                f"{spec}: shards hold label {max(labels)} but model.num_classes is "
                f"{cfg.model.num_classes}; set model.num_classes to the dataset's class count"
            )
        if manifest.get("num_classes") and manifest["num_classes"] != cfg.model.num_classes:
            raise UserError(
                f"{spec}: prepped with --num-classes {manifest['num_classes']} but model.num_classes "
                f"is {cfg.model.num_classes}"
            )
        if role == "labeled":
            num_labeled = int(manifest.get("num_samples", 0))
    return num_labeled


def param_dtype(model: nn.Module) -> torch.dtype:
    """The dtype inputs are cast to: the student's parameter dtype (bf16/fp16 when the engine keeps
    low-precision weights, else float32)."""
    return next(model.parameters()).dtype
