"""Checkpoint interop: ImageNet ViT init (pth, safetensors, npz), official layouts, export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer

from svformer import build_model, load_imagenet_vit, load_official
from svformer.errors import UserError
from svformer.run_dir import (
    CorruptCheckpoint,
    complete_checkpoints,
    latest_checkpoint,
    load_exported,
    load_trained,
    save_exported,
    verify,
)

TINY = dict(embed_dim=64, depth=2, num_heads=2)


def tiny_model(num_frames: int = 4, img_size: int = 32, seed: int = 0, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("tiny", 5, num_frames=num_frames, img_size=img_size, **TINY, **kw).eval()


def timm_vit(img_size: int = 32, **kw) -> VisionTransformer:
    torch.manual_seed(1)
    args = dict(img_size=img_size, patch_size=16, num_classes=5, **TINY)
    args.update(kw)
    return VisionTransformer(**args).eval()


def trained_like(model: torch.nn.Module) -> torch.nn.Module:
    """Non-zero temporal_fc/time_embed so that a round trip checks every tensor."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model


def test_identical_frames_match_timm_vit_after_imagenet_init(tmp_path: Path) -> None:
    vit = timm_vit()
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    model = tiny_model()
    report = load_imagenet_vit(model, tmp_path / "vit.pth")
    assert "head.weight" in report["skipped"] and "head.weight" in report["missing"]
    assert "blocks.1.temporal_attn.qkv.weight" in report["from_spatial"]
    assert set(report["missing"]) == {"time_embed", "head.weight", "head.bias"} | {
        f"blocks.{i}.temporal_fc.{w}" for i in range(2) for w in ("weight", "bias")
    }
    torch.testing.assert_close(model.blocks[0].temporal_attn.qkv.weight, vit.blocks[0].attn.qkv.weight)
    model.head.load_state_dict(vit.head.state_dict())

    frame = torch.randn(2, 3, 32, 32)
    video = frame[:, :, None].expand(-1, -1, 4, -1, -1)  # T identical frames
    with torch.no_grad():
        torch.testing.assert_close(model(video), vit(frame), rtol=0, atol=1e-5)


def test_imagenet_init_from_safetensors_resizes_the_position_grid(tmp_path: Path) -> None:
    vit = timm_vit(img_size=32)  # 2x2 grid
    save_file(vit.state_dict(), str(tmp_path / "vit.safetensors"))
    model = tiny_model(img_size=64)  # 4x4 grid
    load_imagenet_vit(model, tmp_path / "vit.safetensors")
    pos = model.pos_embed[0].detach()
    assert torch.equal(pos[0], vit.pos_embed[0, 0])
    src = vit.pos_embed[0, 1:].reshape(2, 2, 64)
    dst = pos[1:].reshape(4, 4, 64)
    assert torch.equal(dst[0, 1], src[0, 0]) and torch.equal(dst[3, 2], src[1, 1])  # nearest


def to_npz(vit: VisionTransformer, path: Path) -> None:
    """Write a timm ViT in the original JAX ViT .npz naming (the inverse of timm's npz loader)."""
    sd = {k: v.detach().numpy() for k, v in vit.state_dict().items()}
    d, h = vit.embed_dim, vit.blocks[0].attn.num_heads
    w = {
        "embedding/kernel": sd["patch_embed.proj.weight"].transpose(2, 3, 1, 0),
        "embedding/bias": sd["patch_embed.proj.bias"],
        "cls": sd["cls_token"],
        "Transformer/posembed_input/pos_embedding": sd["pos_embed"],
        "Transformer/encoder_norm/scale": sd["norm.weight"],
        "Transformer/encoder_norm/bias": sd["norm.bias"],
        "head/kernel": sd["head.weight"].T,
        "head/bias": sd["head.bias"],
    }
    for i in range(len(vit.blocks)):
        p, b = f"Transformer/encoderblock_{i}/", f"blocks.{i}."
        qkv_w, qkv_b = sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"]
        for j, name in enumerate(("query", "key", "value")):
            w[f"{p}MultiHeadDotProductAttention_1/{name}/kernel"] = qkv_w[j * d : (j + 1) * d].T.reshape(d, h, -1)
            w[f"{p}MultiHeadDotProductAttention_1/{name}/bias"] = qkv_b[j * d : (j + 1) * d].reshape(h, -1)
        w[f"{p}MultiHeadDotProductAttention_1/out/kernel"] = (
            sd[b + "attn.proj.weight"].reshape(d, h, -1).transpose(1, 2, 0)
        )
        w[f"{p}MultiHeadDotProductAttention_1/out/bias"] = sd[b + "attn.proj.bias"]
        for ln, ours in (("LayerNorm_0", "norm1"), ("LayerNorm_2", "norm2")):
            w[f"{p}{ln}/scale"], w[f"{p}{ln}/bias"] = sd[b + ours + ".weight"], sd[b + ours + ".bias"]
        for r in range(2):
            w[f"{p}MlpBlock_3/Dense_{r}/kernel"] = sd[b + f"mlp.fc{r + 1}.weight"].T
            w[f"{p}MlpBlock_3/Dense_{r}/bias"] = sd[b + f"mlp.fc{r + 1}.bias"]
    np.savez(path, **w)


def test_imagenet_init_from_npz_equals_pth(tmp_path: Path) -> None:
    vit = timm_vit()
    to_npz(vit, tmp_path / "vit.npz")
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    from_npz, from_pth = tiny_model(seed=2), tiny_model(seed=2)
    load_imagenet_vit(from_npz, tmp_path / "vit.npz")
    load_imagenet_vit(from_pth, tmp_path / "vit.pth")
    for (name, a), b in zip(from_npz.state_dict().items(), from_pth.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)


def test_imagenet_shape_mismatch_names_file_and_key(tmp_path: Path) -> None:
    torch.save({"model": timm_vit(embed_dim=32, num_heads=2).state_dict()}, tmp_path / "deit.pth")
    with pytest.raises(UserError, match=r"deit\.pth.*(cls_token|pos_embed|patch_embed)"):
        load_imagenet_vit(tiny_model(), tmp_path / "deit.pth")
    with pytest.raises(UserError, match="does not exist"):
        load_imagenet_vit(tiny_model(), tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"\x80\x02garbage")
    with pytest.raises(UserError, match=r"junk\.pth could not be read"):
        load_official(tiny_model(), tmp_path / "junk.pth")


def official(state: dict[str, torch.Tensor], layout: str) -> dict:
    """Our state dict in the released TimeSformer or SVFormer layout."""
    out = {}
    for key, value in state.items():
        top_level_head = layout == "svformer" and key.startswith("head.")
        out[key if top_level_head else f"model.{key}"] = value.clone()
    return {"epoch": 30, "model_state": out, "cfg": "TRAIN: ..."}


@pytest.mark.parametrize("layout", ["timesformer", "svformer"])
def test_official_layouts_round_trip(tmp_path: Path, layout: str) -> None:
    src = trained_like(tiny_model())
    torch.save(official(src.state_dict(), layout), tmp_path / "ckpt.pyth")
    dst = tiny_model(seed=3)
    assert load_official(dst, tmp_path / "ckpt.pyth")["loaded"] == len(src.state_dict())
    for (name, a), b in zip(dst.state_dict().items(), src.state_dict().values()):
        assert torch.equal(a, b), name


def test_official_accepts_our_own_state_dict() -> None:
    src = trained_like(tiny_model())
    dst = tiny_model(seed=3)
    load_official(dst, src.state_dict())
    assert torch.equal(dst.time_embed, src.time_embed)


def test_official_missing_and_unexpected_keys_are_named() -> None:
    state = official(tiny_model().state_dict(), "timesformer")["model_state"]
    del state["model.norm.weight"]
    state["model.extra.weight"] = torch.zeros(1)
    with pytest.raises(UserError, match=r"1 missing keys \(norm\.weight\).*1 unexpected keys \(model\.extra\.weight\)"):
        load_official(tiny_model(), state)
    other = build_model("tiny", 7, num_frames=4, img_size=32, **TINY).state_dict()
    with pytest.raises(UserError, match=r"shape mismatches \(head\.weight: file \(7, 64\)"):
        load_official(tiny_model(), other)


def test_official_time_embedding_is_interpolated() -> None:
    src = trained_like(tiny_model(num_frames=4))
    dst = tiny_model(num_frames=8)
    load_official(dst, src.state_dict())
    assert torch.equal(dst.time_embed[0, ::2], src.time_embed[0]) and torch.equal(
        dst.time_embed[0, 1::2], src.time_embed[0]
    )


def test_export_round_trips_exactly(tmp_path: Path) -> None:
    state = trained_like(tiny_model()).state_dict()
    config = {"model": {"variant": "tiny", "embed_dim": 64}, "data": {"mean": [0.45, 0.45, 0.45]}}
    path = save_exported(tmp_path / "out" / "model.safetensors", state, config, 5)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.safetensors"]  # no temp file left
    loaded, loaded_config, num_classes = load_exported(path)
    assert loaded_config == config and num_classes == 5 and set(loaded) == set(state)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_load_exported_rejects_foreign_files(tmp_path: Path) -> None:
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(UserError, match="not an svformer export"):
        load_exported(tmp_path / "plain.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(UserError, match="junk.safetensors"):
        load_exported(tmp_path / "junk.safetensors")
    with pytest.raises(UserError, match="does not exist"):
        load_exported(tmp_path / "missing.safetensors")


def test_a_step_directory_without_its_index_is_no_checkpoint(tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoints" / "step-000004"
    ckpt.mkdir(parents=True)
    torch.save({"step": 4, "world_size": 1}, ckpt / "state.pt")
    (ckpt / "config.yaml").write_text("{}\n")
    assert complete_checkpoints(tmp_path) == [] and latest_checkpoint(tmp_path) is None
    with pytest.raises(CorruptCheckpoint, match="no index.json"):
        verify(ckpt)
    with pytest.raises(UserError, match="no complete checkpoint"):
        load_trained(tmp_path)
