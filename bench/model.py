#!/usr/bin/env python
"""Train-step throughput of the TimeSformer: the fused path vs an unfused float32 step of the same model.

fused   = attention through F.scaled_dot_product_attention, under bf16 autocast where the device runs
          bf16 natively (CUDA, or a CPU with AVX512-BF16/AMX); on a CPU without native bf16, autocast
          emulates bf16 and is many times slower than float32, so the fused CPU step stays float32
          (the `bf16_probe` entry measures that slow-down for the tiny variant).
unfused = plain softmax(q k^T) v attention in float32, no autocast.

Both models share weights; their steps are interleaved (ABAB...) so that load from other processes
hits both alike. Other processes can only add time, so the ratio uses each mode's fastest step;
the median is reported beside it. GFLOPs per view are counted with
FlopCounterMode on a meta-device model (no compute), for one forward view at the benchmark's T x size
and at the paper's 8 x 224; they are multiply-accumulates (GMACs = FLOPs / 2), the unit of the
"196 GFLOPs" quoted for TimeSformer-B.

On CUDA it also times, at 8 x 224 in bf16, the supervised step and the whole SVFormer step (teacher
forward, student forward and backward on labeled + strong + mixed clips, fused SGD, EMA update; see
bench/_train_steps.py) of small and base, eager and `torch.compile`d: clips/s, peak memory, TFLOP/s and
model FLOPs utilisation against the GPU's dense bf16 peak (FLOPs from torch.utils.flop_counter).

    python bench/model.py            # CPU: quick settings (8 x 112); CUDA: 8 x 224, plus the steps
    python bench/model.py --full     # 8 x 224 everywhere
    python bench/model.py --gpu-only --budget-s 200     # the steps alone (what `make gpu-check` runs)
    python bench/model.py --gpu-only --device cpu --variants tiny --depth 2 --img-size 32 --frames 4
                                     # the steps' code on a CPU (a dry run; no MFU without a GPU peak)
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

# The repository root goes first so that bench/*.py never shadows a package; _common is still found
# in bench/ (this script's directory).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import RESULTS_DIR, PeakRSS, machine_info, peak_cuda_mb, reset_peak_cuda, save_result  # noqa: E402
from _train_steps import Shapes, count_flops, run_part  # noqa: E402

from svformer import build_model  # noqa: E402
from svformer.files import write_atomic  # noqa: E402

log = logging.getLogger("bench.model")
NUM_CLASSES = 400
# Dense bf16 tensor-core peaks, for model FLOPs utilisation on a GPU.
GPU_PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "4090": 165e12}


def gmacs_per_view(variant: str, frames: int, size: int) -> float:
    """Forward multiply-accumulates of one (1, 3, T, S, S) view, in G, counted on the meta device."""
    with torch.device("meta"):
        model = build_model(variant, NUM_CLASSES, num_frames=frames, img_size=size)
        video = torch.empty(1, 3, frames, size, size)
    with FlopCounterMode(display=False) as counter:
        model(video)
    return counter.get_total_flops() / 2e9


def train_step(model: torch.nn.Module, video: torch.Tensor, labels: torch.Tensor, bf16: bool) -> None:
    autocast = torch.autocast(video.device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    with autocast:
        loss = F.cross_entropy(model(video), labels)
    loss.backward()
    model.zero_grad(set_to_none=True)


def timed_step(model, video, labels, bf16: bool) -> tuple[float, float, float]:
    """One step -> (wall seconds, process CPU seconds, peak MiB: CUDA allocated on a GPU, process RSS on a CPU)."""
    cuda = video.is_cuda
    if cuda:
        torch.cuda.synchronize()
        reset_peak_cuda()
    with nullcontext() if cuda else PeakRSS() as rss:
        start, cpu_start = time.perf_counter(), time.process_time()
        train_step(model, video, labels, bf16)
        if cuda:
            torch.cuda.synchronize()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return seconds, cpu_seconds, (peak_cuda_mb() if cuda else rss.peak_mb)


def bench_variant(variant: str, args: argparse.Namespace, device: torch.device, fused_bf16: bool) -> dict:
    """Interleaved fused/unfused steps of one variant -> clips/s, peak memory, GMACs."""
    torch.manual_seed(0)
    kw = dict(num_frames=args.frames, img_size=args.img_size)
    fused = build_model(variant, NUM_CLASSES, **kw).to(device).train()
    unfused = build_model(variant, NUM_CLASSES, fused_attention=False, **kw).to(device).train()
    unfused.load_state_dict(fused.state_dict())
    video = torch.randn(args.batch, 3, args.frames, args.img_size, args.img_size, device=device)
    labels = torch.randint(0, NUM_CLASSES, (args.batch,), device=device)
    runs = {"fused": (fused, fused_bf16), "unfused": (unfused, False)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpu_times: dict[str, list[float]] = {name: [] for name in runs}
    peaks: dict[str, float] = {name: 0.0 for name in runs}
    for i in range(args.warmup + args.iters):
        for name, (model, bf16) in runs.items():
            seconds, cpu_seconds, peak = timed_step(model, video, labels, bf16)
            peaks[name] = max(peaks[name], peak)
            if i >= args.warmup:
                times[name].append(seconds)
                cpu_times[name].append(cpu_seconds)
    out: dict = {
        "gmacs_per_view": round(gmacs_per_view(variant, args.frames, args.img_size), 2),
        "gmacs_per_view_8x224": round(gmacs_per_view(variant, 8, 224), 2),
        "params_m": round(sum(p.numel() for p in fused.parameters()) / 1e6, 2),
    }
    for name in runs:
        best, median = min(times[name]), statistics.median(times[name])
        out[name] = {
            "clips_per_s": round(args.batch / best, 3),
            "median_clips_per_s": round(args.batch / median, 3),
            "peak_mb": round(peaks[name], 1),
            "step_s": [round(t, 3) for t in times[name]],
            "cpu_s": [round(t, 3) for t in cpu_times[name]],
        }
    out["fused_over_unfused"] = round(out["fused"]["clips_per_s"] / out["unfused"]["clips_per_s"], 3)
    # Process CPU seconds are insensitive to other processes taking the cores (a check on the wall ratio).
    out["fused_over_unfused_cpu_time"] = round(min(cpu_times["unfused"]) / min(cpu_times["fused"]), 3)
    peak_flops = next(
        (v for k, v in GPU_PEAK_BF16.items() if device.type == "cuda" and k in torch.cuda.get_device_name(device)), None
    )
    if peak_flops:  # training FLOPs ~ 3 x forward (forward + 2x for backward)
        flops = 3 * 2e9 * out["gmacs_per_view"] * out["fused"]["clips_per_s"]
        out["fused"]["mfu"] = round(flops / peak_flops, 4)
    log.info("%s: %s", variant, out)
    return out


def bf16_probe(device: torch.device, frames: int = 4, size: int = 64) -> dict:
    """Tiny variant, small clips: the SDPA step with and without bf16 autocast (emulated bf16 on a CPU)."""
    torch.manual_seed(0)
    model = build_model("tiny", NUM_CLASSES, num_frames=frames, img_size=size).to(device).train()
    video = torch.randn(1, 3, frames, size, size, device=device)
    labels = torch.randint(0, NUM_CLASSES, (1,), device=device)
    out: dict = {"frames": frames, "img_size": size, "batch": 1}
    for name, bf16 in (("fp32", False), ("bf16_autocast", True)):
        train_step(model, video, labels, bf16)  # warm-up
        seconds = min(timed_step(model, video, labels, bf16)[0] for _ in range(2))
        out[f"tiny_sdpa_{name}_clips_per_s"] = round(1 / seconds, 3)
    out["bf16_over_fp32"] = round(out["tiny_sdpa_bf16_autocast_clips_per_s"] / out["tiny_sdpa_fp32_clips_per_s"], 3)
    return out


def gpu_peak_flops(device: torch.device) -> float | None:
    """The dense bf16 peak of this GPU (FLOP/s) from GPU_PEAK_BF16, None on a CPU or an unlisted GPU."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in GPU_PEAK_BF16.items() if k in name), None)


def bench_steps(args: argparse.Namespace, device: torch.device, bf16: bool, progress) -> dict:
    """Every (mode, variant, step) part, eager ones first, within --budget-s: a part whose estimated cost
    (the last part of its mode; 45 s for a first compile) no longer fits is skipped and named.
    `progress(partial)` is called after each part (the caller saves it, so a killed run keeps them)."""
    peak = gpu_peak_flops(device)
    shapes = Shapes(args.frames, args.img_size, args.batch, args.ssl_labeled, args.mu)
    overrides = {k: v for k, v in (("depth", args.depth), ("embed_dim", args.embed_dim)) if v}
    variants = args.variants.split(",") if args.variants else ["base", "small"]
    out: dict = {
        "parts": {},
        "skipped": [],
        "errors": [],
        "peak_flops": peak,
        "shapes": {
            "frames": shapes.frames,
            "img_size": shapes.size,
            "supervised_batch": shapes.batch,
            "svformer_labeled": shapes.labeled,
            "svformer_unlabeled": shapes.labeled * shapes.mu,
            "svformer_student_clips": shapes.labeled * (1 + 2 * shapes.mu),
        },
        "precision": "bf16 autocast" if bf16 else "fp32",
        "model_overrides": overrides,
    }
    flops: dict[tuple[str, str], float] = {}
    last_wall: dict[str, float] = {}
    start = time.perf_counter()
    for mode in args.modes.split(","):
        for variant in variants:
            for kind in args.steps.split(","):
                name = f"{variant}/{kind}/{mode}"
                estimate = last_wall.get(mode, 45.0 if mode == "compile" else 0.0)
                if args.budget_s and time.perf_counter() - start + estimate > args.budget_s:
                    out["skipped"].append(
                        f"{name}: --budget-s {args.budget_s:g} would be exceeded (estimated {estimate:.0f} s)"
                    )
                    continue
                part_start = time.perf_counter()
                try:
                    if (variant, kind) not in flops:
                        flops[variant, kind] = count_flops(kind, variant, shapes, **overrides)
                    part = run_part(
                        kind,
                        mode,
                        variant,
                        shapes,
                        device,
                        bf16,
                        args.warmup,
                        args.iters,
                        flops[variant, kind],
                        peak,
                        **overrides,
                    )
                    part["tflop_per_step"] = round(flops[variant, kind] / 1e12, 4)
                    out["parts"][name] = part
                    log.info("%s: %s", name, {k: v for k, v in part.items() if k != "step_s"})
                except Exception as err:  # noqa: BLE001 - an OOM or compile failure is a result, not the end
                    first_line = (str(err).splitlines() or [""])[0]
                    out["errors"].append(f"{name}: {type(err).__name__}: {first_line}")
                    log.warning("%s failed: %s", name, out["errors"][-1])
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                last_wall[mode] = time.perf_counter() - part_start
                progress(out)
    mfus = {n: p["mfu"] for n, p in out["parts"].items() if n.startswith("base/svformer/") and p.get("mfu")}
    if mfus:
        best = max(mfus, key=mfus.get)
        out["svformer_base"] = {"mfu": mfus[best], "part": best, "target_mfu": 0.45, "met": mfus[best] >= 0.45}
    out["wall_s"] = round(time.perf_counter() - start, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", help="comma-separated variants (default tiny,small,base; the steps: base,small)")
    parser.add_argument("--frames", type=int, default=8, help="T per clip")
    parser.add_argument("--img-size", type=int, default=0, help="frame side; 0: 224 on CUDA or with --full, else 112")
    parser.add_argument("--batch", type=int, default=0, help="clips per step; 0: 8 on CUDA, else 1")
    parser.add_argument("--iters", type=int, default=0, help="timed steps per mode; 0: 10 on CUDA, else 5")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0: torch's default")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per mode first")
    parser.add_argument("--full", action="store_true", help="8 x 224 even on a CPU (slow: minutes per variant)")
    parser.add_argument("--quick", action="store_true", help="CPU-like quick settings (112 px) even on CUDA")
    parser.add_argument("--no-bf16-probe", action="store_true", help="skip the CPU bf16 autocast probe")
    steps = parser.add_argument_group("training steps (on CUDA by default; see bench/_train_steps.py)")
    steps.add_argument(
        "--gpu-only",
        action="store_true",
        help="only the training steps, not the fused/unfused comparison (result: model_steps.json)",
    )
    steps.add_argument("--device", choices=("cuda", "cpu"), help="force the device (cpu: a dry run of the steps)")
    steps.add_argument("--steps", default="svformer,supervised", help="comma-separated: svformer, supervised")
    steps.add_argument("--modes", default="eager,compile", help="comma-separated: eager, compile")
    steps.add_argument("--ssl-labeled", type=int, default=1, help="B_l labeled clips of the SVFormer step")
    steps.add_argument("--mu", type=int, default=5, help="unlabeled clips per labeled clip (B_u = mu * B_l)")
    steps.add_argument("--depth", type=int, default=0, help="override the variants' depth (0: keep)")
    steps.add_argument("--embed-dim", type=int, default=0, help="override the variants' width (0: keep)")
    steps.add_argument("--budget-s", type=float, default=0, help="skip step parts that would end past this (0: none)")
    parser.add_argument("--name", help="result file bench/results/NAME.json (default model, or model_steps)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    gpu = device.type == "cuda"
    name = args.name or ("model_steps" if args.gpu_only else "model")
    if args.gpu_only and not gpu and args.device != "cpu":
        save_result(
            name,
            {
                "skipped": "no CUDA GPU (torch.cuda.is_available() is False); --device cpu dry-runs the steps",
                "machine": machine_info(),
            },
        )
        return
    big = (gpu and not args.quick) or args.full
    args.img_size = args.img_size or (224 if big else 112)
    args.batch = args.batch or (8 if gpu else 1)
    args.iters = args.iters or (10 if gpu else 5)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine_info()
    fused_bf16 = gpu or info.get("cpu_native_bf16", False)

    result: dict = {"ratios": {}, "machine": info}
    if not args.gpu_only:
        variants = (args.variants or "tiny,small,base").split(",")
        per_variant = {v: bench_variant(v, args, device, fused_bf16) for v in variants}
        result["ratios"]["fused_over_unfused"] = per_variant.get("small", next(iter(per_variant.values())))[
            "fused_over_unfused"
        ]
        result["per_variant"] = per_variant
        result["settings"] = {
            "device": device.type,
            "frames": args.frames,
            "img_size": args.img_size,
            "batch": args.batch,
            "iters": args.iters,
            "warmup": args.warmup,
            "fused": "sdpa" + (" + bf16 autocast" if fused_bf16 else " fp32"),
            "unfused": "plain softmax attention, fp32, no autocast",
            "gmacs_unit": "multiply-accumulates (FLOPs / 2)",
            "peak_mb": "CUDA max allocated" if gpu else "process RSS (sampled), includes both models",
        }
        if not gpu and not args.no_bf16_probe:
            result["bf16_probe"] = bf16_probe(device)
    if gpu or args.gpu_only:

        def progress(partial: dict) -> None:  # a killed run still leaves the parts it finished
            write_atomic(RESULTS_DIR / f"{name}.json", json.dumps({**result, "steps": partial}, indent=2) + "\n")

        result["steps"] = bench_steps(args, device, fused_bf16, progress)
        if "svformer_base" in result["steps"]:
            result["ratios"]["svformer_base_mfu"] = result["steps"]["svformer_base"]["mfu"]
    save_result(name, result)


if __name__ == "__main__":
    main()
