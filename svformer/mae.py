"""Masked-video autoencoding (VideoMAE, Tong et al. 2022) around the project's TimeSformer.

Read top to bottom: tube masks as index sets -> patches and their per-patch normalised targets ->
the light decoder -> the autoencoder (encoder on visible tubes + decoder) -> the loss.

Tube masking hides the same random spatial positions in every frame, so the encoder
(`TimeSformer.forward_visible`) sees a regular T x Nv grid. The decoder gets the encoded visible
tokens back in place, a shared mask token at every hidden position, its own position and time
embeddings, runs joint space-time attention over all T*N tokens (timm `Block`s) and predicts the
pixels of the hidden patches only. The loss is their mean squared error, so visible patches cannot
enter it.
"""

from __future__ import annotations

from functools import partial

import torch
from einops import rearrange, repeat
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from svformer.model import TimeSformer, layer_norm
from svformer.ssl.masks import tube_mask


def mae_mask(
    batch: int, frames: int, grid_hw: tuple[int, int], mask_ratio: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tube mask as index sets: int(mask_ratio * gh * gw) hidden spatial positions per clip, every frame.

    Args:
        batch, frames: B and T (T only checks the mask is constant over time).
        grid_hw: (gh, gw) patch grid.
        mask_ratio: share of spatial positions hidden, in [0, 1).
    Returns:
        (visible long (B, Nv), hidden long (B, Nh)) row-major positions, each sorted, Nv + Nh = gh * gw; CPU.
    """
    hidden_map = tube_mask(batch, frames, grid_hw, mask_ratio, generator)  # True = hidden, (B, T, gh, gw)
    hidden_flat = hidden_map[:, 0].flatten(1)  # the same in every frame
    num_visible = int((~hidden_flat[0]).sum())
    if num_visible == 0:
        raise ValueError(f"mask ratio {mask_ratio} hides every one of the {hidden_flat.shape[1]} patches of a frame")
    order = hidden_flat.int().argsort(dim=1, stable=True)  # visible positions first, each part ascending
    return order[:, :num_visible], order[:, num_visible:]


def patchify(video: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, T, N, p*p*C) patches, N = (H/p)(W/p) row-major, pixels (p q c)."""
    return rearrange(video, "b c t (h p) (w q) -> b t (h w) (p q c)", p=patch_size, q=patch_size)


def unpatchify(patches: torch.Tensor, patch_size: int, grid_hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of `patchify`: (B, T, N, p*p*C) -> (B, C, T, H, W)."""
    return rearrange(
        patches, "b t (h w) (p q c) -> b c t (h p) (w q)", h=grid_hw[0], w=grid_hw[1], p=patch_size, q=patch_size
    )


def take_positions(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, T, N, D) at spatial positions `index` (B, K) of every frame -> (B, T, K, D)."""
    return torch.gather(x, 2, repeat(index, "b k -> b t k d", t=x.shape[1], d=x.shape[3]))


def patch_stats(pixels: torch.Tensor, patch_size: int, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Per patch and channel mean and std (unbiased, + eps) of (B, C, T, H, W) pixels -> 2 x (B, T, N, 1, C)."""
    x = rearrange(patchify(pixels, patch_size), "b t n (pq c) -> b t n pq c", c=pixels.shape[1])
    return x.mean(dim=3, keepdim=True), x.var(dim=3, unbiased=True, keepdim=True).sqrt() + eps


def pixel_targets(pixels: torch.Tensor, hidden: torch.Tensor, patch_size: int, norm_pix: bool) -> torch.Tensor:
    """Reconstruction targets of the hidden patches.

    Args:
        pixels: float (B, C, T, H, W) clip (the loss's choice of scale: [0, 1] or normalised).
        hidden: long (B, Nh) hidden spatial positions.
        norm_pix: normalise each patch's pixels per channel to zero mean, unit std (VideoMAE's target).
    Returns:
        float (B, T*Nh, p*p*C) in the order of `hidden`, frame by frame.
    """
    c = pixels.shape[1]
    patches = patchify(pixels.float(), patch_size)  # (B, T, N, P)
    if norm_pix:
        mean, std = patch_stats(pixels.float(), patch_size)
        x = rearrange(patches, "b t n (pq c) -> b t n pq c", c=c)
        patches = rearrange((x - mean) / std, "b t n pq c -> b t n (pq c)")
    return rearrange(take_positions(patches, hidden), "b t k p -> b (t k) p")


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the hidden patches' pixels: (B, T*Nh, P) x 2 -> float32 scalar."""
    return (pred.float() - target.float()).pow(2).mean()


class Decoder(nn.Module):
    """The light VideoMAE decoder: visible tokens back in place, mask tokens elsewhere, joint attention.

    Args:
        encoder_dim: D of the encoder tokens.
        num_frames, grid_hw: the token grid T x (gh, gw) it is built for.
        patch_pixels: p*p*C outputs per token.
        dim, depth, num_heads: the decoder's width, blocks and heads.
    """

    def __init__(
        self,
        encoder_dim: int,
        num_frames: int,
        grid_hw: tuple[int, int],
        patch_pixels: int,
        dim: int = 384,
        depth: int = 4,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.num_frames, self.grid_size = num_frames, tuple(grid_hw)
        self.embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1, grid_hw[0] * grid_hw[1], dim))  # per spatial position
        self.time_embed = nn.Parameter(torch.zeros(1, num_frames, 1, dim))  # per frame
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm) for _ in range(depth)
        )
        self.norm = layer_norm(dim)
        self.head = nn.Linear(dim, patch_pixels)
        for param in (self.mask_token, self.pos_embed, self.time_embed):
            trunc_normal_(param, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, tokens: torch.Tensor, visible: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """tokens (B, T*Nv, D) of the visible positions `visible` (B, Nv) -> pixels of `hidden` (B, Nh):
        (B, T*Nh, P), frame by frame in the order of `hidden`."""
        t, n = self.num_frames, self.grid_size[0] * self.grid_size[1]
        b, nv, nh = tokens.shape[0], visible.shape[1], hidden.shape[1]
        if nv + nh != n or tokens.shape[1] != t * nv:
            raise ValueError(
                f"decoder built for {t} frames x {n} patches, got {tokens.shape[1]} tokens of "
                f"{nv} visible + {nh} hidden positions"
            )
        x_vis = rearrange(self.embed(tokens), "b (t k) d -> b t k d", t=t)
        x_mask = self.mask_token.expand(b, t, nh, -1).to(x_vis.dtype)
        x = torch.cat([x_vis, x_mask], dim=2)  # (B, T, N, Dd) in the order [visible, hidden]
        restore = torch.cat([visible, hidden], dim=1).argsort(dim=1)
        x = take_positions(x, restore) + self.pos_embed + self.time_embed  # back in grid order
        x = rearrange(x, "b t n d -> b (t n) d")
        for block in self.blocks:
            x = block(x)
        x = take_positions(rearrange(self.norm(x), "b (t n) d -> b t n d", t=t), hidden)  # (B, T, Nh, Dd)
        return rearrange(self.head(x), "b t k p -> b (t k) p")


class MaskedVideoAutoencoder(nn.Module):
    """Encoder (a TimeSformer without its head) + `Decoder`: one module, so one optimizer trains both.

    The encoder's parameter names are the TimeSformer's under `encoder.`; `weight_import.load_pretrained_encoder`
    moves them into a classification model.
    """

    def __init__(self, encoder: TimeSformer, decoder: Decoder) -> None:
        super().__init__()
        encoder.head = nn.Identity()  # unused here; a fine-tuned model starts a new head
        self.encoder, self.decoder = encoder, decoder
        self.patch_size = encoder.patch_size

    def no_weight_decay(self) -> set[str]:
        """Embeddings, class and mask tokens (timm convention, prefixed)."""
        return {f"encoder.{name}" for name in self.encoder.no_weight_decay()} | {
            "decoder.mask_token",
            "decoder.pos_embed",
            "decoder.time_embed",
        }

    def forward(self, video: torch.Tensor, visible: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Predicted pixels of the hidden patches.

        Args:
            video: float (B, C, T, H, W), normalised.
            visible, hidden: long (B, Nv), (B, Nh) spatial positions (`mae_mask`).
        Returns:
            (B, T*Nh, p*p*C), comparable with `pixel_targets(..., hidden, ...)`.
        """
        return self.decoder(self.encoder.forward_visible(video, visible), visible, hidden)


def build_autoencoder(
    encoder: TimeSformer,
    num_frames: int,
    img_size: int,
    decoder_dim: int,
    decoder_depth: int,
    decoder_heads: int,
    in_chans: int = 3,
) -> MaskedVideoAutoencoder:
    """The autoencoder for clips of `num_frames` x `img_size`^2 around `encoder`."""
    grid = (img_size // encoder.patch_size, img_size // encoder.patch_size)
    decoder = Decoder(
        encoder.embed_dim, num_frames, grid, encoder.patch_size**2 * in_chans, decoder_dim, decoder_depth, decoder_heads
    )
    return MaskedVideoAutoencoder(encoder, decoder)
