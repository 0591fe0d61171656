"""Outside state dicts: read one from a file, unwrap its container, fit its embeddings, report mismatches.

Shared by the loaders of outside weights (svformer/weight_import.py, svformer/interchange/hf.py).
Everything read goes through `torch.load(weights_only=True)` or safetensors; a problem a user can fix
is a one-line `UserError` naming the file.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from svformer.errors import UserError
from svformer.model import resize_pos_embed, resize_time_embed

CONTAINER_KEYS = ("model_state", "state_dict", "model", "module")


def read_file(path: Path) -> dict[str, torch.Tensor]:
    """A flat {name: tensor} from a .safetensors / torch file (container dicts unwrapped)."""
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"checkpoint {path} could not be read ({first})") from None
    return unwrap(obj, str(path))


def unwrap(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """Find the state dict inside common containers ({"model_state": ...}, {"model": ...}) and drop DDP's `module.`."""
    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            raise UserError(f"{source}: no state dict found (top-level keys: {', '.join(map(str, list(obj)[:8]))})")
        obj = inner
    if not isinstance(obj, Mapping):
        raise UserError(f"{source}: expected a state dict, found {type(obj).__name__}")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if tensors and all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def fit_embeddings(state: dict[str, torch.Tensor], model: nn.Module) -> None:
    """Resize pos_embed / time_embed in `state` (in place) to the model's grid and T when only those differ."""
    pos, time = state.get("pos_embed"), state.get("time_embed")
    if (
        pos is not None
        and pos.shape != model.pos_embed.shape
        and pos.shape[-1] == model.embed_dim
        and math.isqrt(pos.shape[1] - 1) ** 2 == pos.shape[1] - 1
    ):
        state["pos_embed"] = resize_pos_embed(pos, model.grid_size)
    if time is not None and time.shape != model.time_embed.shape and time.shape[-1] == model.embed_dim:
        state["time_embed"] = resize_time_embed(time, model.time_embed.shape[1])


def shape_mismatches(state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> list[str]:
    """One "name: file shape vs model shape" line per tensor whose shape differs from the model's."""
    return [
        f"{k}: file {tuple(v.shape)} vs model {tuple(target[k].shape)}"
        for k, v in state.items()
        if k in target and v.shape != target[k].shape
    ]


def first_names(names: list[str], n: int = 5) -> str:
    """The first `n` names, comma-separated, and how many there are in all when more."""
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")
