#!/usr/bin/env python
"""Loader throughput: shard streams vs on-the-fly PyAV decoding vs the JPEG-decode bound.

Five phases, each in its own process (so each peak memory is its own), all with K DataLoader workers,
batch B and the same clip (T frames, stride in stored frames = the same time span in the source):
- shards_labeled / shards_unlabeled: `svformer.data.labeled_loader` / `unlabeled_loader` with the
  real augmentation (`views.train_view` / `weak_strong_views`); an unlabeled (weak, strong) pair
  counts as one clip. shards_labeled_no_augment swaps in a slicing crop to show the loader alone.
- on_the_fly: a map-style dataset that opens the source video with PyAV, seeks and decodes the clip's
  window, converts it to RGB and samples T frames, then `views.train_view` (the reference code's way).
- jpeg_bound: `torchvision.io.decode_jpeg` of the same clips' JPEG bytes, preloaded in memory, and
  the same crop slice as shards_labeled_no_augment (so that batches stack and travel alike).

Ratios, like for like: shards_over_on_the_fly = shards_labeled / on_the_fly (both end in
`views.train_view`); shards_over_jpeg_bound = shards_labeled_no_augment / jpeg_bound (both decode,
then slice a crop); shards_with_augment_over_jpeg_bound = shards_labeled / jpeg_bound shows what the
augmentation (a float resize) costs on top. Phases are interleaved over `--rounds` and the best
round of each kept: on a shared machine, other load only ever slows a phase down.
Memory: the peak PSS of the phase's process tree (pages shared after fork counted once), sampled
twice a second, and the sum of the processes' peak RSS (an upper bound; torch alone is ~0.7 GB each).

GPU JPEG decoding (`--gpu-decode`, on by default where CUDA is available; `--gpu-decode-only` runs it
alone and needs no PyAV): decode_cpu and decode_gpu decode the jpeg_bound clips' JPEGs, preloaded as
tensors, B clips per `torchvision.io.decode_jpeg` call, in one process: on the CPU (torch's threads) and
with `device="cuda"` (nvJPEG, synchronised before the clock is read). Ratio gpu_decode_over_cpu_decode;
decode_gpu also reports how far its pixels are from the CPU decoder's (the two IDCTs differ slightly).

Remote (issue 23): remote_local and remote_http read the same shards (`--remote-shards`, default the
demo's shards/demo/unlabeled from `make demo-data`, else the bench's own) with `unlabeled_loader`:
from local disk, and from a local HTTP server (bench/_slow_http.py) that waits `--remote-delay-ms`
(100) before answering each request, as a distant object store would. remote_over_local = remote_http /
remote_local: how much of the latency the shard read-ahead (svformer/data/prefetch.py,
data.prefetch_shards) hides.

Data: `--shards DIR` (a prep directory; source videos found through its manifest's list/data_root,
or `--data-root`). Without it: synthesise videos into a temp dir and prep them (the demo data
settings by default; `--short-side 256` makes K400-like 640x360, 30 fps, 10 s sources instead).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
# The repository root goes first: bench/prep.py (on the path as this script's directory) must not
# shadow the `prep` package. _common is still found in bench/.
sys.path.insert(0, str(ROOT))

from _common import machine_info, save_result  # noqa: E402
from _slow_http import slow_http_server  # noqa: E402

log = logging.getLogger("bench.loader")
PHASES = ("shards_labeled", "shards_unlabeled", "shards_labeled_no_augment", "on_the_fly", "jpeg_bound")
REMOTE_PHASES = ("remote_local", "remote_http")
DEMO_REMOTE = ROOT / "shards" / "demo" / "unlabeled"  # `make demo-data`
DECODE_PHASES = ("decode_cpu", "decode_gpu")


# ---------------------------------------------------------------------------------------- data


def synthesise(tmp: Path, short_side: int | None, videos: int, workers: int, gop: int) -> Path:
    """Demo-like (or, with short_side, K400-like) source videos prepped into tmp/shards; returns it."""
    from prep.shards import prep_list
    from svformer.video.decode import DecodeSettings
    from svformer.video.ffmpeg_bin import ffmpeg_exe

    if short_side is None:
        from prep.synth import synthesize

        list_path = synthesize(tmp / "videos", videos_per_class=max(1, videos // 8), workers=workers)
        settings = DecodeSettings(short_side=64, fps=15)  # the Makefile's demo settings
    else:
        height = short_side * 360 // 256 // 2 * 2
        width = height * 16 // 9 // 2 * 2
        (tmp / "videos").mkdir(parents=True)
        lines = []
        for i in range(videos):
            path = tmp / "videos" / f"v{i:03d}.mp4"
            # testsrc2 moves; temporal noise stops x264 from coding static blocks for free (like a camera).
            source = f"testsrc2=size={width}x{height}:rate=30:duration=10,noise=alls=12:allf=t,hue=h={i * 40}"
            subprocess.run(
                [
                    ffmpeg_exe(),
                    "-hide_banner",
                    "-loglevel",
                    "error",
                    "-y",
                    "-f",
                    "lavfi",
                    "-i",
                    source,
                    "-c:v",
                    "libx264",
                    "-preset",
                    "veryfast",
                    "-crf",
                    "20",
                    "-g",
                    str(gop),
                    "-pix_fmt",
                    "yuv420p",
                    str(path),
                ],
                check=True,
            )
            lines.append(f"{path.name} {i % 8}\n")
        list_path = tmp / "videos" / "all.txt"
        list_path.write_text("".join(lines))
        settings = DecodeSettings(short_side=short_side, fps=30)
    prep_list(
        list_path, tmp / "shards", settings, data_root=list_path.parent, num_classes=8, workers=workers, progress=False
    )
    return tmp / "shards"


def read_samples(shards: Path) -> list[dict]:
    """Every sample's record and JPEG bytes (bench-sized data only: it is all held in memory)."""
    import webdataset as wds

    from svformer.data import parse_sample, shard_urls

    out = []
    for sample in wds.DataPipeline(wds.SimpleShardList(shard_urls(shards)), wds.tarfile_to_samples()):
        record, blob, sizes = parse_sample(sample)
        out.append({"record": record, "blob": blob, "sizes": sizes})
    return out


def source_paths(shards: Path, records: list[dict], data_root: str | None, videos_list: str | None) -> list[str]:
    """Where each sample's source video is: --data-root, --videos-list's directory, else what the
    shards' manifest says (prep's data_root, or its list file's directory)."""
    from svformer.data import read_manifest

    settings = read_manifest(shards).get("settings", {})
    listed = videos_list or settings.get("list")
    base = (
        data_root
        or (videos_list and str(Path(videos_list).parent))
        or settings.get("data_root")
        or str(Path(listed or ".").parent)
    )
    paths = [r["source"] if os.path.isabs(r["source"]) else os.path.join(base, r["source"]) for r in records]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise SystemExit(f"source video {missing[0]} not found; pass --data-root")
    return paths


# ---------------------------------------------------------------------------------------- datasets


class OnTheFly(torch.utils.data.Dataset):
    """Decode a random clip from the source video with PyAV per item, as the reference decoder does."""

    def __init__(self, videos: list[tuple[str, float]], num_frames: int, stride: int, transform) -> None:
        self.videos, self.num_frames, self.stride, self.transform = videos, num_frames, stride, transform

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> torch.Tensor:
        import av

        path, stored_fps = self.videos[i]
        g = torch.Generator().manual_seed(int(time.time_ns()) % 2**31)
        with av.open(path) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate)
            length = stream.frames or int(float(stream.duration * stream.time_base) * fps)
            span = ((self.num_frames - 1) * self.stride + 1) * fps / stored_fps  # source frames
            start = float(torch.rand((), generator=g)) * max(length - span, 0)
            per_frame = stream.duration / length  # pts units per frame, as the reference computes it
            offset = stream.start_time or 0
            start_pts, end_pts = offset + int(start * per_frame), offset + int((start + span) * per_frame)
            container.seek(max(start_pts - 1024, 0), any_frame=False, backward=True, stream=stream)
            frames = []
            for frame in container.decode(stream):
                if frame.pts is None or frame.pts < start_pts:
                    continue
                if frame.pts > end_pts:
                    break
                frames.append(frame.to_ndarray(format="rgb24"))  # the reference converts the whole window
        clip = torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2)  # (C, N, H, W)
        index = torch.linspace(0, clip.shape[1] - 1, self.num_frames).long()  # reference temporal_sampling
        return self.transform(clip[:, index], g)


class JpegBound(torch.utils.data.Dataset):
    """Decode preloaded JPEG bytes of T frames per item and nothing else (a slice to `size` x `size`
    only so that batches stack and travel from the workers like the shard stream's)."""

    def __init__(self, clips: list[list[bytes]], size: int) -> None:
        self.clips, self.size = clips, size

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> torch.Tensor:
        from torchvision.io import decode_jpeg

        data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in self.clips[i]]
        frames = torch.stack([img.permute(1, 2, 0) for img in decode_jpeg(data)])  # (T, H, W, C), as the loader
        return frames.permute(3, 0, 1, 2)[..., : self.size, : self.size].contiguous()  # (C, T, S, S)


# ---------------------------------------------------------------------------------------- measuring


def _tree_pids() -> list[int]:
    """This process and its live descendants (the DataLoader workers)."""
    pids, todo = [], [os.getpid()]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(k) for k in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue  # a process that just exited
    return pids


def _status_kb(pid: int, path: str, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_memory_mb() -> tuple[float, float]:
    """(PSS now, sum of peak RSS) over this process and its workers, MiB. PSS counts pages shared
    after fork (torch's libraries: ~0.7 GB per process here) once; the RSS sum counts them per process."""
    pids = _tree_pids()
    return (
        sum(_status_kb(p, "smaps_rollup", "Pss:") for p in pids) / 1024,
        sum(_status_kb(p, "status", "VmHWM:") for p in pids) / 1024,
    )


def measure(batches, clips_of, warmup: int, seconds: float) -> dict:
    """Clips/s over `seconds` after `warmup` batches (worker start-up and buffer filling excluded),
    with the peak PSS of the process tree (sampled twice a second) and its summed peak RSS."""
    iterator = iter(batches)
    for _ in range(warmup):
        next(iterator)
    clips, start, peak_pss, last_sample = 0, time.perf_counter(), 0.0, 0.0
    while time.perf_counter() - start < seconds or clips == 0:
        clips += clips_of(next(iterator))
        if time.perf_counter() - last_sample > 0.5:
            peak_pss, last_sample = max(peak_pss, tree_memory_mb()[0]), time.perf_counter()
    elapsed = time.perf_counter() - start
    pss, rss_sum = tree_memory_mb()
    return {
        "clips_per_s": round(clips / elapsed, 2),
        "clips": clips,
        "seconds": round(elapsed, 2),
        "peak_pss_mb": round(max(peak_pss, pss), 1),
        "peak_rss_sum_mb": round(rss_sum, 1),
        "processes": len(_tree_pids()),
    }


def run_phase(args: argparse.Namespace) -> dict:
    from svformer import data, views
    from svformer.config import load_config

    cfg = load_config(args.config)
    cfg.data.labeled = cfg.data.unlabeled = str(args.shards)
    cfg.data.workers, cfg.data.batch_size, cfg.data.unlabeled_ratio = args.workers, args.batch_size, 1
    T, stride, size = cfg.data.num_frames, cfg.data.sampling_rate, cfg.data.img_size

    def train_view(clip: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return views.train_view(clip, size, cfg.data.short_side_range, cfg.data.hflip, g)

    def loader(dataset):
        sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=10**8)
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=args.batch_size,
            sampler=sampler,
            num_workers=args.workers,
            persistent_workers=args.workers > 0,
        )

    count = len  # a batch tensor (B, ...) or a dict of them
    if args.phase in REMOTE_PHASES:
        # The same unlabeled stream (weak + strong views) from local disk, then from the slow server.
        cfg.data.unlabeled = str(args.remote_shards) if args.phase == "remote_local" else args.remote_url
        return measure(data.unlabeled_loader(cfg, seed=1), lambda b: len(b["label"]), args.warmup, args.seconds)
    if args.phase == "shards_labeled":
        return measure(data.labeled_loader(cfg, seed=1), lambda b: len(b["label"]), args.warmup, args.seconds)
    if args.phase == "shards_unlabeled":
        return measure(data.unlabeled_loader(cfg, seed=1), lambda b: len(b["label"]), args.warmup, args.seconds)
    if args.phase == "shards_labeled_no_augment":

        def crop(clip, g):
            return clip[..., :size, :size].contiguous()

        return measure(
            data.labeled_loader(cfg, seed=1, transform=crop), lambda b: len(b["label"]), args.warmup, args.seconds
        )
    samples = read_samples(args.shards)
    if args.phase == "on_the_fly":
        paths = source_paths(args.shards, [s["record"] for s in samples], args.data_root, args.videos_list)
        videos = [(p, float(s["record"]["fps"])) for p, s in zip(paths, samples)]
        return measure(loader(OnTheFly(videos, T, stride, train_view)), count, args.warmup, args.seconds)
    clips = clip_jpegs(samples, T, stride)
    del samples
    if args.phase in DECODE_PHASES:
        if args.decode_short_side:
            clips = synthetic_clips(32, T, args.decode_short_side)
        return measure_decode(clips, args)
    return measure(loader(JpegBound(clips, size)), count, args.warmup, args.seconds)


def clip_jpegs(samples: list[dict], num_frames: int, stride: int) -> list[list[bytes]]:
    """The JPEG bytes of 8 random clips per video (each distinct frame once), with the same start
    distribution as the training stream."""
    from svformer import data

    g = torch.Generator().manual_seed(0)
    clips = []
    for s in samples:
        offsets = data.frame_offsets(s["sizes"])
        for _ in range(8):
            start = data.random_clip_start(len(s["sizes"]), num_frames, stride, g)
            frames = sorted(set(data.clip_index_list(len(s["sizes"]), num_frames, stride, start)))
            clips.append([s["blob"][offsets[i] : offsets[i + 1]] for i in frames])
    return clips


def synthetic_clips(count: int, num_frames: int, short_side: int, seed: int = 0) -> list[list[bytes]]:
    """`count` clips of 16:9 frames at `short_side`, JPEG quality 90 as prep writes them: a smooth random
    texture panning across the frames plus camera-like noise (flat frames would decode unrealistically fast)."""
    import torch.nn.functional as F
    from torchvision.io import encode_jpeg

    g = torch.Generator().manual_seed(seed)
    h, w = short_side, short_side * 16 // 9 // 2 * 2
    clips = []
    for _ in range(count):
        field = torch.rand(1, 3, h // 16 + 1, w // 16 + 1, generator=g)
        base = F.interpolate(field, size=(h, w), mode="bicubic", align_corners=False)[0] * 255
        frames = []
        for t in range(num_frames):
            frame = (base.roll(shifts=4 * t, dims=2) + torch.randn(3, h, w, generator=g) * 12).clamp(0, 255)
            frames.append(encode_jpeg(frame.to(torch.uint8), quality=90).numpy().tobytes())
        clips.append(frames)
    return clips


def measure_decode(clips: list[list[bytes]], args: argparse.Namespace) -> dict:
    """decode_cpu / decode_gpu: B clips' JPEGs per `decode_jpeg` call, in this process, for --seconds."""
    from torchvision.io import ImageReadMode, decode_jpeg

    device = "cuda" if args.phase == "decode_gpu" else "cpu"
    tensors = [[torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in clip] for clip in clips]
    batches = [
        [t for clip in tensors[i : i + args.batch_size] for t in clip]
        for i in range(0, len(tensors) - args.batch_size + 1, args.batch_size)
    ] or [sum(tensors, [])]

    def decode(batch: list[torch.Tensor]) -> list[torch.Tensor]:
        images = decode_jpeg(batch, mode=ImageReadMode.RGB, device=device)
        if device == "cuda":
            torch.cuda.synchronize()
        return images

    def stream():
        while True:
            for batch in batches:
                decode(batch)
                yield args.batch_size

    extra: dict = {}
    if device == "cuda":
        reference = decode_jpeg(batches[0], mode=ImageReadMode.RGB)
        diffs = torch.cat([(a.cpu().int() - b.int()).abs().flatten() for a, b in zip(decode(batches[0]), reference)])
        extra = {
            "gpu": torch.cuda.get_device_name(0),
            "max_abs_diff_vs_cpu": int(diffs.max()),
            "mean_abs_diff_vs_cpu": round(float(diffs.float().mean()), 4),
        }
        torch.cuda.reset_peak_memory_stats()
    figures = measure(stream(), lambda n: n, args.warmup, args.seconds)
    if device == "cuda":
        extra["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    frames = sum(len(c) for c in clips) / len(clips)
    return {
        **figures,
        "frames_per_s": round(figures["clips_per_s"] * frames, 1),
        "torch_threads": torch.get_num_threads(),
        **extra,
    }


# ---------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--shards", type=Path, help="prep output directory (default: synthesise and prep into a temp dir)")
    p.add_argument("--data-root", help="base of the relative source paths (default: from the shards' manifest)")
    p.add_argument("--videos-list", help="the list file the shards were prepped from (its directory is the data root)")
    p.add_argument(
        "--config",
        help="clip settings (data.*); default configs/demo.yaml, or the K400 "
        "config (T 8, stride 8, 224 crops) with --short-side",
    )
    p.add_argument("--short-side", type=int, help="synthesise K400-like sources prepped at this short side")
    p.add_argument("--videos", type=int, default=16, help="videos to synthesise")
    p.add_argument("--gop", type=int, default=250, help="keyframe interval of synthesised K400-like sources")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers, every phase")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--warmup", type=int, default=3, help="batches before timing starts")
    p.add_argument("--seconds", type=float, default=15.0, help="timed seconds per phase")
    p.add_argument("--name", help="result file bench/results/NAME.json (default loader, or loader_shortN)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of all phases; the best is kept")
    p.add_argument(
        "--gpu-decode",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time JPEG decoding on the GPU against the CPU (default: where CUDA is available)",
    )
    p.add_argument(
        "--gpu-decode-only",
        action="store_true",
        help="only decode_cpu and decode_gpu (no PyAV needed; result loader_gpu_decode.json)",
    )
    p.add_argument(
        "--decode-short-side",
        type=int,
        default=0,
        help="decode phases: synthetic 16:9 JPEG frames at this short side (e.g. 256, the paper's "
        "prep) instead of the shards' own",
    )
    p.add_argument(
        "--remote-shards",
        type=Path,
        help="prep directory the remote phases serve (default shards/demo/unlabeled if made, else --shards)",
    )
    p.add_argument("--remote-delay-ms", type=float, default=100.0, help="the slow server's wait per request")
    p.add_argument(
        "--remote-only",
        action="store_true",
        help="run only the remote phases and add them to the existing bench/results/loader.json",
    )
    p.add_argument("--remote-url", help=argparse.SUPPRESS)
    p.add_argument("--phase", choices=PHASES + DECODE_PHASES + REMOTE_PHASES, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def remote_settings(args: argparse.Namespace) -> dict:
    from svformer.config import load_config

    shards = args.remote_shards
    return {
        "remote_shards": str(shards.relative_to(ROOT)) if shards.is_relative_to(ROOT) else str(shards),
        "remote_delay_ms": args.remote_delay_ms,
        "prefetch_shards": load_config(args.config).data.prefetch_shards,
        "stream": "unlabeled_loader (weak + strong views)",
    }


def save_remote_only(args: argparse.Namespace, figures: dict[str, dict], ratio: float) -> None:
    """--remote-only: the remote phases' figures and ratio added to the existing result, with the machine
    and settings they were measured with (the other phases' figures are left as they were measured)."""
    from _common import RESULTS_DIR

    name = args.name or "loader"
    path = RESULTS_DIR / f"{name}.json"
    result = json.loads(path.read_text()) if path.is_file() else {"ratios": {}, "figures": {}, "targets": {}}
    result["ratios"]["remote_over_local"] = ratio
    result["figures"].update(figures)
    result.setdefault("targets", {})["remote_over_local"] = 0.8
    result["remote"] = {
        "machine": machine_info(),
        "settings": {
            **remote_settings(args),
            "rounds": args.rounds,
            "seconds_per_phase": args.seconds,
            "workers": args.workers,
            "batch_size": args.batch_size,
        },
    }
    save_result(name, result)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    if args.config is None:
        name = "svformer_b_k400_1pct.yaml" if args.short_side else "demo.yaml"
        args.config = str(ROOT / "configs" / name)
    if args.phase:
        print(json.dumps(run_phase(args)))
        return
    if args.remote_only and args.shards is None:  # nothing to synthesise: the remote phases read the demo's shards
        args.shards = args.remote_shards or (DEMO_REMOTE if (DEMO_REMOTE / "manifest.json").is_file() else None)
    synthesised = args.shards is None
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp, contextlib.ExitStack() as stack:
        if synthesised:
            log.info("synthesising %d videos and prepping them into %s", args.videos, tmp)
            args.shards = synthesise(Path(tmp), args.short_side, args.videos, args.workers, args.gop)
        if args.remote_shards is None:
            args.remote_shards = DEMO_REMOTE if (DEMO_REMOTE / "manifest.json").is_file() else args.shards
        args.remote_shards = args.remote_shards.resolve()
        server = stack.enter_context(slow_http_server(args.remote_shards.parent, args.remote_delay_ms / 1000))
        remote_url = f"{server}/{args.remote_shards.name}"
        base = (
            [
                sys.executable,
                __file__,
                "--shards",
                str(args.shards),
                "--config",
                args.config,
                "--workers",
                str(args.workers),
                "--batch-size",
                str(args.batch_size),
                "--warmup",
                str(args.warmup),
                "--seconds",
                str(args.seconds),
                "--decode-short-side",
                str(args.decode_short_side),
                "--remote-shards",
                str(args.remote_shards),
                "--remote-url",
                remote_url,
            ]
            + (["--data-root", args.data_root] if args.data_root else [])
            + (["--videos-list", args.videos_list] if args.videos_list else [])
        )
        figures: dict[str, dict] = {}
        skipped: dict[str, str] = {}
        phases = () if args.gpu_decode_only else PHASES + REMOTE_PHASES
        if args.remote_only:
            phases, args.gpu_decode = REMOTE_PHASES, False
        if args.gpu_decode_only or args.gpu_decode or (args.gpu_decode is None and torch.cuda.is_available()):
            phases += DECODE_PHASES if torch.cuda.is_available() else DECODE_PHASES[:1]
            if not torch.cuda.is_available():
                skipped["decode_gpu"] = "no CUDA GPU (torch.cuda.is_available() is False)"
        # Phases interleaved over rounds, best round kept: a shared machine's noise only ever slows a phase down.
        for round_ in range(args.rounds):
            for phase in phases:
                out = subprocess.run(base + ["--phase", phase], capture_output=True, text=True, check=False)
                if out.returncode != 0:
                    raise SystemExit(f"phase {phase} failed:\n{out.stderr[-2000:]}")
                got = json.loads(out.stdout.strip().splitlines()[-1])
                log.info("round %d %s: %s", round_, phase, got)
                if phase not in figures or got["clips_per_s"] > figures[phase]["clips_per_s"]:
                    figures[phase] = got
        record = next(iter(read_samples(args.shards)))["record"]
    from svformer.config import load_config

    cfg = load_config(args.config)
    rate = {phase: got["clips_per_s"] for phase, got in figures.items()}
    if args.remote_only:
        save_remote_only(args, figures, round(rate["remote_http"] / rate["remote_local"], 2))
        return
    ratios = {}
    if not args.gpu_decode_only:
        # Like for like: both sides of each ratio do the same work after decoding (see the docstring).
        ratios = {
            "shards_over_on_the_fly": round(rate["shards_labeled"] / rate["on_the_fly"], 2),
            "shards_over_jpeg_bound": round(rate["shards_labeled_no_augment"] / rate["jpeg_bound"], 2),
            "shards_with_augment_over_jpeg_bound": round(rate["shards_labeled"] / rate["jpeg_bound"], 2),
            "remote_over_local": round(rate["remote_http"] / rate["remote_local"], 2),
        }
    if "decode_gpu" in rate:
        ratios["gpu_decode_over_cpu_decode"] = round(rate["decode_gpu"] / rate["decode_cpu"], 2)
    result = {
        "ratios": ratios,
        "machine": machine_info(),
        "skipped": skipped,
        "settings": {
            "rounds": args.rounds,
            "seconds_per_phase": args.seconds,
            "workers": args.workers,
            "batch_size": args.batch_size,
            "num_frames": cfg.data.num_frames,
            "sampling_rate": cfg.data.sampling_rate,
            "img_size": cfg.data.img_size,
            "stored_size": [record["height"], record["width"]],
            "stored_fps": record["fps"],
            "source_size": [record["src_height"], record["src_width"]],
            "source_fps": record["src_fps"],
            "shards": "synthesised" if synthesised else str(args.shards),
            "decode_frames": (
                f"synthetic, short side {args.decode_short_side}, 16:9, JPEG quality 90"
                if args.decode_short_side
                else "the shards' JPEGs"
            ),
        },
        "figures": figures,
        "remote": {"settings": remote_settings(args)},
        "targets": {"shards_over_on_the_fly": 5.0, "shards_over_jpeg_bound": 0.6, "remote_over_local": 0.8},
    }
    default = "loader_gpu_decode" if args.gpu_decode_only else "loader"
    save_result(args.name or (default if args.short_side is None else f"{default}_short{args.short_side}"), result)


if __name__ == "__main__":
    main()
