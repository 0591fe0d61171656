"""Find and read trained weights: a run directory, a checkpoint directory, or an exported file.

Eval and export accept any of the three; this module turns them into (config, {model: state dict}).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from svformer.config import Config, from_dict, load_config
from svformer.errors import UserError
from svformer.resume import STEP_DIR, latest_checkpoint


@dataclass
class TrainedWeights:
    """What a checkpoint holds: the run config, the step, and student/teacher state dicts."""

    config: Config
    step: int
    states: dict[str, dict[str, torch.Tensor]]
    source: Path


def _from_checkpoint_dir(ckpt: Path) -> TrainedWeights:
    config = load_config(ckpt / "config.yaml")
    model_file = ckpt / "mp_rank_00_model_states.pt"
    if not model_file.exists():
        raise UserError(f"{ckpt}: no mp_rank_00_model_states.pt; not a complete svformer checkpoint")
    # our own DeepSpeed file: its non-tensor entries need full unpickling
    student = torch.load(model_file, map_location="cpu", weights_only=False)["module"]
    states = {"student": {k: v.float() for k, v in student.items()}}
    if (ckpt / "teacher.pt").exists():
        states["teacher"] = torch.load(ckpt / "teacher.pt", map_location="cpu", weights_only=True)
    step = int(STEP_DIR.match(ckpt.name).group(1)) if STEP_DIR.match(ckpt.name) else -1
    return TrainedWeights(config, step, states, ckpt)


def _from_exported(path: Path) -> TrainedWeights:
    from svformer.checkpoints import load_exported

    state, config_dict, _ = load_exported(path)
    which = config_dict.pop("_exported_model", "student")
    step = int(config_dict.pop("_exported_step", -1))
    return TrainedWeights(from_dict(config_dict), step, {which: state}, path)


def load_trained(path: str | Path) -> TrainedWeights:
    """Read weights from a run directory (newest complete checkpoint), a checkpoint directory, or an
    exported `.safetensors` file. Raises UserError when there is nothing usable at `path`."""
    path = Path(path)
    if path.is_file():
        return _from_exported(path)
    if not path.is_dir():
        raise UserError(f"--ckpt {path} does not exist")
    if (path / "config.yaml").exists() and (path / "state.pt").exists():
        return _from_checkpoint_dir(path)
    ckpt = latest_checkpoint(path)
    if ckpt is None:
        raise UserError(f"{path}: no complete checkpoint (expected {path}/checkpoints/step-NNNNNN/); has training saved yet?")
    return _from_checkpoint_dir(ckpt)


def pick_models(weights: TrainedWeights, which: str) -> list[str]:
    """The model names to score for `--model teacher|student|both`."""
    if which == "both":
        return [name for name in ("teacher", "student") if name in weights.states]
    if which not in weights.states:
        have = ", ".join(weights.states)
        raise UserError(f"{weights.source}: has no {which} weights (it has: {have}); "
                        "a teacher exists only after the SSL stage has started")
    return [which]
