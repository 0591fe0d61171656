"""SVFormer method: TWAug, token-mix masks, pseudo-labels, losses and the training step."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from svformer import ssl
from svformer.config import SSLConfig
from svformer.methods.svformer import mix_inputs, svformer_loss
from svformer.views import channel_dropout


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TinyVideoNet(nn.Module):
    """Stand-in with the model's forward contract: patchify, optional token mix, mean-pool, linear."""

    def __init__(self, num_classes: int = 5, patch_size: int = 8, dim: int = 16) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv3d(3, dim, kernel_size=(1, patch_size, patch_size), stride=(1, patch_size, patch_size))
        self.head = nn.Linear(dim, num_classes)

    def forward(self, video, mix_mask=None, mix_index=None):
        x = rearrange(self.proj(video), "b d t h w -> b t h w d")
        if mix_mask is not None:
            x = torch.where(mix_mask[..., None], x, x[mix_index])
        return self.head(torch.tanh(x).mean(dim=(1, 2, 3)))


def svformer_step(student, teacher, labeled, unlabeled, cfg, g, num_classes, unlabeled_labels=None):
    """svformer_loss with its logs read back as floats (ratios divided), as the monitor does."""
    loss, logs = svformer_loss(
        student, teacher, labeled, unlabeled, cfg, g, num_classes, student.patch_size, unlabeled_labels=unlabeled_labels
    )
    values = {k: float(v) for k, v in logs.means.items()}
    values.update({k: float(n) / float(d) for k, (n, d) in logs.ratios.items() if float(d)})
    return loss, values


# ---- temporal warping ----


def test_temporal_warp_is_monotone_and_each_kept_frame_keeps_its_position():
    warps = ssl.temporal_warp_batch(3000, 8, gen())
    assert warps.shape == (3000, 8) and warps.dtype == torch.long
    assert (warps[:, 1:] >= warps[:, :-1]).all()
    counts = {2: 0, 4: 0, 8: 0}
    for row in warps.tolist():
        shown = sorted(set(row))
        assert all(row[f] == f for f in shown)  # repeats only kept frames; none lost to a split
        counts[len(shown)] += 1
    assert set(counts) == {2, 4, 8}
    assert all(800 < n < 1200 for n in counts.values()), counts  # each mode ~1/3


def test_temporal_warp_indices_matches_the_batched_warp_and_splits_gaps_randomly():
    single = [tuple(ssl.temporal_warp_indices(8, g).tolist()) for g in [gen(11)]]
    assert single[0] == tuple(ssl.temporal_warp_batch(1, 8, gen(11))[0].tolist())
    keep2 = [tuple(r) for r in ssl.temporal_warp_batch(600, 8, gen(1)).tolist() if len(set(r)) == 2]
    splits = {r.index(r[-1]) for r in keep2 if r[0] == 0 and r[-1] == 7}
    assert len(splits) > 3  # the 0 -> 7 boundary lands at several positions


@pytest.mark.parametrize("frames", [1, 2, 3])
def test_temporal_warp_handles_short_clips(frames):
    for row in ssl.temporal_warp_batch(50, frames, gen()).tolist():
        assert len(row) == frames and row == sorted(row)
        assert all(row[f] == f for f in set(row))


def test_apply_temporal_warp_gathers_frames_into_a_new_tensor():
    clip = torch.arange(8.0).view(1, 8, 1, 1).expand(2, 8, 3, 3).clone()
    idx = torch.tensor([0, 0, 3, 3, 3, 6, 6, 7])
    out = ssl.apply_temporal_warp(clip, idx)
    assert out[0, :, 0, 0].tolist() == idx.float().tolist() and clip[0, 1, 0, 0] == 1
    batch = torch.stack([clip, clip + 10])
    idx_b = torch.stack([idx, idx.flip(0).sort().values])
    out_b = ssl.apply_temporal_warp(batch, idx_b)
    assert torch.equal(out_b[1], ssl.apply_temporal_warp(batch[1], idx_b[1]))


# ---- masks ----


def test_tube_mask_is_constant_over_time_with_exact_count():
    lam = torch.tensor([0.1, 0.5, 0.73, 1.0])
    mask = ssl.tube_mask(4, 6, (3, 5), lam, gen())
    assert mask.shape == (4, 6, 3, 5) and mask.dtype == torch.bool
    assert (mask == mask[:, :1]).all()
    assert mask[:, 0].sum(dim=(1, 2)).tolist() == [int(r * 15) for r in lam.tolist()]
    assert ssl.tube_mask(3, 2, (4, 4), 0.3, gen()).sum(dim=(2, 3)).eq(int(0.3 * 16)).all()


def test_masks_differ_between_clips():
    mask = ssl.tube_mask(16, 1, (4, 4), 0.5, gen())
    assert len({tuple(m.flatten().tolist()) for m in mask}) > 8


def test_token_and_frame_masks_have_exact_counts():
    lam = torch.tensor([0.2, 0.55, 0.9])
    token = ssl.token_mask(3, 4, (3, 3), lam, gen())
    assert token.shape == (3, 4, 3, 3)
    assert token.sum(dim=(1, 2, 3)).tolist() == [int(r * 36) for r in lam.tolist()]
    frame = ssl.frame_mask(3, 8, (2, 2), lam, gen())
    assert (frame == frame[..., :1, :1]).all()  # whole frames
    assert frame[:, :, 0, 0].sum(dim=1).tolist() == [int(r * 8) for r in lam.tolist()]
    assert torch.equal(ssl.make_mask("token", 3, 4, (3, 3), lam, gen()), token)
    with pytest.raises(ValueError):
        ssl.make_mask("blob", 3, 4, (3, 3), lam, gen())


def test_sample_beta_is_reproducible_and_has_the_beta_moments():
    assert torch.equal(ssl.sample_beta(10.0, 5, gen(3)), ssl.sample_beta(10.0, 5, gen(3)))
    for alpha in (10.0, 0.5):
        x = ssl.sample_beta(alpha, 20000, gen()).double()
        assert abs(x.mean() - 0.5) < 0.01
        assert abs(x.var() - 1 / (4 * (2 * alpha + 1))) < 0.01 / (2 * alpha + 1)
        assert x.min() >= 0 and x.max() <= 1


# ---- pseudo-labels, targets, losses (against slow per-sample references) ----


def test_pseudo_labels_threshold_and_argmax():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 5.0, 0.0]], dtype=torch.bfloat16)
    probs, hard, confident = ssl.pseudo_labels(logits, 1 / 3)
    assert probs.dtype == torch.float32 and torch.allclose(probs.sum(-1), torch.ones(3))
    assert hard.tolist()[::2] == [0, 1] and confident.tolist() == [True, True, True]
    assert ssl.pseudo_labels(logits, 0.34)[2].tolist() == [True, False, True]


def test_mixed_targets_and_weights_match_a_per_sample_reference():
    torch.manual_seed(0)
    k, b = 4, 6
    probs = torch.randn(b, k).softmax(-1)
    hard = probs.argmax(-1)
    confident = torch.tensor([True, False, True, True, False, False])
    mask = ssl.tube_mask(b, 2, (3, 3), ssl.sample_beta(10.0, b, gen()), gen(1))
    lam = mask.float().mean(dim=(1, 2, 3))
    idx = torch.randperm(b, generator=gen(2))
    y_mix, weights = ssl.mixed_targets(probs, hard, confident, lam, idx, k)
    for i in range(b):
        j = int(idx[i])
        ya = F.one_hot(hard[i], k).float() if confident[i] else probs[i]
        yb = F.one_hot(hard[j], k).float() if confident[j] else probs[j]
        assert torch.allclose(y_mix[i], lam[i] * ya + (1 - lam[i]) * yb)
        own_tokens = mask[i].float().mean()
        expected_w = own_tokens * float(confident[i]) + (1 - own_tokens) * float(confident[j])
        assert torch.isclose(weights[i], expected_w)


def test_unlabeled_loss_counts_only_confident_clips_over_the_whole_batch():
    torch.manual_seed(1)
    logits = torch.randn(5, 3, dtype=torch.bfloat16)
    hard = torch.tensor([0, 2, 1, 1, 0])
    confident = torch.tensor([True, False, True, False, False])
    ref = sum(float(F.cross_entropy(logits[i : i + 1].float(), hard[i : i + 1])) for i in range(5) if confident[i]) / 5
    loss = ssl.unlabeled_loss(logits, hard, confident)
    assert loss.dtype == torch.float32 and abs(float(loss) - ref) < 1e-6


@pytest.mark.parametrize("kind", ["mse", "soft_ce"])
def test_mix_loss_matches_a_per_sample_reference(kind):
    torch.manual_seed(2)
    logits, y_mix, weights = torch.randn(4, 3), torch.rand(4, 3), torch.rand(4)
    total = 0.0
    for i in range(4):
        if kind == "mse":
            per = sum((float(logits[i, c]) - float(y_mix[i, c])) ** 2 for c in range(3)) / 3
        else:
            per = -float((y_mix[i] * logits[i].log_softmax(-1)).sum())
        total += per * float(weights[i])
    assert abs(float(ssl.mix_loss(logits, y_mix, weights, kind)) - total / 4) < 1e-5


# ---- the training step ----


def _batches(seed: int = 0, b_l: int = 2, b_u: int = 4, t: int = 2, size: int = 16):
    g = gen(seed)
    labeled = (torch.randn(b_l, 3, t, size, size, generator=g), torch.randint(0, 5, (b_l,), generator=g))
    unlabeled = (torch.randn(b_u, 3, t, size, size, generator=g), torch.randn(b_u, 3, t, size, size, generator=g))
    return labeled, unlabeled


def test_step_equals_the_loss_written_out_with_separate_forwards():
    torch.manual_seed(0)
    student = TinyVideoNet()
    teacher = ssl.EMATeacher(student)
    labeled, unlabeled = _batches()
    cfg = SSLConfig(threshold=0.2)
    loss, logs = svformer_step(student, teacher, labeled, unlabeled, cfg, gen(9), 5)
    g = gen(9)  # replay the generator draws in the step's order
    strong = channel_dropout(unlabeled[1], cfg.channel_dropout, g)
    mask, lam, idx = mix_inputs(cfg, 4, 2, (2, 2), g)
    probs, hard, conf = ssl.pseudo_labels(teacher(unlabeled[0]), cfg.threshold)
    y_mix, w = ssl.mixed_targets(probs, hard, conf, lam, idx, 5)
    expected = (
        F.cross_entropy(student(labeled[0]), labeled[1])
        + 2 * ssl.unlabeled_loss(student(strong), hard, conf)
        + 2 * ssl.mix_loss(student(strong, mix_mask=mask, mix_index=idx), y_mix, w)
    )
    assert torch.allclose(loss, expected, atol=1e-6)
    assert abs(logs["lambda"] - float(lam.mean())) < 1e-6 and abs(logs["loss"] - loss.item()) < 1e-6
    assert abs(logs["mask_rate"] - float(conf.float().mean())) < 1e-6


def test_step_is_deterministic_for_a_generator_seed():
    torch.manual_seed(0)
    student = TinyVideoNet()
    teacher = ssl.EMATeacher(student)
    labeled, unlabeled = _batches()
    runs = [
        svformer_step(student, teacher, labeled, unlabeled, SSLConfig(strong_ops="both", threshold=0.0), gen(s), 5)
        for s in (3, 3, 4)
    ]
    assert torch.equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert not torch.equal(runs[0][0], runs[2][0])


def test_step_gradients_flow_only_into_the_student():
    torch.manual_seed(0)
    student = TinyVideoNet()
    teacher = ssl.EMATeacher(student)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    labeled, unlabeled = _batches()
    loss, _ = svformer_step(student, teacher, labeled, unlabeled, SSLConfig(threshold=0.0), gen(), 5)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None for p in teacher.module.parameters())
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())


def test_step_variants_and_pseudo_label_accuracy_logs():
    torch.manual_seed(0)
    student = TinyVideoNet()
    labeled, unlabeled = _batches()
    cfg = SSLConfig(mix=False, strong_ops="none", threshold=0.0)
    labels = torch.tensor([-1, 0, 1, 2])
    teacher = ssl.EMATeacher(student)
    loss, logs = svformer_step(student, teacher, labeled, unlabeled, cfg, gen(), 5, unlabeled_labels=labels)
    with torch.no_grad():
        hard = teacher(unlabeled[0]).argmax(-1)
    assert logs["loss_mix"] == 0.0 and abs(logs["pseudo_acc"] - float((hard[1:] == labels[1:]).float().mean())) < 1e-6
    assert logs["pseudo_acc_confident"] == logs["pseudo_acc"]
    for extra in ({"mask_per_sample": False}, {"mask_shape": "frame", "mix_loss": "soft_ce"}):
        cfg = dataclasses.replace(SSLConfig(), **extra)
        loss, logs = svformer_step(student, ssl.EMATeacher(student), labeled, unlabeled, cfg, gen(), 5)
        assert torch.isfinite(loss) and set(logs) >= {"loss_sup", "loss_unlabeled", "loss_mix", "confidence"}


def test_fixmatch_targets_are_the_same_models_confident_weak_view_predictions():
    from svformer.methods.fixmatch import fixmatch_loss

    torch.manual_seed(0)
    student = TinyVideoNet()
    labeled, unlabeled = _batches()
    with torch.no_grad():
        probs = student(unlabeled[0]).softmax(-1)
    # a threshold between the clips' confidences: only the more confident ones are targets
    threshold = float(probs.max(-1).values.median())
    cfg = SSLConfig(strong_ops="none", temporal_warp=False, threshold=threshold, lambda_unlabeled=2.0)
    loss, logs = fixmatch_loss(student, labeled, unlabeled, cfg, gen(), torch.tensor([-1, 0, 1, 2]))
    confident = probs.max(-1).values >= threshold
    hard = probs.argmax(-1)
    per_clip = F.cross_entropy(student(unlabeled[1]), hard, reduction="none")
    expected_un = (per_clip * confident.float()).mean()
    expected = F.cross_entropy(student(labeled[0]), labeled[1]) + 2.0 * expected_un
    assert torch.isclose(loss, expected, atol=1e-5) and torch.isclose(logs.means["loss_unlabeled"], expected_un)
    assert 0 < float(logs.means["mask_rate"]) < 1 and "loss_mix" not in logs.means
    loss.backward()  # the gradient flows through the strong view only: the weak view's forward had none
    assert student.head.weight.grad is not None


def test_step_runs_on_the_real_tiny_model_and_is_deterministic():
    from svformer import build_model

    torch.manual_seed(0)
    student = build_model(
        "tiny", 5, num_frames=2, img_size=16, patch_size=8, embed_dim=32, depth=1, num_heads=2, drop_path_rate=0.0
    )
    teacher = ssl.EMATeacher(student)
    labeled, unlabeled = _batches()
    cfg = SSLConfig(threshold=0.0)
    loss, logs = svformer_step(student, teacher, labeled, unlabeled, cfg, gen(5), 5)
    again, _ = svformer_step(student, teacher, labeled, unlabeled, cfg, gen(5), 5)
    assert torch.equal(loss, again) and logs["loss_mix"] > 0
    loss.backward()
    assert student.head.weight.grad is not None and teacher.module.head.weight.grad is None
