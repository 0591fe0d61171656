"""Reading trained weights for inference (eval, export, predict) and writing the one-file export.

Accepts a run directory (its newest intact checkpoint), a checkpoint directory or an exported
`.safetensors` file; problems are one-line `UserError`s.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from svformer.config import Config, from_dict, load_config, to_dict
from svformer.errors import UserError, load_error_detail
from svformer.model import build_from_config
from svformer.run_dir.layout import (
    INDEX,
    MODEL_FILE,
    CorruptCheckpoint,
    complete_checkpoints,
    latest_checkpoint,
    step_of,
    verify,
)

EXPORT_FORMAT = "svformer-export"
EXPORT_VERSION = "1"


@dataclass
class TrainedWeights:
    """What a checkpoint or export holds for inference: config, step, state dicts, data provenance."""

    config: Config
    step: int
    states: dict[str, dict[str, torch.Tensor]]
    source: Path
    data: dict = field(default_factory=dict)
    """{"prep": {"short_side", "fps", "quality"} or {}, "class_names": [...] or None} (`svformer.data.data_info`)."""


def _torch_load(path: Path, weights_only: bool = True) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except (OSError, RuntimeError, EOFError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CorruptCheckpoint(f"{path}: unreadable ({first[:160]})") from None


def _from_checkpoint_dir(ckpt: Path) -> TrainedWeights:
    verify(ckpt)
    config = load_config(ckpt / "config.yaml")
    if not (ckpt / MODEL_FILE).exists():
        raise UserError(f"{ckpt}: no {MODEL_FILE}; not a complete svformer checkpoint")
    # DeepSpeed's own file: its non-tensor entries need full unpickling (the index vouches for its bytes)
    student = _torch_load(ckpt / MODEL_FILE, weights_only=False)["module"]
    states = {"student": {k: v.float() for k, v in student.items()}}
    method_file = ckpt / "method.pt"
    if method_file.exists():  # the method's own saved models (`Method.saved_models`), e.g. SVFormer's teacher
        states.update(_torch_load(method_file).get("models", {}))
    data = json.loads((ckpt / "data.json").read_text())
    return TrainedWeights(config, step_of(ckpt), states, ckpt, data)


def _from_exported(path: Path) -> TrainedWeights:
    state, config_dict, _ = load_exported(path)
    which = config_dict.pop("_exported_model", "student")
    step = int(config_dict.pop("_exported_step", -1))
    data = config_dict.pop("_data", {})
    return TrainedWeights(from_dict(config_dict), step, {which: state}, path, data)


def resolve_checkpoint(path: str | Path, option: str = "--ckpt") -> Path:
    """A run directory (its newest intact checkpoint), a checkpoint directory, or an exported file.
    `option` is the option or config key that gave `path` (named when nothing is there)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise UserError(f"{option} {path} does not exist")
    if (path / "config.yaml").exists() and (path / INDEX).exists():
        return path
    ckpt = latest_checkpoint(path)
    if ckpt is None:
        damaged = complete_checkpoints(path)
        if damaged:
            raise CorruptCheckpoint(
                f"{path}: every checkpoint is damaged (newest: {damaged[-1].name}); see the warnings above"
            )
        raise UserError(
            f"{path}: no complete checkpoint (expected {path}/checkpoints/step-NNNNNN/); has training saved yet?"
        )
    return ckpt


def load_trained(path: str | Path, option: str = "--ckpt") -> TrainedWeights:
    """Read weights from a run directory, a checkpoint directory or an exported `.safetensors` file.

    Raises UserError (one line) when there is nothing usable at `path` (naming `option`, the option or
    config key that gave it) or it is damaged.
    """
    resolved = resolve_checkpoint(path, option)
    return _from_exported(resolved) if resolved.is_file() else _from_checkpoint_dir(resolved)


def pick_models(weights: TrainedWeights, which: str) -> list[str]:
    """The model names to score for `--model NAME|both`: both is every saved model, the method's own
    (e.g. SVFormer's teacher) before the student."""
    if which == "both":
        return sorted(weights.states, key=lambda name: name == "student")  # stable: the student last
    if which not in weights.states:
        have = ", ".join(weights.states)
        raise UserError(
            f"{weights.source}: has no {which} weights (it has: {have}); a method saves its other models "
            "once it has made them (SVFormer's teacher: after train.warmup_steps)"
        )
    return [which]


def build_trained_model(weights: TrainedWeights, name: str, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The saved config's model with `weights.states[name]` loaded, in eval mode on `device`."""
    if any(key.startswith("decoder.") for key in weights.states[name]):
        raise UserError(
            f"{weights.source} is a masked-video pretraining checkpoint (an autoencoder, no classifier): "
            f"fine-tune it first with `cli.py train --set model.pretrain_init={weights.source}`"
        )
    model = build_from_config(weights.config)
    try:
        model.load_state_dict(weights.states[name])
    except RuntimeError as err:
        raise UserError(
            f"{weights.source}: {name} weights do not fit the saved config's model ({load_error_detail(err)})"
        ) from None
    return model.to(device).eval()


# ---------------------------------------------------------------- export: one safetensors file


def save_exported(
    path: str | Path, state_dict: Mapping[str, torch.Tensor], config_dict: dict, num_classes: int
) -> Path:
    """Write weights + config + class count as ONE safetensors file, atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    metadata = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "config": json.dumps(config_dict),
        "num_classes": str(int(num_classes)),
    }
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise UserError(f"could not write {path} ({err.strerror or err})") from None
    return path


def load_exported(path: str | Path) -> tuple[dict[str, torch.Tensor], dict, int]:
    """Read a file written by `save_exported` -> (state_dict, config_dict, num_classes).

    Raises:
        UserError: missing file, not safetensors, or a safetensors file not written by svformer.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"exported model {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != EXPORT_FORMAT:
                raise UserError(
                    f"{path} is not an svformer export (no '{EXPORT_FORMAT}' metadata); use `cli.py export` to make one"
                )
            if meta.get("version") != EXPORT_VERSION:
                raise UserError(
                    f"{path}: export format version {meta.get('version')!r} is not supported"
                    f" (expected {EXPORT_VERSION})"
                )
            state = {k: f.get_tensor(k) for k in f.keys()}
        return state, json.loads(meta["config"]), int(meta["num_classes"])
    except (SafetensorError, OSError) as err:
        raise UserError(f"{path} is not a readable safetensors file ({str(err).splitlines()[0]})") from None
    except (KeyError, ValueError) as err:
        raise UserError(f"{path}: corrupt svformer export metadata ({err})") from None


def export(ckpt: str | Path, out: str | Path, which: str = "teacher") -> Path:
    """Write one safetensors file (weights + config + class count + data provenance), no DeepSpeed needed."""
    weights = load_trained(ckpt)
    (name,) = pick_models(weights, which)
    config = to_dict(weights.config)
    config["_exported_model"], config["_exported_step"], config["_data"] = name, weights.step, weights.data
    return save_exported(out, weights.states[name], config, weights.config.model.num_classes)
