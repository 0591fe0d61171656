"""Masked-video pretraining: tube masks, the visible-only encoder, the loss, the method, the synthetic set,
the loop (SIGKILL + resume) and loading its encoder into train."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _runs import ROOT, cli, env, tiny_config

from svformer import build_model
from svformer.config import load_config
from svformer.errors import UserError
from svformer.mae import build_autoencoder, mae_mask, patchify, pixel_targets, reconstruction_loss
from svformer.ssl.masks import tube_mask

TINY = dict(num_frames=4, img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)


def tiny_encoder(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("tiny", 8, **{**TINY, **kw})
    with torch.no_grad():  # zero-initialised parts would hide the temporal path
        model.time_embed.normal_(std=0.02)
        for block in model.blocks:
            block.temporal_fc.weight.normal_(std=0.02)
    return model.eval()


@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9])
@pytest.mark.parametrize("grid", [(4, 4), (14, 14)])
def test_tube_mask_hides_exactly_the_asked_share_in_every_frame(ratio, grid):
    g = torch.Generator().manual_seed(0)
    hidden_map = tube_mask(6, 8, grid, ratio, torch.Generator().manual_seed(0))
    assert (hidden_map == hidden_map[:, :1]).all()  # constant over time
    visible, hidden = mae_mask(6, 8, grid, ratio, g)
    n = grid[0] * grid[1]
    assert hidden.shape == (6, int(ratio * n)) and visible.shape == (6, n - int(ratio * n))
    both = torch.cat([visible, hidden], dim=1).sort(dim=1).values
    assert torch.equal(both, torch.arange(n).expand(6, n))  # a partition of the positions
    assert torch.equal(hidden, hidden_map[:, 0].flatten(1).nonzero()[:, 1].view(6, -1))  # the tube mask's hidden set
    assert len({tuple(v.tolist()) for v in visible}) > 1  # each clip draws its own mask


def test_encoder_sees_only_the_visible_tokens():
    model = tiny_encoder()
    video = torch.randn(2, 3, 4, 32, 32)
    visible, hidden = mae_mask(2, 4, (4, 4), 0.75, torch.Generator().manual_seed(1))
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].shape))
    tokens = model.forward_visible(video, visible)
    assert seen == [(2, 1 + 4 * 4, 32)]  # class token + T x 4 visible tubes, not T x 16
    assert tokens.shape == (2, 4 * 4, 32)
    # the pixels of hidden patches never reach the encoder
    patches = patchify(video, 8)
    patches[torch.arange(2)[:, None], :, hidden] = 99.0
    changed = patches.view(2, 4, 4, 4, 8, 8, 3).permute(0, 6, 1, 2, 4, 3, 5).reshape(2, 3, 4, 32, 32)
    assert not torch.allclose(changed, video)
    assert torch.allclose(model.forward_visible(changed, visible), tokens, atol=1e-6)


def test_forward_visible_with_every_patch_equals_the_full_forward():
    model = tiny_encoder()
    video = torch.randn(2, 3, 4, 32, 32)
    out = {}
    model.blocks[-1].register_forward_hook(lambda module, args, result: out.setdefault("full", result))
    model(video)
    every = torch.arange(16).expand(2, 16)
    assert torch.allclose(model.forward_visible(video, every), model.norm(out["full"][:, 1:]), atol=1e-5)


def test_loss_ignores_visible_patches():
    video = torch.rand(2, 3, 4, 32, 32)
    visible, hidden = mae_mask(2, 4, (4, 4), 0.75, torch.Generator().manual_seed(2))
    target = pixel_targets(video, hidden, 8, norm_pix=True)
    assert target.shape == (2, 4 * 12, 8 * 8 * 3)
    patches = patchify(video, 8).clone()
    patches[torch.arange(2)[:, None], :, visible] = torch.rand(2, 4, 4, 192)  # other pixels at visible patches
    other = patches.view(2, 4, 4, 4, 8, 8, 3).permute(0, 6, 1, 2, 4, 3, 5).reshape(2, 3, 4, 32, 32)
    assert torch.equal(pixel_targets(other, hidden, 8, norm_pix=True), target)
    pred = torch.randn_like(target)
    assert reconstruction_loss(pred, target) == reconstruction_loss(pred, pixel_targets(other, hidden, 8, True))
    patches[0, 0, hidden[0, 0]] = 0.5 + 0.1 * torch.randn(192)  # a hidden patch does count
    moved = patches.view(2, 4, 4, 4, 8, 8, 3).permute(0, 6, 1, 2, 4, 3, 5).reshape(2, 3, 4, 32, 32)
    assert not torch.equal(pixel_targets(moved, hidden, 8, norm_pix=True), target)


def test_targets_are_normalised_per_patch_and_channel():
    video = torch.rand(1, 3, 4, 32, 32) * 0.3 + 0.2
    _, hidden = mae_mask(1, 4, (4, 4), 0.5, torch.Generator().manual_seed(3))
    target = pixel_targets(video, hidden, 8, norm_pix=True).view(1, -1, 64, 3)
    assert torch.allclose(target.mean(dim=2), torch.zeros(1), atol=1e-4)
    assert torch.allclose(target.std(dim=2), torch.ones(1), atol=1e-3)


def test_autoencoder_predicts_the_hidden_patches_and_trains_every_part():
    model = build_autoencoder(tiny_encoder().train(), 4, 32, decoder_dim=16, decoder_depth=1, decoder_heads=2)
    video = torch.randn(2, 3, 4, 32, 32)
    visible, hidden = mae_mask(2, 4, (4, 4), 0.75, torch.Generator().manual_seed(4))
    pred = model(video, visible, hidden)
    assert pred.shape == (2, 4 * 12, 192)
    reconstruction_loss(pred, pixel_targets(video, hidden, 8, True)).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []  # DeepSpeed sees no idle parameter


def test_synthetic_steps_are_the_asked_share_spread_evenly():
    from svformer.methods.masked_video import stream_of_step

    for weight in (0.0, 0.25, 0.5, 1 / 3, 1.0):
        picks = [stream_of_step(s, weight) for s in range(120)]
        assert picks.count("synthetic") == round(120 * weight)
    assert [stream_of_step(s, 0.5) for s in range(4)] == ["videos", "synthetic", "videos", "synthetic"]


@pytest.mark.parametrize(
    "override, needle",
    [
        ("pretrain.mask_ratio=1.0", "pretrain.mask_ratio"),
        ("pretrain.synthetic=shards/x", "synthetic_weight is 0"),
        ("pretrain.synthetic_weight=0.5", "needs pretrain.synthetic"),
        ("pretrain.decoder_heads=5", "not divisible"),
        ("model.pretrain_init=runs/x", "both set"),
    ],
)
def test_bad_pretrain_settings_fail_in_one_line(override, needle):
    extra = ["model.imagenet_init=vit.pth"] if override.startswith("model.") else []
    with pytest.raises(UserError, match=needle) as info:
        load_config(None, [override, *extra])
    assert "\n" not in str(info.value)


def test_method_step_and_recon_png(tmp_path):
    from svformer.methods import Context, MaskedVideo, build_method

    cfg = load_config(
        None,
        [
            "model.variant=tiny",
            "model.patch_size=8",
            "model.embed_dim=32",
            "model.depth=2",
            "model.num_heads=2",
            "data.num_frames=4",
            "data.img_size=32",
            "pretrain.mask_ratio=0.75",
            "pretrain.decoder_dim=16",
            "pretrain.decoder_heads=2",
            "pretrain.decoder_depth=1",
            "pretrain.recon_every=2",
            f"train.output_dir={tmp_path}",
            "train.method=masked_video",
        ],
    )
    model = MaskedVideo.build_model(cfg)
    method = build_method(Context(cfg, model, model, torch.device("cpu"), 0, 1, contextlib.nullcontext))
    assert method.wants(0) == ("videos",) and method.eval_models() == {}
    video = torch.randint(0, 256, (2, 3, 4, 32, 32), dtype=torch.uint8)
    for step in range(2):
        loss, logs = method.loss({"videos": {"video": video, "label": torch.full((2,), -1)}}, step)
        loss.backward()
        method.after_step(step)
        assert (tmp_path / "recon.png").exists() == (step == 1)  # every recon_every steps
    assert set(logs.means) == {"loss", "loss_videos"} and torch.isfinite(loss)


def test_synthetic_pretraining_set_is_unlabeled_varied_and_preps(tmp_path):
    from prep.shards import prep_list
    from prep.synth import SHAPES as MOTION_SHAPES
    from prep.synth_pretrain import STAGES, render_scene, sample_scene, synthesize_pretrain
    from svformer.video.decode import DecodeSettings

    scenes = [sample_scene(np.random.default_rng([0, i])) for i in range(200)]
    assert {s.stage for s in scenes} == set(range(len(STAGES)))
    assert not {o.shape for s in scenes for o in s.objects} & set(MOTION_SHAPES)  # not the motion kind's objects
    assert max(len(s.objects) for s in scenes) >= 6 and {s.background for s in scenes} >= {"flat", "noise"}
    assert all(o.ax == o.ay == 0 for s in scenes if s.stage < 3 for o in s.objects)  # acceleration from stage 3
    assert any(o.ax != 0 for s in scenes if s.stage >= 3 for o in s.objects)
    frames = render_scene(scenes[0])
    assert frames.dtype == np.uint8 and frames.shape == (scenes[0].num_frames, scenes[0].height, scenes[0].width, 3)
    assert np.abs(np.diff(frames.astype(np.int16), axis=0)).mean() > 0  # things move

    listing = synthesize_pretrain(tmp_path / "syn", videos=3, seed=0, workers=2)
    lines = listing.read_text().splitlines()
    assert [line.split()[-1] for line in lines] == ["-1"] * 3 and not (tmp_path / "syn" / "classes.txt").exists()
    manifest = prep_list(listing, tmp_path / "shards", DecodeSettings(short_side=64, fps=15), workers=2, progress=False)
    assert manifest["num_samples"] == 3 and not manifest["failures"]


def _pretrain_config(demo_shards: Path, run: Path, path: Path, max_steps: int) -> Path:
    return tiny_config(
        demo_shards,
        run,
        path,
        pretrain={"mask_ratio": 0.75, "decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2, "recon_every": 2},
        train={"max_steps": max_steps, "warmup_steps": 0, "checkpoint_every": 3, "val_every": 0},
    )


def test_pretrain_resumes_after_sigkill_and_its_encoder_initialises_train(demo_shards, tmp_path):
    from svformer import run_dir
    from svformer.weight_import import load_pretrained_encoder

    run = tmp_path / "pre"
    config = _pretrain_config(demo_shards, run, tmp_path / "p.yaml", max_steps=30)
    proc = subprocess.Popen(
        [sys.executable, "cli.py", "pretrain", "--config", str(config)],
        cwd=ROOT,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while not (run / "checkpoints" / "step-000003").exists():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline, "no checkpoint in time"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed_at = max(run_dir.step_of(p) for p in run_dir.complete_checkpoints(run))
    assert 3 <= resumed_at < 30

    result = cli(
        "pretrain",
        "--config",
        str(config),
        "--set",
        "train.max_steps=6" if resumed_at < 6 else f"train.max_steps={resumed_at + 3}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed at step {resumed_at}" in result.stderr + result.stdout
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps)) and all(np.isfinite(r["loss"]) for r in rows)
    assert (run / "recon.png").exists() and list((run / "tensorboard").glob("events.out.tfevents.*"))
    ckpt = run_dir.latest_checkpoint(run)
    saved_rng = torch.load(ckpt / "rng-rank0.pt", weights_only=False)
    assert "generator" in saved_rng  # the mask draws continue from the saved generator

    # the encoder loads strictly into a classifier; the decoder is dropped, the head is new
    model = build_model("tiny", 8, **TINY)
    head = model.head.weight.clone()
    report = load_pretrained_encoder(model, run)
    student = run_dir.load_trained(run).states["student"]
    assert report["fresh"] == ["head.weight", "head.bias"] and report["dropped"] > 0
    encoder = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    assert all(torch.equal(v, student[f"encoder.{k}"]) for k, v in encoder.items())
    assert torch.equal(model.head.weight, head)
    with pytest.raises(UserError, match="does not fit this model") as info:  # another width: one line
        load_pretrained_encoder(build_model("tiny", 8, **{**TINY, "embed_dim": 16}), run)
    assert "\n" not in str(info.value) and "embed_dim=32" in str(info.value)

    fine = tiny_config(
        demo_shards,
        tmp_path / "fine",
        tmp_path / "f.yaml",
        model={"pretrain_init": str(run)},
        train={"max_steps": 1, "warmup_steps": 1, "checkpoint_every": 1, "val_every": 0},
    )
    result = cli("train", "--config", str(fine))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pretrained encoder from" in result.stderr


def test_missing_pretraining_shards_fail_in_one_line_naming_the_key(tmp_path):
    from svformer.methods.masked_video import pretrain_urls

    cfg = load_config(None, [f"data.unlabeled={tmp_path / 'none'}", f"data.labeled={tmp_path / 'none'}"])
    with pytest.raises(UserError, match="^data.unlabeled: ") as info:
        pretrain_urls(cfg)
    assert "\n" not in str(info.value)
    cfg = load_config(None, [f"pretrain.synthetic={tmp_path / 'none'}", "pretrain.synthetic_weight=1"])
    with pytest.raises(UserError, match="^pretrain.synthetic: .*synth --kind pretrain"):
        pretrain_urls(cfg)  # only the synthetic set is read: data.* are not checked
