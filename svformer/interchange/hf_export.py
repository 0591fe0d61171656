"""`export --format hf`: a trained model as a transformers `TimesformerForVideoClassification` directory.

The directory holds config.json (sizes, frames, image size, id2label/label2id from the run's
class names), model.safetensors and preprocessor_config.json: the `VideoMAEImageProcessor` Hugging
Face pairs with TimeSformer, set to this run's test transform (short side to data.test_short_side,
centre crop data.img_size, data.mean/std on [0, 1] pixels).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from svformer.config import DataConfig
from svformer.errors import UserError
from svformer.interchange.hf import LAYER_NORM_EPS, ours_to_hf
from svformer.interchange.source import load_export_source

log = logging.getLogger(__name__)


def hf_config(model: nn.Module, class_names: list[str]) -> Any:
    """The TimesformerConfig of a svformer TimeSformer, sizes read off the network itself.

    drop_path_rate stays 0 (an inference export; transformers 5.23 types it int, so 0.1 is refused).
    """
    from transformers import TimesformerConfig

    block = model.blocks[0]
    return TimesformerConfig(
        image_size=model.grid_size[0] * model.patch_size,
        patch_size=model.patch_size,
        num_channels=model.patch_embed.proj.in_channels,
        num_frames=model.time_embed.shape[1],
        hidden_size=model.embed_dim,
        num_hidden_layers=len(model.blocks),
        num_attention_heads=block.attn.num_heads,
        intermediate_size=block.mlp.fc1.out_features,
        hidden_act="gelu",
        layer_norm_eps=LAYER_NORM_EPS,
        qkv_bias=True,
        attention_type="divided_space_time",
        id2label=dict(enumerate(class_names)),
        label2id={name: i for i, name in enumerate(class_names)},
        architectures=["TimesformerForVideoClassification"],
    )


def hf_processor(data: DataConfig) -> Any:
    """The VideoMAEImageProcessor doing this run's single-view test transform on RGB frames."""
    from transformers import VideoMAEImageProcessor

    return VideoMAEImageProcessor(
        do_resize=True,
        size={"shortest_edge": data.test_short_side},
        do_center_crop=True,
        crop_size={"height": data.img_size, "width": data.img_size},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(data.mean),
        image_std=list(data.std),
    )


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "config.json").is_file())):
        raise UserError(f"--out {out}: exists and is not a Hugging Face model directory; give a new directory")


def _commit_dir(tmp: Path, out: Path) -> None:
    """Put the finished `tmp` at `out`: a reader sees the old complete directory or the new one, never half."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.replace(out, old / out.name)
    os.replace(tmp, out)
    shutil.rmtree(old)


def export_hf(ckpt: str | Path, out: str | Path, which: str = "teacher") -> Path:
    """Write the `which` model of a run/checkpoint/export as a transformers TimeSformer directory `out`.

    `TimesformerForVideoClassification.from_pretrained(out)` loads it with no missing or unexpected
    keys and gives svformer's logits; `AutoImageProcessor.from_pretrained(out)` gives its processor.

    Raises:
        UserError: nothing usable at `ckpt`, or `out` is an existing directory of something else.
    """
    from transformers import TimesformerForVideoClassification
    from transformers.utils import logging as hf_logging

    out = Path(out)
    _check_out(out)
    source = load_export_source(ckpt, which)
    config = hf_config(source.model, source.class_names)
    hf_model = TimesformerForVideoClassification(config)
    # strict: every transformers parameter gets a svformer weight and none is left over
    hf_model.load_state_dict({ours_to_hf(k): v for k, v in source.model.state_dict().items()}, strict=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        hf_logging.disable_progress_bar()
        hf_model.save_pretrained(tmp)
        hf_processor(source.config.data).save_pretrained(tmp)
        _commit_dir(tmp, out)
    except OSError as err:
        raise UserError(f"could not write {out} ({err.strerror or err})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %s (step %d) as a transformers TimeSformer to %s", source.which, source.step, out)
    return out
