#!/usr/bin/env python
"""prep throughput vs the bare ffmpeg command line doing the same work.

Both sides decode the same videos with the same ffmpeg binary, the same filters (fps cap when the
source is faster, short-side resize, JPEG encode at the same -q:v) and the same parallelism (K
videos at a time):
- prep: `prep.shards.prep_list` end to end (list parsing, PyAV probe, ffmpeg, JPEG stream
  splitting, tar shards, sidecars, manifest).
- ffmpeg: one `ffmpeg ... -f image2 DIR/%06d.jpg` per video (argv from `svformer.video.decode.ffmpeg_command`,
  built before the clock starts, so the baseline does not pay for probing), K at a time.
Each side runs `--repeats` times, alternating; the fastest run of each counts (the machine may be shared).

Data: `--videos DIR` (a directory with all.txt, e.g. from `cli.py synth`); by default the demo
dataset is synthesised into a temp dir first. Prints one JSON object as its last line and writes
bench/results/prep.json.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))  # first: the `prep` package, not this script's name

from _common import machine_info, peak_rss_mb, save_result  # noqa: E402

from prep.shards import prep_list  # noqa: E402
from prep.synth import synthesize  # noqa: E402
from svformer.lists import read_list  # noqa: E402
from svformer.video.decode import DecodeSettings, ffmpeg_command, probe  # noqa: E402

log = logging.getLogger("bench.prep")


def run_prep(list_path: Path, out: Path, settings: DecodeSettings, workers: int) -> tuple[float, int]:
    """Seconds for one full prep run into a fresh `out`, and the frames it stored."""
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    manifest = prep_list(list_path, out, settings, workers=workers, progress=False)
    return time.perf_counter() - t0, manifest["num_frames"]


def run_ffmpeg(commands: list[tuple[list[str], Path]], workers: int) -> tuple[float, int]:
    """Seconds for the bare ffmpeg commands, K at a time, into fresh dirs, and the JPEG files written."""
    for _, folder in commands:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)

    def one(argv: list[str]) -> None:
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, [argv for argv, _ in commands]))
    seconds = time.perf_counter() - t0
    return seconds, sum(len(os.listdir(folder)) for _, folder in commands)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--videos", type=Path, default=None, help="directory with all.txt (default: synthesise the demo set)"
    )
    parser.add_argument("--videos-per-class", type=int, default=24, help="demo set size when synthesising")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel videos, both sides")
    parser.add_argument("--short-side", type=int, default=256)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--repeats", type=int, default=3, help="runs per side; the fastest counts")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    settings = DecodeSettings(short_side=args.short_side, fps=args.fps, quality=args.quality)

    with tempfile.TemporaryDirectory(prefix="bench_prep_") as tmp_name:
        tmp = Path(tmp_name)
        if args.videos is None:
            log.info("synthesising the demo dataset (%d videos per class)", args.videos_per_class)
            list_path = synthesize(tmp / "videos", videos_per_class=args.videos_per_class, workers=args.workers)
        else:
            list_path = args.videos / "all.txt"
        entries = read_list(list_path).entries
        commands = [
            (
                ffmpeg_command(e.path, probe(e.path), settings, output=str(tmp / "jpg" / f"{i:06d}" / "%06d.jpg")),
                tmp / "jpg" / f"{i:06d}",
            )
            for i, e in enumerate(entries)
        ]
        prep_times, ffmpeg_times = [], []
        for _ in range(args.repeats):
            prep_s, prep_frames = run_prep(list_path, tmp / "shards", settings, args.workers)
            ffmpeg_s, ffmpeg_frames = run_ffmpeg(commands, args.workers)
            prep_times.append(prep_s)
            ffmpeg_times.append(ffmpeg_s)
            log.info("prep %.2f s, ffmpeg %.2f s", prep_s, ffmpeg_s)
        if prep_frames != ffmpeg_frames:
            raise SystemExit(f"frame counts differ: prep stored {prep_frames}, ffmpeg wrote {ffmpeg_frames}")

    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = {
        "ratios": {"prep_over_ffmpeg": round(min(prep_times) / min(ffmpeg_times), 3)},
        "machine": machine_info(),
        "prep_s": round(min(prep_times), 3),
        "ffmpeg_s": round(min(ffmpeg_times), 3),
        "prep_runs_s": [round(t, 3) for t in prep_times],
        "ffmpeg_runs_s": [round(t, 3) for t in ffmpeg_times],
        "videos": len(entries),
        "frames": prep_frames,
        "workers": args.workers,
        "settings": {"short_side": settings.short_side, "fps": settings.fps, "quality": settings.quality},
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_rss_ffmpeg_mb": round(children_kb / 1024, 1),
    }
    save_result("prep", result)


if __name__ == "__main__":
    main()
