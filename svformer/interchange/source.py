"""What an interchange export starts from: one trained network with its config, prep settings and class names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from svformer.config import Config


@dataclass
class ExportSource:
    """A trained model ready to be written in another format."""

    model: torch.nn.Module
    """The TimeSformer, eval mode, on the CPU."""
    config: Config
    """The run's config (data: frames, sizes, mean/std; eval: how views combine)."""
    which: str
    """"teacher" or "student"."""
    step: int
    """Training step of the weights (-1 when unknown)."""
    prep: dict
    """Prep settings the run's shards were decoded with ({"short_side", "fps", "quality"}; {} when unknown)."""
    class_names: list[str]
    """One name per class (label numbers as strings when the run recorded none)."""


def load_export_source(ckpt: str | Path, which: str = "teacher") -> ExportSource:
    """The `which` model of a run directory, checkpoint directory or `.safetensors` export, for export.

    Raises:
        UserError: nothing usable at `ckpt`, or no such model in it.
    """
    from svformer.run_dir import build_trained_model, load_trained, pick_models

    weights = load_trained(ckpt)
    (name,) = pick_models(weights, which)
    model = build_trained_model(weights, name, "cpu")
    data = weights.data
    num_classes = weights.config.model.num_classes
    names = data.get("class_names")
    if names is None or len(names) != num_classes:
        names = [str(i) for i in range(num_classes)]
    return ExportSource(model, weights.config, name, weights.step, dict(data.get("prep") or {}), list(names))
