"""TimeSformer with divided space-time attention, plus the token-mix path used by Tube TokenMix.

Read top to bottom: Attention -> Block (temporal, spatial, MLP) -> TimeSformer -> build_model ->
build_from_config.
Parameter names mirror the official TimeSformer layout (cls_token, pos_embed, time_embed,
patch_embed.proj, blocks.N.{norm1, attn, temporal_norm1, temporal_attn, temporal_fc, norm2, mlp},
norm, head) so that importing an official checkpoint is a rename (see weight_import.py).

Tokens are kept as (B, 1 + T*N, D): the class token, then frame 0's N patch tokens, frame 1's, ...
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange, reduce, repeat
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import nn
from torch.utils.checkpoint import checkpoint

from svformer.config import Config
from svformer.errors import UserError

VARIANTS: dict[str, dict[str, int]] = {
    "tiny": dict(embed_dim=192, depth=12, num_heads=3),  # ViT-Ti/16
    "small": dict(embed_dim=384, depth=12, num_heads=6),  # ViT-S/16
    "base": dict(embed_dim=768, depth=12, num_heads=12),  # ViT-B/16
}
OVERRIDES = (
    "patch_size",
    "embed_dim",
    "depth",
    "num_heads",
    "drop_path_rate",
    "mlp_ratio",
    "grad_checkpointing",
    "fused_attention",
    "in_chans",
    "time_embed_std",
)


def resize_pos_embed(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(1, 1 + h*w, D) -> (1, 1 + gh*gw, D): nearest resize of a square spatial grid, class entry kept.

    The one resize of position tables: the model's forward (other frame sizes) and weight import use it.
    """
    side = math.isqrt(pos.shape[1] - 1)
    cls_pos, table = pos[:, :1], rearrange(pos[:, 1:], "1 (h w) d -> 1 d h w", h=side)
    table = F.interpolate(table, size=grid, mode="nearest")  # nearest picks entries: exact in any dtype
    return torch.cat([cls_pos, rearrange(table, "1 d h w -> 1 (h w) d")], dim=1)


def resize_time_embed(time: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(1, T0, D) -> (1, T, D), nearest (as the official code); used by the forward and weight import."""
    table = F.interpolate(rearrange(time, "1 t d -> 1 d t"), size=num_frames, mode="nearest")
    return rearrange(table, "1 d t -> 1 t d")


def layer_norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=1e-6)


class Attention(nn.Module):
    """Multi-head self-attention over the second axis of (N, L, D).

    Args:
        dim: token width D.
        num_heads: heads; D must be divisible by it.
        fused: True uses `F.scaled_dot_product_attention`; False is the textbook
            softmax(q k^T / sqrt(d)) v with the softmax in float32 (the benchmark's unfused baseline).
    """

    def __init__(self, dim: int, num_heads: int, fused: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.fused = fused
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "n l (three h hd) -> three n h l hd", three=3, h=self.num_heads)
        if self.fused:
            x = F.scaled_dot_product_attention(q, k, v)  # (N, h, L, hd)
        else:
            scores = (q * self.scale) @ k.transpose(-2, -1)  # (N, h, L, L)
            x = scores.softmax(dim=-1, dtype=torch.float32).to(v.dtype) @ v
        return self.proj(rearrange(x, "n h l hd -> n l (h hd)"))


class Block(nn.Module):
    """One divided space-time block: temporal attention, spatial attention, MLP (each residual).

    Args:
        dim, num_heads, mlp_ratio: width, heads and MLP expansion.
        drop_path: stochastic-depth probability of this block (per sample).
        fused: attention implementation (see `Attention`).
    """

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0, fused: bool = True
    ) -> None:
        super().__init__()
        self.temporal_norm1 = layer_norm(dim)
        self.temporal_attn = Attention(dim, num_heads, fused)
        self.temporal_fc = nn.Linear(dim, dim)
        self.norm1 = layer_norm(dim)
        self.attn = Attention(dim, num_heads, fused)
        self.norm2 = layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x: (B, 1 + T*N, D) -> (B, 1 + T*N, D)."""
        b = x.shape[0]
        cls, patches = x[:, :1], x[:, 1:]  # (B, 1, D), (B, T*N, D)

        # Temporal: each spatial location attends over the T frames; the class token sits out.
        xt = rearrange(patches, "b (t n) d -> (b n) t d", t=num_frames)  # (B*N, T, D)
        xt = self.temporal_fc(self.temporal_attn(self.temporal_norm1(xt)))
        patches = patches + self.drop_path(rearrange(xt, "(b n) t d -> b (t n) d", b=b))

        # Spatial: each frame attends over [its own copy of the class token, its N tokens].
        xs = rearrange(patches, "b (t n) d -> (b t) n d", t=num_frames)  # (B*T, N, D)
        xs = torch.cat([repeat(cls, "b 1 d -> (b t) 1 d", t=num_frames), xs], dim=1)  # (B*T, 1+N, D)
        xs = self.attn(self.norm1(xs))
        cls_res = reduce(xs[:, :1], "(b t) 1 d -> b 1 d", "mean", t=num_frames)  # the T class copies merge
        patch_res = rearrange(xs[:, 1:], "(b t) n d -> b (t n) d", t=num_frames)
        x = torch.cat([cls, patches], dim=1) + self.drop_path(torch.cat([cls_res, patch_res], dim=1))

        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Per-frame non-overlapping patches: (B, C, T, H, W) -> (B, T, H/p, W/p, D)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b, _, _, h, w = video.shape
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"frame size {h}x{w} is not a multiple of the patch size {self.patch_size}")
        x = self.proj(rearrange(video, "b c t h w -> (b t) c h w"))  # (B*T, D, gh, gw)
        return rearrange(x, "(b t) d gh gw -> b t gh gw d", b=b)


def mix_tokens(tokens: torch.Tensor, mix_mask: torch.Tensor, mix_index: torch.Tensor) -> torch.Tensor:
    """Token mixing: keep sample i's token where `mix_mask` is True, else take sample `mix_index[i]`'s.

    Args:
        tokens: (B, T, gh, gw, D) patch tokens.
        mix_mask: bool (B, T, gh, gw).
        mix_index: long (B,), the partner of each sample.
    Returns:
        (B, T, gh, gw, D) mixed tokens.
    """
    if mix_mask.shape != tokens.shape[:4]:
        raise ValueError(
            f"mix_mask must have shape (B, T, gh, gw) = {tuple(tokens.shape[:4])}, got {tuple(mix_mask.shape)}"
        )
    if mix_index.shape != tokens.shape[:1]:
        raise ValueError(f"mix_index must have shape ({tokens.shape[0]},), got {tuple(mix_index.shape)}")
    return torch.where(mix_mask.bool()[..., None], tokens, tokens[mix_index])


class TimeSformer(nn.Module):
    """Video transformer with divided space-time attention.

    Args:
        num_classes: classifier outputs.
        num_frames: T the time embedding is built for (other T are interpolated on the fly).
        img_size: frame side the position embedding is built for (other sizes are resized on the fly).
        patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio: the ViT shape.
        drop_path_rate: stochastic depth of the last block, rising linearly from 0.
        fused_attention: SDPA (True) or plain softmax attention (False).
        grad_checkpointing: recompute each block in backward to save activation memory.
        time_embed_std: 0 starts the time embedding at zero (official), so the model begins blind to
            frame order; > 0 draws it from a truncated normal of that std instead.
    """

    def __init__(
        self,
        num_classes: int,
        num_frames: int = 8,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.1,
        fused_attention: bool = True,
        grad_checkpointing: bool = False,
        time_embed_std: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_frames = num_frames
        self.patch_size = patch_size
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.embed_dim = embed_dim
        self.grad_checkpointing = grad_checkpointing

        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid_size[0] * self.grid_size[1], embed_dim))
        self.time_embed = nn.Parameter(torch.zeros(1, num_frames, embed_dim))  # zero: starts as the 2D ViT
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # 0 ... drop_path_rate
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, rate, fused_attention) for rate in rates)
        self.norm = layer_norm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)
        self._init_weights(time_embed_std)

    def _init_weights(self, time_embed_std: float) -> None:
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Zero temporal_fc: the temporal branch adds nothing at first, so ImageNet weights act as-is.
        for block in self.blocks:
            nn.init.zeros_(block.temporal_fc.weight)
            nn.init.zeros_(block.temporal_fc.bias)
        if time_embed_std > 0:  # else zero: with zero temporal_fc, the model then starts as the 2-D ViT
            trunc_normal_(self.time_embed, std=time_embed_std, a=-2 * time_embed_std, b=2 * time_embed_std)

    def no_weight_decay(self) -> set[str]:
        """Parameter names excluded from weight decay (timm convention)."""
        return {"pos_embed", "cls_token", "time_embed"}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def _pos_embed(self, gh: int, gw: int) -> torch.Tensor:
        """(1, 1 + gh*gw, D): the built table, its spatial grid resized (nearest) if the grid differs."""
        return self.pos_embed if (gh, gw) == self.grid_size else resize_pos_embed(self.pos_embed, (gh, gw))

    def _time_embed(self, num_frames: int) -> torch.Tensor:
        """(1, T, D): the built table, interpolated (nearest, as the official code) if T differs."""
        return (
            self.time_embed
            if num_frames == self.time_embed.shape[1]
            else resize_time_embed(self.time_embed, num_frames)
        )

    def forward_features(
        self, video: torch.Tensor, mix_mask: torch.Tensor | None = None, mix_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """video float (B, C, T, H, W) -> normed class token (B, D). See `forward` for the mix args."""
        x = self.patch_embed(video)  # (B, T, gh, gw, D)
        if mix_mask is not None or mix_index is not None:
            if mix_mask is None or mix_index is None:
                raise ValueError("token mixing needs both mix_mask and mix_index")
            x = mix_tokens(x, mix_mask, mix_index)  # before position/time embeddings, as in SVFormer
        b, t, gh, gw, _ = x.shape
        pos = self._pos_embed(gh, gw)
        x = rearrange(x, "b t gh gw d -> b t (gh gw) d") + pos[:, None, 1:] + self._time_embed(t)[:, :, None]
        cls = (self.cls_token + pos[:, :1]).expand(b, -1, -1)  # (B, 1, D)
        x = torch.cat([cls, rearrange(x, "b t n d -> b (t n) d")], dim=1)  # (B, 1 + T*N, D)
        x = self._run_blocks(x, t)
        return self.norm(x[:, 0])  # LayerNorm is per token: norming only the class token is the same

    def _run_blocks(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """(B, 1 + T*N, D) through every block (N may be any per-frame token count)."""
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, num_frames, use_reentrant=False)
            else:
                x = block(x, num_frames)
        return x

    def forward_visible(self, video: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """The encoder on the visible tubes only (masked-video pretraining, svformer/mae.py).

        Every frame keeps the same Nv patch positions, so divided attention still sees a regular
        T x Nv grid and its cost falls with the mask ratio. Position embeddings are gathered at the
        visible positions; the time embedding is added as in `forward`. The class token is kept: it
        takes part in every frame's spatial attention as in `forward`, so a fine-tuned model starts
        from a trained class token instead of an untrained one that every patch attends to. It is
        not returned (the decoder reconstructs patches).

        Args:
            video: float (B, C, T, H, W), normalised.
            visible: long (B, Nv) spatial patch indices (row-major in the H/p x W/p grid), the same in every frame.
        Returns:
            normed patch tokens (B, T*Nv, D): frame 0's Nv tokens, frame 1's, ...
        """
        x = self.patch_embed(video)  # (B, T, gh, gw, D)
        b, t, gh, gw, d = x.shape
        pos = self._pos_embed(gh, gw)
        x = rearrange(x, "b t gh gw d -> b t (gh gw) d") + pos[:, None, 1:] + self._time_embed(t)[:, :, None]
        index = repeat(visible, "b nv -> b t nv d", t=t, d=d)
        x = torch.gather(x, 2, index)  # (B, T, Nv, D)
        cls = (self.cls_token + pos[:, :1]).expand(b, -1, -1)  # (B, 1, D)
        x = torch.cat([cls, rearrange(x, "b t nv d -> b (t nv) d")], dim=1)  # (B, 1 + T*Nv, D)
        x = self._run_blocks(x, t)
        return self.norm(x[:, 1:])

    def forward(
        self, video: torch.Tensor, mix_mask: torch.Tensor | None = None, mix_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Class logits of a batch of clips, optionally token-mixed.

        Args:
            video: float (B, C, T, H, W), normalised.
            mix_mask: optional bool (B, T, H/p, W/p): True keeps the sample's own token.
            mix_index: optional long (B,): where token (t, y, x) of sample i comes from when the mask is False.
        Returns:
            logits (B, num_classes).
        """
        return self.head(self.forward_features(video, mix_mask, mix_index))


def build_model(variant: str, num_classes: int, num_frames: int = 8, img_size: int = 224, **overrides) -> TimeSformer:
    """A randomly initialised TimeSformer of a named size (weights are loaded separately).

    Args:
        variant: tiny (ViT-Ti/16), small (ViT-S/16) or base (ViT-B/16).
        num_classes: classifier outputs.
        num_frames: T; img_size: frame side in pixels.
        overrides: any of patch_size, embed_dim, depth, num_heads, drop_path_rate (0.1), mlp_ratio (4),
            grad_checkpointing (False), fused_attention (True), in_chans (3), time_embed_std (0).
    Raises:
        UserError: unknown variant or override, or an inconsistent shape.
    """
    if variant not in VARIANTS:
        raise UserError(f"unknown model variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise UserError(f"unknown model override {unknown[0]!r}; valid: {', '.join(OVERRIDES)}")
    kwargs = {**VARIANTS[variant], "patch_size": 16, **overrides}
    if kwargs["embed_dim"] % kwargs["num_heads"]:
        raise UserError(f"embed_dim {kwargs['embed_dim']} is not divisible by num_heads {kwargs['num_heads']}")
    if img_size % kwargs["patch_size"]:
        raise UserError(f"img_size {img_size} is not a multiple of patch_size {kwargs['patch_size']}")
    if num_classes < 1 or num_frames < 1:
        raise UserError("num_classes and num_frames must be >= 1")
    return TimeSformer(num_classes, num_frames=num_frames, img_size=img_size, **kwargs)


def build_from_config(cfg: Config) -> TimeSformer:
    """The TimeSformer a run's config describes (`model.*`, `data.num_frames`, `data.img_size`), randomly
    initialised: the one place a config becomes a network (training, pretraining's encoder, eval, export,
    predict). Outside weights are loaded into it separately (`weight_import`)."""
    return build_model(
        cfg.model.variant,
        cfg.model.num_classes,
        num_frames=cfg.data.num_frames,
        img_size=cfg.data.img_size,
        grad_checkpointing=cfg.model.grad_checkpointing,
        **cfg.model.overrides(),
    )
