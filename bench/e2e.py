"""End to end on the demo data: synth -> split -> prep -> deepspeed train (2 processes) -> 5x3 eval.

Times every stage of what `make demo` does, from nothing, into a scratch directory, and records the
final teacher/student top-1. Prints one JSON object and writes bench/results/e2e.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from _common import machine_info, save_result  # noqa: E402


def main() -> None:
    argparse.ArgumentParser(
        description="Time the demo pipeline from nothing (synth, split, prep, "
        "deepspeed train with 2 processes, 5x3 eval) into runs/bench_e2e."
    ).parse_args()
    work = ROOT / "runs" / "bench_e2e"
    shutil.rmtree(work, ignore_errors=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    py, ds = sys.executable, str(Path(sys.executable).parent / "deepspeed")
    stages = [
        ("synth", [py, "cli.py", "synth", "--kind", "events", "--out", f"{work}/data", "--videos-per-class", "64"]),
        (
            "split",
            [
                py,
                "cli.py",
                "split",
                "--list",
                f"{work}/data/all.txt",
                "--labeled",
                "0.1",
                "--val",
                "0.5",
                "--seed",
                "0",
                "--out",
                f"{work}/lists",
            ],
        ),
    ]
    for part in ("labeled", "unlabeled", "val"):
        stages.append(
            (
                f"prep_{part}",
                [
                    py,
                    "cli.py",
                    "prep",
                    "--list",
                    f"{work}/lists/{part}.txt",
                    "--data-root",
                    f"{work}/data",
                    "--num-classes",
                    "8",
                    "--short-side",
                    "64",
                    "--fps",
                    "15",
                    "--workers",
                    "2",
                    "--out",
                    f"{work}/shards/{part}",
                ],
            )
        )
    sets = [f"data.{p}={work}/shards/{p}" for p in ("labeled", "unlabeled", "val")] + [f"train.output_dir={work}/run"]
    stages.append(
        (
            "train",
            [
                ds,
                "--num_gpus",
                "2",
                "cli.py",
                "train",
                "--config",
                "configs/demo.yaml",
                *[a for s in sets for a in ("--set", s)],
            ],
        )
    )
    stages.append(("eval", [py, "cli.py", "eval", "--ckpt", f"{work}/run", "--views", "5x3", "--model", "both"]))
    walls = {}
    for name, cmd in stages:
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        walls[name] = round(time.perf_counter() - start, 1)
        print(f"{name}: {walls[name]} s", file=sys.stderr, flush=True)
    metrics = json.loads((work / "run" / "eval" / "metrics.json").read_text())
    save_result(
        "e2e",
        {
            "name": "e2e",
            "stages_s": walls,
            "total_s": round(sum(walls.values()), 1),
            "top1": {m: metrics[m]["top1"] for m in metrics},
            "videos": metrics[next(iter(metrics))]["videos"],
            "ratios": {},
            "machine": machine_info(),
        },
    )


if __name__ == "__main__":
    main()
