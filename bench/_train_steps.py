"""The two training steps that bench/model.py times at full size: supervised, and the whole SVFormer step.

supervised: cross-entropy of B clips under bf16 autocast, backward, the fused SGD step
            (`svformer.optim.build_optimizer`, the training optimizer).
svformer:   `svformer.methods.svformer.svformer_loss` with an `svformer.ssl.EMATeacher`: the teacher's
            forward on the B_u weak clips under the student's autocast (its weights stay float32), the
            student's forward and backward on B_l labeled + B_u strong + B_u token-mixed clips in one
            batch, the fused SGD step and the EMA update; B_u = mu * B_l (the paper's micro-step: 1 + 5).

Model FLOPs are counted with `torch.utils.flop_counter` on the same shapes (on the meta device), forward
and backward (the teacher's forward only), on a copy of the model with plain attention: its two batched matmuls are the
attention's FLOPs, and a CPU's SDPA op has no FLOP formula. The optimizer and the EMA update add no
matmul FLOPs. `mode` "compile" compiles the student in place (`nn.Module.compile`, the `train.compile`
hook); the teacher is a deep copy of it and so is compiled too.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from svformer import build_model
from svformer.config import OptimConfig, SSLConfig
from svformer.methods.svformer import svformer_loss
from svformer.optim import build_optimizer
from svformer.ssl import EMATeacher

NUM_CLASSES = 400


class Autocast(nn.Module):
    """The student as the engine runs it: its forward under the step's autocast (parameters unchanged)."""

    def __init__(self, model: nn.Module, autocast: Callable[[], object]) -> None:
        super().__init__()
        self.model, self.autocast = model, autocast

    def forward(self, *args, **kwargs) -> torch.Tensor:
        with self.autocast():
            return self.model(*args, **kwargs)


@dataclass
class Shapes:
    """What one step sees: T x size clips, `batch` supervised clips or B_l labeled + mu * B_l unlabeled."""

    frames: int
    size: int
    batch: int
    labeled: int
    mu: int

    def clips(self, kind: str) -> int:
        """Clips one step consumes (labeled + unlabeled for svformer, as the training monitor counts)."""
        return self.batch if kind == "supervised" else self.labeled * (1 + self.mu)


def make_step(
    kind: str, model: nn.Module, shapes: Shapes, device: torch.device, bf16: bool, optimize: bool = True
) -> Callable[[], None]:
    """A closure running one `kind` step of `model` (train mode) on fixed random inputs.

    optimize: also the fused SGD step (and, for svformer, the EMA update); False for FLOP counting.
    """
    g = torch.Generator().manual_seed(0)

    def video(n: int) -> torch.Tensor:  # normalised clips: random, never zeros
        return torch.randn(n, 3, shapes.frames, shapes.size, shapes.size, generator=g).to(device)

    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else nullcontext
    student = Autocast(model, autocast)
    optimizer = build_optimizer(model, OptimConfig(), device) if optimize else None

    def finish() -> None:
        if optimizer is not None:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        else:
            model.zero_grad(set_to_none=True)

    if kind == "supervised":
        x, y = video(shapes.batch), torch.randint(0, NUM_CLASSES, (shapes.batch,), generator=g).to(device)

        def step() -> None:
            F.cross_entropy(student(x).float(), y).backward()
            finish()

        return step

    b_l, b_u = shapes.labeled, shapes.labeled * shapes.mu
    x_l, y_l = video(b_l), torch.randint(0, NUM_CLASSES, (b_l,), generator=g).to(device)
    weak, strong = video(b_u), video(b_u)
    teacher = EMATeacher(model)
    cfg = SSLConfig()  # the paper recipe: threshold 0.3, tube masks, Beta(10, 10), MSE mix loss, channel dropout

    def step() -> None:
        loss, _ = svformer_loss(
            student,
            teacher,
            (x_l, y_l),
            (weak, strong),
            cfg,
            g,
            NUM_CLASSES,
            model.patch_size,
            teacher_autocast=autocast,
        )
        loss.backward()
        finish()
        if optimizer is not None:
            teacher.update(model, cfg.ema_decay)

    return step


def build(variant: str, shapes: Shapes, device: torch.device, fused: bool = True, **overrides) -> nn.Module:
    torch.manual_seed(0)
    return (
        build_model(
            variant, NUM_CLASSES, num_frames=shapes.frames, img_size=shapes.size, fused_attention=fused, **overrides
        )
        .to(device)
        .train()
    )


def count_flops(kind: str, variant: str, shapes: Shapes, **overrides) -> float:
    """Model FLOPs of one step (forward + backward; the teacher's forward), counted on the real shapes on
    the meta device (no memory, no compute; FLOPs do not depend on the dtype)."""
    meta = torch.device("meta")
    model = build(variant, shapes, meta, fused=False, **overrides)
    step = make_step(kind, model, shapes, meta, bf16=False, optimize=False)
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_step(step: Callable[[], None], device: torch.device, warmup: int, iters: int) -> dict:
    """Warm-up steps (their wall time, compilation included), then `iters` timed steps (CUDA events on a GPU).

    Returns first_step_s, warmup_s, step_s (each timed step), median_step_s, min_step_s and peak_mb
    (CUDA max allocated over the timed steps; None on a CPU).
    """
    _sync(device)
    start = time.perf_counter()
    step()
    _sync(device)
    first = time.perf_counter() - start
    for _ in range(max(warmup - 1, 0)):
        step()
    _sync(device)
    warm = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            step()
            end.record()
            end.synchronize()
            times.append(begin.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {
        "first_step_s": round(first, 3),
        "warmup_s": round(warm, 3),
        "step_s": [round(t, 5) for t in times],
        "median_step_s": statistics.median(times),
        "min_step_s": min(times),
        "peak_mb": None if peak is None else round(peak, 1),
    }


def run_part(
    kind: str,
    mode: str,
    variant: str,
    shapes: Shapes,
    device: torch.device,
    bf16: bool,
    warmup: int,
    iters: int,
    flops: float,
    peak_flops: float | None,
    **overrides,
) -> dict:
    """Time one (step kind, eager|compile) part -> clips/s, step ms, peak memory, TFLOP/s and MFU."""
    if mode == "compile":
        torch._dynamo.reset()  # a fresh cache per part: no recompile limit shared across parts
    model = build(variant, shapes, device, **overrides)
    if mode == "compile":
        model.compile(dynamic=False)  # static shapes: each part sees one batch size
    step = make_step(kind, model, shapes, device, bf16)
    timing = time_step(step, device, warmup if mode == "eager" else max(warmup, 2), iters)
    seconds = timing["median_step_s"]
    out = {
        "clips_per_s": round(shapes.clips(kind) / seconds, 2),
        "step_ms": round(seconds * 1e3, 2),
        "min_step_ms": round(timing["min_step_s"] * 1e3, 2),
        "peak_mb": timing["peak_mb"],
        "tflops_per_s": round(flops / seconds / 1e12, 2),
        "mfu": round(flops / seconds / peak_flops, 4) if peak_flops else None,
        "first_step_s": timing["first_step_s"],
        "warmup_s": timing["warmup_s"],
        "step_s": timing["step_s"],
    }
    del step, model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out
