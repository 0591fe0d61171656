"""GPU checks (`pytest -m gpu`; `make gpu-check` runs them): bf16 against float32, CUDA against the CPU for
the SVFormer loss and the eval views, the EMA teacher's float32 state under autocast, fused optimizer
kernels, `torch.compile`, and the fused SDPA kernels at 8 x 224. Every test skips without CUDA.

Errors are relative norms, ||out - ref|| / ||ref||: float32 against float32 on another device lands far
under 1e-4 with TF32 off; bf16 operands land between 1e-3 and 1e-2 per layer.
"""

from __future__ import annotations

import copy

import pytest
import torch

from svformer import build_model
from svformer.config import Config, OptimConfig, SSLConfig
from svformer.evaluate import view_logits
from svformer.methods.svformer import svformer_loss
from svformer.optim import build_optimizer
from svformer.ssl import EMATeacher

NO_GPU = "needs a CUDA GPU (torch.cuda.is_available() is False); make gpu-check runs these on one"
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)]
CUDA = torch.device("cuda")
CPU = torch.device("cpu")


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    assert torch.isfinite(out).all(), "non-finite output"
    return float((out - ref).norm() / ref.norm())


def tiny_model(num_classes: int = 8, seed: int = 0) -> torch.nn.Module:
    """A demo-sized TimeSformer: 4 x 32 x 32 clips, 8 x 8 patches, width 64, 2 blocks, no stochastic depth."""
    torch.manual_seed(seed)
    return build_model(
        "tiny",
        num_classes,
        num_frames=4,
        img_size=32,
        patch_size=8,
        embed_dim=64,
        depth=2,
        num_heads=4,
        drop_path_rate=0.0,
    )


@pytest.fixture
def ieee_fp32():
    """float32 matmuls and convolutions in full float32 (no TF32) while the test runs."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_model_bf16_autocast_logits_match_fp32_at_8x224(ieee_fp32):
    torch.manual_seed(0)
    model = build_model("small", 400, num_frames=8, img_size=224, drop_path_rate=0.0).to(CUDA).eval()
    video = torch.randn(2, 3, 8, 224, 224, device=CUDA)
    with torch.no_grad():
        ref = model(video)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = model(video)
    assert low.dtype == torch.bfloat16 and ref.dtype == torch.float32
    assert rel_err(low, ref) < 3e-2


def test_svformer_loss_on_cuda_equals_cpu_for_the_same_draws(ieee_fp32):
    student = tiny_model().train()
    with torch.no_grad():
        student.head.weight.mul_(50)  # peaked teacher probabilities: most clips pass the threshold
    g = torch.Generator().manual_seed(1)
    x_l, weak, strong = (torch.randn(n, 3, 4, 32, 32, generator=g) for n in (2, 4, 4))
    y_l, y_u = torch.randint(0, 8, (2,), generator=g), torch.randint(0, 8, (4,), generator=g)
    cfg = SSLConfig()  # tube masks, Beta(10, 10), MSE mix loss, channel dropout: every random draw in play
    results = {}
    for key, device in (("cpu", CPU), ("cuda", CUDA)):
        model = copy.deepcopy(student).to(device)
        loss, logs = svformer_loss(
            model,
            EMATeacher(model),
            (x_l.to(device), y_l.to(device)),
            (weak.to(device), strong.to(device)),
            cfg,
            torch.Generator().manual_seed(7),
            8,
            8,
            unlabeled_labels=y_u,
        )
        loss.backward()
        grads = torch.cat([p.grad.flatten().cpu() for p in model.parameters()])
        results[key] = loss, logs, grads
    (loss_c, logs_c, grads_c), (loss_g, logs_g, grads_g) = results["cpu"], results["cuda"]
    assert float(logs_c.means["mask_rate"]) > 0, "no confident pseudo-label: the test would not cover L_un and L_mix"
    assert rel_err(loss_g, loss_c) < 1e-4
    for name, value in logs_c.means.items():
        assert abs(float(logs_g.means[name]) - float(value)) <= 1e-4 * max(1.0, abs(float(value))), name
    for name, (num, den) in logs_c.ratios.items():
        assert float(logs_g.ratios[name][0]) == float(num) and float(logs_g.ratios[name][1]) == float(den), name
    assert rel_err(grads_g, grads_c) < 1e-4


def test_ema_teacher_stays_exact_float32_under_bf16_autocast():
    student = tiny_model().to(CUDA)
    teacher = EMATeacher(student)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        out = teacher(torch.randn(3, 3, 4, 32, 32, device=CUDA))
    assert out.dtype == torch.bfloat16  # the forward ran in bf16 ...
    for name, value in teacher.state_dict().items():  # ... and the weights stayed float32, untouched
        assert value.dtype == torch.float32 and torch.equal(value, before[name]), name

    low = copy.deepcopy(student).to(torch.bfloat16)  # a bf16-weight student (DeepSpeed's bf16 mode)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in low.parameters():
            p.add_((torch.randn(p.shape, generator=g) * 0.1).to(CUDA, p.dtype))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        teacher.update(low, 0.99)
    for (name, t), s in zip(teacher.module.named_parameters(), low.parameters()):
        t0, s64 = before[name].double(), s.double()
        expected = (t0 + torch.tensor(0.01, dtype=torch.float32).double() * (s64 - t0)).float()
        assert t.dtype == torch.float32
        torch.testing.assert_close(t, expected, rtol=1e-6, atol=1e-8, msg=name)
    teacher.update(low, 0.0)  # m = 0 copies the student exactly; m = 1 keeps the teacher exactly
    kept = {k: v.clone() for k, v in teacher.state_dict().items()}
    teacher.update(student, 1.0)
    for (name, t), s in zip(teacher.module.named_parameters(), low.parameters()):
        assert torch.equal(t, s.float()) and torch.equal(t, kept[name]), name


def test_eval_view_logits_on_cuda_equal_cpu(ieee_fp32):
    cfg = Config()
    model = tiny_model().eval()
    video = torch.randint(0, 256, (2, 15, 3, 4, 32, 32), dtype=torch.uint8)  # (B, V, C, T, S, S): 5 x 3 views
    cpu = view_logits(model, video, cfg, CPU)
    gpu = view_logits(copy.deepcopy(model).to(CUDA), video, cfg, CUDA, chunk=7)  # other chunks: same logits
    assert gpu.device.type == "cpu" and gpu.shape == cpu.shape == (2, 15, 8)
    assert rel_err(gpu, cpu) < 1e-5


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_optimizer_is_fused_on_cuda_and_steps_like_the_cpu_one(name, ieee_fp32):
    cfg = OptimConfig(name=name, lr=0.01)
    devices = {"cpu": CPU, "cuda": CUDA}
    models = {k: tiny_model().to(d) for k, d in devices.items()}
    optimizers = {k: build_optimizer(models[k], cfg, d) for k, d in devices.items()}
    assert optimizers["cuda"].defaults["fused"] is True
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        grads = [torch.randn(p.shape, generator=g) for p in models["cpu"].parameters()]
        for key, model in models.items():
            for p, grad in zip(model.parameters(), grads):
                p.grad = grad.to(devices[key], copy=True)  # optimizers may update grads in place
            optimizers[key].step()
    for (name_, c), gpu in zip(models["cpu"].named_parameters(), models["cuda"].parameters()):
        assert rel_err(gpu, c) < 1e-5, name_


def test_compiled_student_matches_eager_and_its_ema_teacher_runs_its_own_weights(ieee_fp32):
    model = tiny_model().to(CUDA).eval()
    eager = copy.deepcopy(model)
    model.compile()  # what train.compile does: in place, state-dict keys unchanged
    assert list(model.state_dict()) == list(eager.state_dict())
    video = torch.randn(3, 3, 4, 32, 32, device=CUDA)
    with torch.no_grad():
        assert rel_err(model(video), eager(video)) < 1e-4
        teacher = EMATeacher(model)  # a deep copy of the compiled student
        teacher.module.head.weight.mul_(2)  # head bias starts at zero: the teacher's logits double
        assert rel_err(teacher(video), 2 * eager(video)) < 1e-4
        assert rel_err(model(video), eager(video)) < 1e-4  # the student kept its own weights


def test_sdpa_runs_a_fused_kernel_at_8x224():
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    model = build_model("small", 400, num_frames=8, img_size=224, drop_path_rate=0.0).to(CUDA).train()
    video = torch.randn(1, 3, 8, 224, 224, device=CUDA)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        # Only the flash and memory-efficient backends allowed: raises "No available kernel" if neither
        # takes the temporal (8 tokens) or the spatial (197 tokens) attention, forward or backward.
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
            model(video).float().sum().backward()
        model.zero_grad(set_to_none=True)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:  # no restriction
            model(video).float().sum().backward()
            torch.cuda.synchronize()
    ops = {e.key for e in prof.key_averages()}
    fused = [
        k
        for k in ops
        if any(
            s in k
            for s in (
                "_scaled_dot_product_flash_attention",
                "_scaled_dot_product_efficient_attention",
                "_scaled_dot_product_cudnn_attention",
            )
        )
    ]
    assert fused, f"no fused SDPA op ran; attention ops: {sorted(k for k in ops if 'attention' in k)}"
    assert not any("_scaled_dot_product_attention_math" in k for k in ops), "SDPA fell back to the math path"
    kernels = {e.name.lower() for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA}
    assert any(s in k for k in kernels for s in ("flash", "fmha", "efficient", "sdpa", "attention")), (
        "no attention kernel among the CUDA kernels"
    )
