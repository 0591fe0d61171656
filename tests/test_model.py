"""TimeSformer: shapes, size changes, the token-mix path, precision, attention paths, checkpointing."""

from __future__ import annotations

import pytest
import torch

from svformer import build_model
from svformer.errors import UserError

TINY = dict(embed_dim=64, depth=2, num_heads=2)


def tiny_model(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    args = dict(num_frames=4, img_size=32, **TINY)
    args.update(kw)
    return build_model("tiny", 5, **args).eval()


def randomise_zero_inits(model: torch.nn.Module) -> None:
    """temporal_fc and time_embed start at zero; give them values so the temporal path is exercised."""
    with torch.no_grad():
        model.time_embed.normal_(std=0.02)
        for block in model.blocks:
            block.temporal_fc.weight.normal_(std=0.02)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    m = tiny_model()
    randomise_zero_inits(m)
    return m


@pytest.mark.parametrize("variant", ["tiny", "small", "base"])
def test_output_shape_for_every_variant(variant: str) -> None:
    model = build_model(variant, 5, num_frames=4, img_size=32, **TINY)
    assert model(torch.randn(2, 3, 4, 32, 32)).shape == (2, 5)


def test_real_variants_have_published_parameter_counts() -> None:
    base = build_model("base", 400, num_frames=8)
    assert abs(sum(p.numel() for p in base.parameters()) / 1e6 - 121.6) < 0.5
    small = build_model("small", 400, num_frames=8)
    assert abs(sum(p.numel() for p in small.parameters()) / 1e6 - 30.7) < 0.5
    assert base.pos_embed.shape == (1, 197, 768) and base.time_embed.shape == (1, 8, 768)


@pytest.mark.parametrize("frames,height,width", [(4, 32, 32), (2, 32, 32), (8, 32, 32), (4, 48, 48), (3, 64, 32)])
def test_other_frame_counts_and_sizes_run(model: torch.nn.Module, frames: int, height: int, width: int) -> None:
    with torch.no_grad():
        out = model(torch.randn(2, 3, frames, height, width))
    assert out.shape == (2, 5) and torch.isfinite(out).all()


def test_position_embedding_is_resized_nearest_keeping_cls(model: torch.nn.Module) -> None:
    pos = model._pos_embed(4, 4)  # built for a 2x2 grid
    assert pos.shape == (1, 17, 64)
    assert torch.equal(pos[0, 0], model.pos_embed[0, 0])
    grid = model.pos_embed[0, 1:].reshape(2, 2, 64)
    assert torch.equal(pos[0, 1:].reshape(4, 4, 64)[3, 0], grid[1, 0])


def test_zero_inits_and_no_weight_decay_names() -> None:
    model = tiny_model(drop_path_rate=0.1)
    assert model.time_embed.abs().sum() == 0
    assert all(b.temporal_fc.weight.abs().sum() == 0 and b.temporal_fc.bias.abs().sum() == 0 for b in model.blocks)
    names = dict(model.named_parameters())
    assert model.no_weight_decay() <= set(names)
    assert model.blocks[0].drop_path.__class__.__name__ == "Identity"
    assert model.blocks[-1].drop_path.drop_prob == pytest.approx(0.1)


def test_zero_time_embedding_starts_blind_to_frame_order_and_a_random_one_does_not() -> None:
    torch.manual_seed(0)
    video = torch.randn(2, 3, 4, 32, 32)
    reversed_video = video.flip(2)
    with torch.no_grad():
        blind = tiny_model().eval()
        assert torch.allclose(blind(video), blind(reversed_video), atol=1e-5)
        seeing = tiny_model(time_embed_std=1.0).eval()
        assert 0.3 < seeing.time_embed.std() < 1.5 and seeing.time_embed.abs().max() <= 2.0
        assert (seeing(video) - seeing(reversed_video)).abs().max() > 1e-3


def test_all_true_mask_equals_plain_call(model: torch.nn.Module) -> None:
    video = torch.randn(3, 3, 4, 32, 32)
    mask = torch.ones(3, 4, 2, 2, dtype=torch.bool)
    with torch.no_grad():
        assert torch.equal(model(video, mix_mask=mask, mix_index=torch.tensor([2, 0, 1])), model(video))


def test_all_false_mask_equals_partner_clips(model: torch.nn.Module) -> None:
    video = torch.randn(3, 3, 4, 32, 32)
    idx = torch.tensor([2, 0, 1])
    mask = torch.zeros(3, 4, 2, 2, dtype=torch.bool)
    with torch.no_grad():
        torch.testing.assert_close(model(video, mix_mask=mask, mix_index=idx), model(video[idx]), rtol=0, atol=1e-6)


def test_partial_mask_mixes_tokens_after_patch_embedding(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    video = torch.randn(3, 3, 4, 32, 32, generator=g)
    idx = torch.tensor([1, 2, 0])
    mask = torch.rand(3, 4, 2, 2, generator=g) > 0.5
    mask[2] = True  # sample 2 keeps all its own tokens: its logits must not change

    def mix_by_hand(module, inputs, tokens):  # tokens (B, T, gh, gw, D)
        mixed = tokens.clone()
        for i in range(3):
            for t, y, x in (~mask[i]).nonzero().tolist():
                mixed[i, t, y, x] = tokens[idx[i], t, y, x]
        return mixed

    with torch.no_grad():
        mixed = model(video, mix_mask=mask, mix_index=idx)
        plain = model(video)
        handle = model.patch_embed.register_forward_hook(mix_by_hand)
        try:
            reference = model(video)
        finally:
            handle.remove()
    torch.testing.assert_close(mixed, reference, rtol=0, atol=1e-6)
    assert torch.equal(mixed[2], plain[2])
    assert not torch.allclose(mixed[0], plain[0])


def test_mix_arguments_are_checked(model: torch.nn.Module) -> None:
    video = torch.randn(2, 3, 4, 32, 32)
    with pytest.raises(ValueError, match="mix_mask"):
        model(video, mix_mask=torch.ones(2, 4, 3, 3, dtype=torch.bool), mix_index=torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="both"):
        model(video, mix_mask=torch.ones(2, 4, 2, 2, dtype=torch.bool))


def test_bf16_autocast_is_close_to_float32(model: torch.nn.Module) -> None:
    video = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        ref = model(video)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(video)
    assert (out.float() - ref).abs().max() <= 0.05 * ref.abs().max() + 1e-3


def test_bf16_module_runs_forward_and_backward() -> None:
    model = tiny_model().to(torch.bfloat16).train()
    video = torch.randn(2, 3, 4, 32, 32, dtype=torch.bfloat16)
    mask = torch.rand(2, 4, 2, 2) > 0.5
    out = model(video, mix_mask=mask, mix_index=torch.tensor([1, 0]))
    out.float().sum().backward()
    assert out.dtype == torch.bfloat16 and model.pos_embed.grad is not None
    assert model(torch.randn(1, 3, 2, 48, 48, dtype=torch.bfloat16)).shape == (1, 5)  # resized embeddings


def test_fused_and_unfused_attention_agree_in_float32(model: torch.nn.Module) -> None:
    unfused = tiny_model(fused_attention=False)
    unfused.load_state_dict(model.state_dict())
    video = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(unfused(video), model(video), rtol=0, atol=1e-5)


def test_grad_checkpointing_gives_the_same_gradients(model: torch.nn.Module) -> None:
    ckpt = tiny_model(grad_checkpointing=True)
    ckpt.load_state_dict(model.state_dict())
    video = torch.randn(2, 3, 4, 32, 32)
    grads = []
    for m in (model, ckpt):
        m.zero_grad()
        m(video).square().sum().backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    model.zero_grad()
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_build_model_rejects_bad_names() -> None:
    with pytest.raises(UserError, match="variant"):
        build_model("huge", 5)
    with pytest.raises(UserError, match="override 'dropout'"):
        build_model("tiny", 5, dropout=0.1)
    with pytest.raises(UserError, match="divisible"):
        build_model("tiny", 5, embed_dim=64, num_heads=3)
