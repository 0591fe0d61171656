"""Importing outside weights: timm-format ImageNet ViTs and official TimeSformer/SVFormer checkpoints.

Everything read from disk goes through `torch.load(weights_only=True)` or safetensors; every
problem a user can fix is a one-line `UserError` naming the file.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from svformer.config import ModelConfig
from svformer.errors import UserError
from svformer.interchange.hf import load_hf
from svformer.run_dir import load_trained
from svformer.state_dicts import first_names, fit_embeddings, read_file, shape_mismatches, unwrap

log = logging.getLogger(__name__)

# ImageNet classifier parts a video model never uses.
_IMAGENET_DROPPED = re.compile(r"^(head|head_dist|fc_norm|pre_logits|dist_token)(\.|$)")


# ---------------------------------------------------------------- reading


def _read_npz(path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """A JAX/big_vision ViT .npz as a timm state dict, via timm's own npz loader.

    A timm ViT of the model's width/depth/heads and of the checkpoint's own patch grid is built, so
    that the position embedding is resized below (nearest), like every other format.
    """
    import numpy as np
    from timm.models.vision_transformer import VisionTransformer, _load_weights

    try:
        with np.load(path) as npz:
            pos_key = next(k for k in npz.files if k.endswith("pos_embedding"))
            num_pos = npz[pos_key].shape[-2]
    except (OSError, ValueError, StopIteration) as err:
        raise UserError(f"checkpoint {path} is not a ViT .npz ({type(err).__name__})") from None
    grid = math.isqrt(num_pos - 1)
    block = model.blocks[0]
    vit = VisionTransformer(
        img_size=grid * model.patch_size,
        patch_size=model.patch_size,
        embed_dim=model.embed_dim,
        depth=len(model.blocks),
        num_heads=block.attn.num_heads,
        mlp_ratio=block.mlp.fc1.out_features / model.embed_dim,
        num_classes=0,
    )
    try:
        _load_weights(vit, str(path))
    except (KeyError, RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(f"{path}: not a ViT of this shape (first problem: {first})") from None
    return vit.state_dict()


# ---------------------------------------------------------------- ImageNet ViT


def load_imagenet_vit(model: nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Initialise a TimeSformer from timm-format ImageNet ViT weights (.pth/.pt/.bin, .safetensors, .npz).

    `attn`/`norm1` are also copied into `temporal_attn`/`temporal_norm1`; the position embedding is
    resized (nearest) if the patch grid differs; the ImageNet head (and fc_norm/pre_logits) is dropped.
    `temporal_fc`, `time_embed` and `head` keep their initialisation.

    Returns:
        {"loaded": [...], "from_spatial": [...], "skipped": [...], "missing": [...]} of parameter names.
    Raises:
        UserError: unreadable file or a shape mismatch (e.g. another embed dim), naming the first key.
    """
    path = Path(path)
    source = _read_npz(path, model) if path.suffix == ".npz" else read_file(path)
    target = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    report: dict[str, list[str]] = {"loaded": [], "from_spatial": [], "skipped": [], "missing": []}
    for key, value in source.items():
        if _IMAGENET_DROPPED.match(key) or key not in target:
            report["skipped"].append(key)
        else:
            state[key] = value
            report["loaded"].append(key)
    for key in target:  # temporal branch starts as a copy of the spatial one
        spatial = key.replace("temporal_attn.", "attn.").replace("temporal_norm1.", "norm1.")
        if spatial != key and spatial in state:
            state[key] = state[spatial]
            report["from_spatial"].append(key)
    fit_embeddings(state, model)
    bad = shape_mismatches(state, target)
    if bad:
        raise UserError(
            f"{path}: weights do not fit this model; first mismatch {bad[0]}"
            f" ({len(bad)} in all): use a ViT of the same size/patch"
        )
    report["missing"] = [k for k in target if k not in state]
    if not report["loaded"]:
        raise UserError(f"{path}: no ViT weights recognised (keys like {first_names(list(source), 3)})")
    model.load_state_dict(state, strict=False)
    log.info(
        "ImageNet init from %s: %d loaded, %d temporal copied from spatial, %d skipped (%s), %d left at init (%s)",
        path,
        len(report["loaded"]),
        len(report["from_spatial"]),
        len(report["skipped"]),
        first_names(report["skipped"], 3),
        len(report["missing"]),
        first_names(report["missing"], 3),
    )
    return report


# ---------------------------------------------------------------- official TimeSformer / SVFormer


def _official_to_ours(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """TimeSformer (`model.*`, head `model.head.*`) and SVFormer (`model.*`, head `head.*`) -> our names.

    Returns the renamed state and {our name: name in the file} for error messages.
    """
    out: dict[str, torch.Tensor] = {}
    original: dict[str, str] = {}
    for key, value in state.items():
        name = key[len("model.") :] if key.startswith("model.") else key
        if name in out:  # e.g. both model.head.* and head.*: ambiguous, keep it visible as unexpected
            name = key
        out[name], original[name] = value, key
    return out, original


def load_official(model: nn.Module, path_or_state_dict: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Load an official TimeSformer `.pyth`, an SVFormer checkpoint, or a state dict of our own layout, strictly.

    The time embedding is interpolated if the checkpoint was trained with another T (and the
    position embedding resized if the patch grid differs).

    Returns:
        {"source": str, "loaded": int} (number of tensors).
    Raises:
        UserError: unreadable file, or missing/unexpected keys or shape mismatches (first few + counts).
    """
    if isinstance(path_or_state_dict, Mapping):
        source = "state dict"
        raw = unwrap(path_or_state_dict, source)
    else:
        source = str(path_or_state_dict)
        raw = read_file(Path(path_or_state_dict))
    state, original = _official_to_ours(raw)
    target = model.state_dict()
    fit_embeddings(state, model)
    missing = [k for k in target if k not in state]
    unexpected = [original[k] for k in state if k not in target]
    bad = shape_mismatches(state, target)
    if missing or unexpected or bad:
        parts = [
            f"{len(v)} {what} ({first_names(v)})"
            for what, v in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", bad))
            if v
        ]
        raise UserError(f"{source}: not a checkpoint of this model: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)
    log.info("loaded %d tensors from %s", len(state), source)
    return {"source": source, "loaded": len(state)}


# ---------------------------------------------------------------- masked-video pretraining (cli.py pretrain)

ENCODER_PREFIX = "encoder."


def load_pretrained_encoder(model: nn.Module, path: str | Path, option: str = "--ckpt") -> dict[str, Any]:
    """Initialise a classification TimeSformer from a masked-video pretraining run's encoder.

    The autoencoder's `encoder.*` tensors are loaded strictly (every parameter but the head; position
    and time embeddings resized when only the frame size or T differ, as for official checkpoints),
    its `decoder.*` is dropped and the head keeps its fresh initialisation.

    Args:
        model: the TimeSformer to fill.
        path: a pretrain run directory (its newest intact checkpoint), a checkpoint directory or an export.
        option: the option or config key that gave `path`, named in the error when nothing is there.
    Returns:
        {"source": str, "step": int, "loaded": int, "dropped": int (decoder tensors), "fresh": [head names]}.
    Raises:
        UserError: nothing usable at `path`, not a pretraining checkpoint, or keys/shapes that do not fit.
    """
    weights = load_trained(path, option)
    source = weights.source
    student = weights.states.get("student")
    if student is None:
        raise UserError(
            f"{source}: no student weights (it has: {', '.join(weights.states)}); "
            "model.pretrain_init needs a `cli.py pretrain` run"
        )
    state = {k[len(ENCODER_PREFIX) :]: v for k, v in student.items() if k.startswith(ENCODER_PREFIX)}
    if not state:
        raise UserError(
            f"{source}: not a masked-video pretraining checkpoint (no {ENCODER_PREFIX}* weights, keys like "
            f"{first_names(list(student), 3)}); use model.official_init for a trained classifier"
        )
    target = model.state_dict()
    fresh = [k for k in target if k.startswith("head.")]
    fit_embeddings(state, model)
    missing = [k for k in target if k not in state and k not in fresh]
    unexpected = [k for k in state if k not in target or k in fresh]
    bad = shape_mismatches(state, target)
    if missing or unexpected or bad:
        parts = [
            f"{len(v)} {what} ({first_names(v, 2)})"
            for what, v in (("shape mismatches", bad), ("missing keys", missing), ("unexpected keys", unexpected))
            if v
        ]
        saved = weights.config.model
        raise UserError(
            f"{source}: pretrained encoder does not fit this model: {'; '.join(parts)}; it was pretrained "
            f"as model.variant={saved.variant} patch_size={saved.patch_size} embed_dim={saved.embed_dim} "
            f"depth={saved.depth} num_heads={saved.num_heads}: use the same model.* settings"
        )
    model.load_state_dict({**state, **{k: target[k] for k in fresh}}, strict=True)
    dropped = sum(1 for k in student if not k.startswith(ENCODER_PREFIX))
    log.info(
        "pretrained encoder from %s (step %d): %d tensors loaded, %d decoder tensors dropped, new %s",
        source,
        weights.step,
        len(state),
        dropped,
        first_names(fresh, 2),
    )
    return {"source": str(source), "step": weights.step, "loaded": len(state), "dropped": dropped, "fresh": fresh}


INIT_KEYS = ("official_init", "imagenet_init", "pretrain_init", "hf_init")


def load_configured_init(model: nn.Module, model_cfg: ModelConfig, encoder_only: bool = True) -> nn.Module:
    """Load the outside weights `model_cfg` names into `model` (a TimeSformer): `model.official_init`,
    `model.imagenet_init`, `model.hf_init` (interchange/hf.py), or (when `encoder_only`) the encoder of
    the pretraining run `model.pretrain_init`.
    Returns `model`. An error names the config key that gave the path.

    Pretraining passes `encoder_only=False`: there `model.pretrain_init` continues the whole autoencoder.
    """
    loaders = {
        "official_init": load_official,
        "imagenet_init": load_imagenet_vit,
        "pretrain_init": lambda m, path: load_pretrained_encoder(m, path, option="model.pretrain_init"),
        "hf_init": load_hf,
    }
    for key in INIT_KEYS:  # the config allows one of them
        path = getattr(model_cfg, key)
        if path and (encoder_only or key != "pretrain_init"):
            try:
                loaders[key](model, path)
            except UserError as err:
                message = str(err)
                raise UserError(message if message.startswith("model.") else f"model.{key}: {message}") from None
    return model
