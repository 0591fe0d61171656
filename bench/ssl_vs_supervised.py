"""SVFormer vs supervised-only on the demo data (10% labels), over seeds, plus the paper's ablations.

Every arm trains the same model (configs/demo.yaml) for the same number of steps with the same seed,
then is scored with 5x3 multi-view testing on the demo validation videos. Arms:
  supervised   labeled videos only (ssl.enabled=false)
  svformer     EMA teacher + pseudo-labels + Tube TokenMix + TWAug (the method)
Ablations (one seed each unless --ablation-seeds): no Tube TokenMix, random-token and whole-frame
masks instead of tubes, no temporal warping, FixMatch-style (the student labels itself, no EMA).

    python bench/ssl_vs_supervised.py                 # 3 seeds + ablations, 2 runs at a time
    python bench/ssl_vs_supervised.py --seeds 0 --no-ablations --steps 100   # a quick look

Prints one JSON object (last line) and writes bench/results/ssl.json, ssl.md and ssl_bars.png.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _common import RESULTS_DIR, machine_info, save_result  # noqa: E402

ARMS = {"supervised": ["ssl.enabled=false"], "svformer": []}
ABLATIONS = {
    "no_tokenmix": ["ssl.mix=false"],
    "mask_token": ["ssl.mask_shape=token"],
    "mask_frame": ["ssl.mask_shape=frame"],
    "no_warp": ["ssl.temporal_warp=false"],
    "fixmatch": ["ssl.teacher=student"],
}


def ensure_demo_shards() -> None:
    if not all((ROOT / "shards/demo" / part / "manifest.json").exists() for part in ("labeled", "unlabeled", "val")):
        subprocess.run(["make", "demo-data"], cwd=ROOT, check=True)


def run_arm(name: str, seed: int, overrides: list[str], steps: int | None, work: Path) -> dict:
    """Train one arm (one process, one thread) and score it with 5x3 views; returns its metrics."""
    out = work / f"{name}-seed{seed}"
    shutil.rmtree(out, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    sets = [f"train.output_dir={out}", f"train.seed={seed}", "train.val_every=0", *overrides]
    if steps:
        sets.append(f"train.max_steps={steps}")
    cmd = [sys.executable, "cli.py", "train", "--config", "configs/demo.yaml"] + [a for s in sets for a in ("--set", s)]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=(out.parent / f"{out.name}.log").open("w"))
    train_s = time.perf_counter() - start
    subprocess.run([sys.executable, "cli.py", "eval", "--ckpt", str(out), "--views", "5x3", "--model", "both",
                    "--out", str(out / "eval")], cwd=ROOT, env=env, check=True, capture_output=True)
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    row = {"arm": name, "seed": seed, "train_s": round(train_s, 1)}
    for model in ("student", "teacher"):
        if model in metrics:
            row[f"{model}_top1"] = metrics[model]["top1"]
            row[f"{model}_top5"] = metrics[model]["top5"]
    row["best_top1"] = row.get("teacher_top1", row["student_top1"])
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def summarize(rows: list[dict]) -> dict:
    """Mean and spread (population std, min, max) of top-1 per arm and model."""
    table = {}
    for arm in dict.fromkeys(r["arm"] for r in rows):
        mine = [r for r in rows if r["arm"] == arm]
        entry = {"runs": len(mine)}
        for key in ("student_top1", "teacher_top1", "best_top1"):
            values = [r[key] for r in mine if key in r]
            if values:
                entry[key] = {"mean": statistics.fmean(values), "std": statistics.pstdev(values),
                              "min": min(values), "max": max(values)}
        table[arm] = entry
    return table


def markdown(table: dict) -> str:
    lines = ["| arm | runs | student top-1 (mean ± std) | teacher top-1 (mean ± std) |", "|---|---|---|---|"]
    for arm, entry in table.items():
        cells = []
        for key in ("student_top1", "teacher_top1"):
            cells.append(f"{100 * entry[key]['mean']:.1f} ± {100 * entry[key]['std']:.1f}" if key in entry else "–")
        lines.append(f"| {arm} | {entry['runs']} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def plot(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(table)
    means = [100 * table[a]["best_top1"]["mean"] for a in arms]
    stds = [100 * table[a]["best_top1"]["std"] for a in arms]
    fig, ax = plt.subplots(figsize=(1.3 * len(arms) + 2, 4))
    colors = ["#999999" if a == "supervised" else "#1f77b4" if a == "svformer" else "#9ecae1" for a in arms]
    ax.bar(arms, means, yerr=stds, color=colors, capsize=4)
    ax.set_ylabel("top-1 % (5x3 views; teacher where there is one)")
    ax.set_title("demo, 10% labels: SVFormer vs supervised-only and ablations")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ablation-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--no-ablations", action="store_true")
    parser.add_argument("--steps", type=int, default=None, help="override train.max_steps (default: the demo config's)")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (one thread each)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_ssl")
    args = parser.parse_args()

    ensure_demo_shards()
    jobs = [(arm, seed, sets) for seed in args.seeds for arm, sets in ARMS.items()]
    if not args.no_ablations:
        jobs += [(name, seed, sets) for seed in args.ablation_seeds for name, sets in ABLATIONS.items()]
    start = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda job: run_arm(job[0], job[1], job[2], args.steps, args.work), jobs))
    table = summarize(rows)
    sup, ssl = table["supervised"]["student_top1"], table["svformer"]["best_top1"]
    result = {
        "name": "ssl_vs_supervised",
        "setting": "demo data (8 classes), 10% labels, configs/demo.yaml" + (f", {args.steps} steps" if args.steps else ""),
        "ratios": {"svformer_minus_supervised_top1": ssl["mean"] - sup["mean"]},
        "margin_over_spread": (ssl["mean"] - sup["mean"]) / max(ssl["std"] + sup["std"], 1e-9),
        "table": table,
        "runs": rows,
        "wall_s": round(time.perf_counter() - start, 1),
        "machine": machine_info(),
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "ssl.md").write_text(markdown(table))
    plot(table, RESULTS_DIR / "ssl_bars.png")
    curves = args.work / f"svformer-seed{args.seeds[0]}" / "eval" / "curves.png"
    if curves.exists():
        shutil.copy(curves, RESULTS_DIR / "ssl_curves.png")
    save_result("ssl", result)


if __name__ == "__main__":
    main()
