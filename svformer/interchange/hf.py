"""Hugging Face `transformers` TimeSformer directories in (`model.hf_init=DIR`) and out (`export --format hf`).

transformers' `TimesformerModel` is the official TimeSformer re-expressed, and so is svformer's
(model.py): the same divided space-time block (temporal attention -> `temporal_dense` -> residual
on the patch tokens; spatial attention over [a per-frame copy of the class token, the frame's
patches], the copies averaged back; GELU MLP; pre-norm LayerNorms of eps 1e-6; qkv with bias), the
same embeddings (position on the class token and patches, time on the patches only) and the class
token's final LayerNorm feeding the head. Moving weights between the two is therefore a rename
(`HF_TO_OURS`); the only layout difference is the token order inside the blocks (transformers keeps
patch-major `(n t)`, svformer frame-major `(t n)`), which attention does not see. transformers'
video input is (B, T, C, H, W); svformer's is (B, C, T, H, W).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from svformer.errors import UserError
from svformer.state_dicts import first_names, fit_embeddings, read_file, shape_mismatches

log = logging.getLogger(__name__)

LAYER_NORM_EPS = 1e-6  # svformer's model.layer_norm
CLASSIFIER_PREFIX = "timesformer."  # TimesformerForVideoClassification's backbone; TimesformerModel has none

# (transformers name, svformer name) prefixes; {i} is the block index.
HF_TO_OURS: tuple[tuple[str, str], ...] = (
    ("embeddings.cls_token", "cls_token"),
    ("embeddings.position_embeddings", "pos_embed"),
    ("embeddings.time_embeddings", "time_embed"),
    ("embeddings.patch_embeddings.projection.", "patch_embed.proj."),
    ("encoder.layer.{i}.temporal_layernorm.", "blocks.{i}.temporal_norm1."),
    ("encoder.layer.{i}.temporal_attention.attention.qkv.", "blocks.{i}.temporal_attn.qkv."),
    ("encoder.layer.{i}.temporal_attention.output.dense.", "blocks.{i}.temporal_attn.proj."),
    ("encoder.layer.{i}.temporal_dense.", "blocks.{i}.temporal_fc."),
    ("encoder.layer.{i}.layernorm_before.", "blocks.{i}.norm1."),
    ("encoder.layer.{i}.attention.attention.qkv.", "blocks.{i}.attn.qkv."),
    ("encoder.layer.{i}.attention.output.dense.", "blocks.{i}.attn.proj."),
    ("encoder.layer.{i}.layernorm_after.", "blocks.{i}.norm2."),
    ("encoder.layer.{i}.intermediate.dense.", "blocks.{i}.mlp.fc1."),
    ("encoder.layer.{i}.output.dense.", "blocks.{i}.mlp.fc2."),
    ("layernorm.", "norm."),
)


def _compile(pairs: tuple[tuple[str, str], ...], reverse: bool) -> list[tuple[re.Pattern, str]]:
    rules = []
    for hf, ours in pairs:
        src, dst = (ours, hf) if reverse else (hf, ours)
        pattern = "^" + re.escape(src).replace(re.escape("{i}"), r"(?P<i>\d+)")
        rules.append((re.compile(pattern), dst.replace("{i}", r"\g<i>")))
    return rules


_TO_OURS, _TO_HF = _compile(HF_TO_OURS, reverse=False), _compile(HF_TO_OURS, reverse=True)


def _rename(name: str, rules: list[tuple[re.Pattern, str]]) -> str | None:
    for pattern, replacement in rules:
        if pattern.match(name):
            return pattern.sub(replacement, name, count=1)
    return None


def hf_to_ours(name: str) -> str | None:
    """svformer's name for a transformers TimeSformer parameter (either class's layout); None if it has none."""
    if name.startswith("classifier."):
        return "head." + name[len("classifier.") :]
    return _rename(name[len(CLASSIFIER_PREFIX) :] if name.startswith(CLASSIFIER_PREFIX) else name, _TO_OURS)


def ours_to_hf(name: str) -> str:
    """The `TimesformerForVideoClassification` name of a svformer TimeSformer parameter."""
    if name.startswith("head."):
        return "classifier." + name[len("head.") :]
    renamed = _rename(name, _TO_HF)
    if renamed is None:
        raise KeyError(f"no transformers name for {name}")
    return CLASSIFIER_PREFIX + renamed


# ---------------------------------------------------------------- in: model.hf_init=DIR


def _side(value: Any) -> int:
    """An HF size (int or [h, w]) as one side; -1 when not square."""
    if isinstance(value, (list, tuple)):
        return int(value[0]) if len(set(value)) == 1 else -1
    return int(value)


def read_hf_dir(path: str | Path) -> tuple[Any, dict[str, torch.Tensor]]:
    """(TimesformerConfig, {transformers name: tensor}) of a transformers TimeSformer directory.

    Weights: model.safetensors, a sharded model.safetensors.index.json, or pytorch_model.bin.
    Raises:
        UserError: not a directory, no config.json, another model type, or no readable weights.
    """

    path = Path(path)
    what = f"model.hf_init={path}"
    config_file = path / "config.json"
    if not config_file.is_file():
        raise UserError(
            f"{what}: no config.json there; give a Hugging Face transformers TimeSformer directory "
            "(config.json with model.safetensors or pytorch_model.bin)"
        )
    try:
        raw = json.loads(config_file.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{what}: config.json is not readable JSON ({err})") from None
    if not isinstance(raw, dict) or raw.get("model_type") != "timesformer":
        kind = raw.get("model_type") if isinstance(raw, dict) else type(raw).__name__
        raise UserError(f"{what}: not a TimeSformer (config.json model_type is {kind!r}, expected 'timesformer')")
    from huggingface_hub.errors import StrictDataclassError
    from transformers import TimesformerConfig

    try:
        config = TimesformerConfig.from_pretrained(str(path))
    except (OSError, ValueError, TypeError, StrictDataclassError) as err:  # the last: a field of the wrong type
        raise UserError(f"{what}: config.json is not a TimesformerConfig ({str(err).splitlines()[0]})") from None
    index = path / "model.safetensors.index.json"
    if (path / "model.safetensors").is_file():
        files = [path / "model.safetensors"]
    elif index.is_file():
        try:
            files = [path / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
        except (OSError, ValueError, KeyError, AttributeError) as err:
            raise UserError(f"{what}: {index.name} is not a weight index ({err})") from None
    elif (path / "pytorch_model.bin").is_file():
        files = [path / "pytorch_model.bin"]
    else:
        raise UserError(f"{what}: config.json but no model.safetensors or pytorch_model.bin beside it")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(read_file(file))
    return config, state


def _fit_problems(config: Any, model: nn.Module) -> list[str]:
    """What in a TimesformerConfig does not fit `model` (a svformer TimeSformer), as 'theirs vs ours' phrases."""
    block = model.blocks[0]
    sizes = (
        ("hidden_size", config.hidden_size, model.embed_dim, "model.embed_dim"),
        ("num_hidden_layers", config.num_hidden_layers, len(model.blocks), "model.depth"),
        ("num_attention_heads", config.num_attention_heads, block.attn.num_heads, "model.num_heads"),
        ("patch_size", _side(config.patch_size), model.patch_size, "model.patch_size"),
        ("intermediate_size", config.intermediate_size, block.mlp.fc1.out_features, "4 x model.embed_dim"),
        ("num_channels", config.num_channels, model.patch_embed.proj.in_channels, "3 channels"),
    )
    problems = [f"{name} {theirs} vs {ours} {hint}" for name, theirs, ours, hint in sizes if theirs != ours]
    if config.attention_type != "divided_space_time":
        problems.append(f"attention_type {config.attention_type!r} (svformer has divided_space_time only)")
    if config.hidden_act != "gelu":
        problems.append(f"hidden_act {config.hidden_act!r} (svformer's MLP uses exact gelu)")
    if abs(float(config.layer_norm_eps) - LAYER_NORM_EPS) > 1e-12:
        problems.append(f"layer_norm_eps {config.layer_norm_eps} (svformer's is {LAYER_NORM_EPS})")
    return problems


def load_hf(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Initialise a svformer TimeSformer from a transformers TimeSformer directory (`model.hf_init`).

    The backbone is loaded exactly (the position embedding resized to the model's patch grid and the
    time embedding to its T, nearest, as for the other inits); the classifier is kept when the
    directory has one with this model's class count, else the model's new head stays. A directory
    saved without qkv biases (`qkv_bias: false`) loads with zero biases, the same network.

    Args:
        model: the svformer TimeSformer to fill (built from the run's config).
        path: the directory (`save_pretrained`'s output, e.g. a Hub checkpoint in the local cache).
    Returns:
        {"source", "kind" (the file's architecture), "loaded" (tensors), "head" ("kept" or "new"), "resized"}.
    Raises:
        UserError: not a TimeSformer directory, or one whose sizes or weights do not fit the model (one line).
    """

    config, raw = read_hf_dir(path)
    what = f"model.hf_init={path}"
    problems = _fit_problems(config, model)
    if problems:
        raise UserError(
            f"{what}: the TimeSformer there does not fit this model: {'; '.join(problems)}; "
            "set model.variant / model.embed_dim / model.depth / model.num_heads / model.patch_size to its sizes"
        )
    state: dict[str, torch.Tensor] = {}
    unknown = []
    for name, value in raw.items():
        ours = hf_to_ours(name)
        if ours is None:
            unknown.append(name)
        else:
            state[ours] = value.float()
    target = model.state_dict()
    if not config.qkv_bias:  # no bias is a zero bias
        for key in target:
            if key.endswith("qkv.bias") and key not in state:
                state[key] = torch.zeros_like(target[key])
    head_file = state.get("head.weight")
    keep_head = head_file is not None and head_file.shape == target["head.weight"].shape
    if not keep_head:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    before = {k: tuple(state[k].shape) for k in ("pos_embed", "time_embed") if k in state}
    fit_embeddings(state, model)
    resized = [k for k, shape in before.items() if tuple(state[k].shape) != shape]
    missing = [k for k in target if k not in state and not k.startswith("head.")]
    unexpected = unknown + [k for k in state if k not in target]
    bad = shape_mismatches(state, target)
    if missing or unexpected or bad:
        parts = [
            f"{len(v)} {kind} ({first_names(v, 3)})"
            for kind, v in (("shape mismatches", bad), ("missing weights", missing), ("unexpected weights", unexpected))
            if v
        ]
        raise UserError(f"{what}: weights do not fit this model: {'; '.join(parts)}")
    model.load_state_dict({**{k: v for k, v in target.items() if k.startswith("head.")}, **state}, strict=True)
    kind = (config.architectures or ["TimesformerModel"])[0]
    if keep_head:
        names = [str(config.id2label.get(i, i)) for i in range(head_file.shape[0])]
        head = f"kept ({len(names)} classes: {first_names(names, 4)})"
    else:
        head = "new (none there)" if head_file is None else f"new ({head_file.shape[0]} classes there)"
    log.info(
        "Hugging Face init from %s (%s): %d tensors loaded; head %s; %s",
        path,
        kind,
        len(state),
        head,
        f"resized {', '.join(resized)}" if resized else "embeddings as saved",
    )
    return {
        "source": str(path),
        "kind": kind,
        "loaded": len(state),
        "head": "kept" if keep_head else "new",
        "resized": resized,
    }
