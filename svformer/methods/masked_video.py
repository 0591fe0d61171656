"""Masked-video pretraining (VideoMAE-style) as a training method: `cli.py pretrain`.

Each step: one batch of clips (labels unused) from the in-domain shards or the synthetic set, a tube
mask per clip from the method's generator, the encoder on the visible tubes, the decoder predicts
the hidden patches, MSE on their (per-patch normalised) pixels. The student (`MaskedVideo.build_model`)
is encoder + decoder in one module. Every `pretrain.recon_every` steps rank 0
writes `recon.png` (frames, mask, reconstruction) into the run directory.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from svformer.config import Config
from svformer.data import Stream, shard_urls, video_loader
from svformer.errors import UserError, load_error_detail
from svformer.mae import (
    MaskedVideoAutoencoder,
    build_autoencoder,
    mae_mask,
    patch_stats,
    patchify,
    pixel_targets,
    reconstruction_loss,
    take_positions,
    unpatchify,
)
from svformer.methods.base import Batch, Method, StepLogs, param_dtype, register
from svformer.model import build_from_config
from svformer.reports import plot_reconstruction
from svformer.views import normalize
from svformer.weight_import import load_configured_init

log = logging.getLogger(__name__)
RECON_FILE = "recon.png"


def load_autoencoder(model: MaskedVideoAutoencoder, path: str | Path) -> None:
    """Continue pretraining from another run's autoencoder (strict; a shape that differs is one line)."""
    from svformer.run_dir import load_trained

    weights = load_trained(path, "model.pretrain_init")
    state = weights.states.get("student", {})
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise UserError(
            f"{weights.source}: not an autoencoder of this shape ({load_error_detail(err)}); "
            "use the same model.* and pretrain.* settings"
        ) from None
    log.info("continuing pretraining from %s (step %d)", weights.source, weights.step)


def pretrain_urls(cfg: Config) -> tuple[list[str], list[str]]:
    """(in-domain shard URLs, synthetic shard URLs) of the streams the config uses (in-domain: pretrain.data,
    else data.unlabeled and data.labeled). A spec that names no shard is one line naming its config key."""
    keys = [("pretrain.data", spec) for spec in cfg.pretrain.data] or [
        (key, getattr(cfg.data, key.split(".")[1]))
        for key in ("data.unlabeled", "data.labeled")
        if getattr(cfg.data, key.split(".")[1])
    ]
    in_domain = [] if cfg.pretrain.synthetic_weight >= 1 else keys
    synthetic = [("pretrain.synthetic", cfg.pretrain.synthetic)] if cfg.pretrain.synthetic_weight > 0 else []
    hints = (
        "pretrain.synthetic_weight=1 pretrains on the synthetic set alone",
        "make it with `cli.py synth --kind pretrain` and `prep`, or set pretrain.synthetic= and "
        "pretrain.synthetic_weight=0",
    )
    found = []
    for group, hint in zip((in_domain, synthetic), hints):
        urls = []
        for key, spec in group:
            try:
                urls += shard_urls(spec)
            except UserError as err:
                raise UserError(f"{key}: {err}; {hint}") from None
        found.append(urls)
    return found[0], found[1]


def stream_of_step(step: int, synthetic_weight: float) -> str:
    """ "synthetic" for a `synthetic_weight` share of steps, spread evenly (a fixed function of the step,
    so a resumed run continues the same interleaving); else "videos"."""
    if synthetic_weight >= 1.0:
        return "synthetic"
    return "synthetic" if math.floor((step + 1) * synthetic_weight) > math.floor(step * synthetic_weight) else "videos"


@register("masked_video")
class MaskedVideo(Method):
    """Masked autoencoding on unlabeled clips; the student is a `MaskedVideoAutoencoder`."""

    log_keys = {"losses": ("loss", "loss_videos", "loss_synthetic")}

    @classmethod
    def build_model(cls, cfg: Config) -> MaskedVideoAutoencoder:
        """The configured TimeSformer as encoder plus the light decoder.

        `model.imagenet_init` / `model.official_init` initialise the encoder; `model.pretrain_init` (an
        earlier pretraining run) continues from its encoder and decoder, e.g. synthetic then in-domain videos.
        """
        encoder = load_configured_init(build_from_config(cfg), cfg.model, encoder_only=False)
        p = cfg.pretrain
        model = build_autoencoder(
            encoder, cfg.data.num_frames, cfg.data.img_size, p.decoder_dim, p.decoder_depth, p.decoder_heads
        )
        if cfg.model.pretrain_init:
            load_autoencoder(model, cfg.model.pretrain_init)
        return model

    @classmethod
    def check_data(cls, cfg: Config) -> int:
        pretrain_urls(cfg)  # every pretraining spec names shards, or one line naming its config key
        return 0  # no labeled set, no epochs

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.cfg = ctx.cfg.pretrain
        self.patch_size = ctx.student_module.patch_size
        self._shown: dict[str, torch.Tensor] | None = None  # one clip kept for recon.png

    def open_streams(self, start_step: int) -> dict[str, Stream]:
        cfg, ctx = self.ctx.cfg, self.ctx
        in_domain, synthetic = pretrain_urls(cfg)
        sources = {"videos": in_domain, "synthetic": synthetic}
        return {
            name: video_loader(cfg, urls, ctx.rank, cfg.train.seed, start_step, name)
            for name, urls in sources.items()
            if urls
        }

    def wants(self, step: int) -> tuple[str, ...]:
        return (stream_of_step(step, self.cfg.synthetic_weight),)

    def loss(self, batch: Batch, step: int) -> tuple[torch.Tensor, StepLogs]:
        ((name, data),) = batch.items()
        video = data["video"]  # uint8 (B, C, T, S, S) on the device
        x = normalize(video, self.ctx.cfg.data.mean, self.ctx.cfg.data.std)
        b, _, t, h, w = x.shape
        visible, hidden = mae_mask(
            b, t, (h // self.patch_size, w // self.patch_size), self.cfg.mask_ratio, self.generator
        )
        visible, hidden = visible.to(x.device), hidden.to(x.device)
        pred = self.ctx.student(x.to(param_dtype(self.ctx.student_module)), visible, hidden)  # (B, T*Nh, P)
        # VideoMAE's targets: per-patch normalised [0, 1] pixels; without norm_pix, the normalised input
        target = pixel_targets(
            video.float() / 255.0 if self.cfg.norm_pix_loss else x, hidden, self.patch_size, self.cfg.norm_pix_loss
        )
        loss = reconstruction_loss(pred, target)
        if self._wants_picture(step) and self._shown is None:
            self._shown = {
                "video": video[0].detach().cpu(),
                "visible": visible[0].cpu(),
                "hidden": hidden[0].cpu(),
                "pred": pred[0].detach().float().cpu(),
                "step": torch.tensor(step),
            }
        value = loss.detach()
        return loss, StepLogs({"loss": value, f"loss_{name}": value})

    def _wants_picture(self, step: int) -> bool:
        every = self.cfg.recon_every
        return self.ctx.rank == 0 and every > 0 and (step + 1) % every == 0

    def after_step(self, step: int) -> None:
        if self._shown is not None:
            shown, self._shown = self._shown, None
            pixels = reconstruct(
                shown["video"],
                shown["visible"],
                shown["hidden"],
                shown["pred"],
                self.patch_size,
                self.cfg.norm_pix_loss,
                self.ctx.cfg.data.mean,
                self.ctx.cfg.data.std,
            )
            plot_reconstruction(
                Path(self.ctx.cfg.output_dir) / RECON_FILE,
                shown["video"],
                shown["hidden"],
                pixels,
                self.patch_size,
                step + 1,
            )

    def eval_models(self) -> dict[str, nn.Module]:
        return {}  # an autoencoder has no classifier to score; fine-tune it (model.pretrain_init) and eval

    def state_dict(self) -> dict[str, Any]:
        return {}  # everything the method draws comes from its generator, which is saved per rank


def reconstruct(
    video: torch.Tensor,
    visible: torch.Tensor,
    hidden: torch.Tensor,
    pred: torch.Tensor,
    patch_size: int,
    norm_pix: bool,
    mean,
    std,
) -> torch.Tensor:
    """One clip's reconstruction in [0, 1]: visible patches as they were, hidden ones predicted.

    Args:
        video: uint8 (C, T, H, W). visible, hidden: long (Nv,), (Nh,). pred: (T*Nh, P) the model's output.
        norm_pix: predictions are per-patch normalised; they are shown with the true patches' mean and std
            (as MAE's figures do), so the picture shows structure, not the patch's mean colour.
    Returns:
        float (C, T, H, W) in [0, 1].
    """
    pixels = video.float()[None] / 255.0  # (1, C, T, H, W)
    c, t = pixels.shape[1], pixels.shape[2]
    grid = (pixels.shape[3] // patch_size, pixels.shape[4] // patch_size)
    patches = patchify(pixels, patch_size)  # (1, T, N, P)
    guess = pred.reshape(1, t, -1, patches.shape[-1])  # (1, T, Nh, P)
    guess = guess.unflatten(-1, (-1, c))  # (1, T, Nh, pq, C)
    if norm_pix:
        m, s = (
            take_positions(v.flatten(3), hidden[None]).unflatten(-1, (1, c)) for v in patch_stats(pixels, patch_size)
        )  # 2 x (1, T, Nh, 1, C)
        guess = guess * s + m
    else:
        mean_t, std_t = torch.tensor(mean), torch.tensor(std)
        guess = guess * std_t + mean_t
    index = hidden[None, None, :, None].expand(1, t, -1, patches.shape[-1])
    patches = patches.scatter(2, index, guess.flatten(3))
    return unpatchify(patches, patch_size, grid)[0].clamp(0, 1)


__all__ = ["MaskedVideo", "pretrain_urls", "reconstruct", "stream_of_step"]
