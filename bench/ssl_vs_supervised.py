"""SVFormer vs supervised-only (default: the demo data, 10% labels), over seeds, plus the paper's ablations.

Every arm trains the same model from the same config (--config, default configs/demo.yaml, plus any
--set overrides) for the same number of steps with the same seed, then is scored with multi-view
testing (--views, default 5x3) on the config's validation shards. Arms:
  supervised   labeled videos only (train.method=supervised)
  svformer     EMA teacher + pseudo-labels + Tube TokenMix + TWAug (the method)
Ablations (one seed each unless --ablation-seeds): no Tube TokenMix, random-token and whole-frame
masks instead of tubes, no temporal warping, FixMatch (train.method=fixmatch: the model labels its own
weak views, no EMA teacher, no Tube TokenMix).

    python bench/ssl_vs_supervised.py                 # 3 seeds + ablations, 2 runs at a time
    python bench/ssl_vs_supervised.py --seeds 0 --no-ablations --steps 100   # a quick look
    python bench/ssl_vs_supervised.py --config my.yaml --set model.imagenet_init=vit.pth \
        --results runs/my_ssl                        # the same comparison on your own shards

Prints one JSON object (last line) and writes ssl.json, ssl.md, ssl_bars.png and ssl_curves.png
to --results (default bench/results).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _common import RESULTS_DIR, machine_info, save_result  # noqa: E402

from svformer.errors import UserError  # noqa: E402

ARMS = {"supervised": ["train.method=supervised"], "svformer": []}
ABLATIONS = {
    "no_tokenmix": ["ssl.mix=false"],
    "mask_token": ["ssl.mask_shape=token"],
    "mask_frame": ["ssl.mask_shape=frame"],
    "no_warp": ["ssl.temporal_warp=false"],
    "fixmatch": ["train.method=fixmatch"],
}


DEMO_CONFIG = ROOT / "configs" / "demo.yaml"
BUILT_IN = {
    DEMO_CONFIG: (
        "demo-data",
        "demo data (8 events classes: 24 labeled, 232 unlabeled, 256 val), configs/demo.yaml",
        ["data.batch_size=8"],
    ),
    ROOT / "configs" / "demo_motion.yaml": (
        "motion-data",
        "motion data (8 classes: 24 labeled, 232 unlabeled, 64 val), configs/demo_motion.yaml",
        [],
    ),
}
"""Built-in demo configs: the make target that builds their shards, how results name them, and the
overrides every arm gets first. `make demo` trains configs/demo.yaml on 2 processes of 4 labeled clips;
one process of 8 gives each arm here the same batch per step."""


class ArmFailed(RuntimeError):
    """One arm's training exited non-zero; the message carries its last log line."""


def ensure_shards(config: Path, sets: list[str]) -> None:
    """Build a built-in demo's shards if they are missing; for any other config, fail early if its shards are.
    `config` is resolved (absolute)."""
    from svformer.config import load_config

    cfg = load_config(str(config), sets)
    missing = [
        p for p in (cfg.data.labeled, cfg.data.unlabeled, cfg.data.val) if not (ROOT / p / "manifest.json").exists()
    ]  # training runs from ROOT
    if missing and config in BUILT_IN:
        subprocess.run(["make", BUILT_IN[config][0]], cwd=ROOT, check=True)
    elif missing:
        sys.exit(f"error: no shards at {', '.join(missing)} (run `python cli.py prep` first)")


def run_arm(name: str, seed: int, overrides: list[str], args: argparse.Namespace) -> dict:
    """Train one arm (one process, one thread) and score it with multi-view testing; returns its metrics."""
    out = args.work / f"{name}-seed{seed}"
    shutil.rmtree(out, ignore_errors=True)
    args.work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    sets = [*args.set, f"train.output_dir={out}", f"train.seed={seed}", "train.val_every=0", *overrides]
    if args.steps:
        sets.append(f"train.max_steps={args.steps}")
    cmd = [sys.executable, "cli.py", "train", "--config", str(args.config)] + [a for s in sets for a in ("--set", s)]
    start = time.perf_counter()
    log = out.parent / f"{out.name}.log"
    with log.open("w") as err:
        done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
    if done.returncode != 0:
        last = (log.read_text().strip().splitlines() or ["(no output)"])[-1]
        raise ArmFailed(f"arm {name} seed {seed} failed to train: {last} (log: {log})")
    train_s = time.perf_counter() - start
    subprocess.run(
        [
            sys.executable,
            "cli.py",
            "eval",
            "--ckpt",
            str(out),
            "--views",
            args.views,
            "--model",
            "both",
            "--out",
            str(out / "eval"),
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
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
                entry[key] = {
                    "mean": statistics.fmean(values),
                    "std": statistics.pstdev(values),
                    "min": min(values),
                    "max": max(values),
                    "values": values,
                }
        table[arm] = entry
    return table


def paired_gain(rows: list[dict]) -> dict | None:
    """SVFormer minus supervised top-1 seed by seed (same seed: same init and labeled-data order)."""
    sup = {r["seed"]: r["student_top1"] for r in rows if r["arm"] == "supervised"}
    ssl = {r["seed"]: r["best_top1"] for r in rows if r["arm"] == "svformer"}
    diffs = [ssl[seed] - sup[seed] for seed in sorted(sup.keys() & ssl.keys())]
    if not diffs:
        return None
    return {
        "per_seed": diffs,
        "mean": statistics.fmean(diffs),
        "std": statistics.pstdev(diffs),
        "seeds_better": sum(d > 0 for d in diffs),
    }


def markdown(result: dict) -> str:
    """ssl.md: the per-arm table, then the gain against the seed spreads and the seed-by-seed gain."""
    table, paired = result["table"], result["paired_gain"]
    lines = [
        "| arm | runs | student top-1 (mean ± std) | teacher top-1 (mean ± std) | scored top-1 per seed |",
        "|---|---|---|---|---|",
    ]
    for arm, entry in table.items():
        cells = []
        for key in ("student_top1", "teacher_top1"):
            cells.append(f"{100 * entry[key]['mean']:.1f} ± {100 * entry[key]['std']:.1f}" if key in entry else "–")
        per_seed = ", ".join(f"{100 * v:.1f}" for v in entry["best_top1"]["values"])
        lines.append(f"| {arm} | {entry['runs']} | {cells[0]} | {cells[1]} | {per_seed} |")
    lines += [
        "",
        "Scored: the teacher where there is one (the paper tests the EMA teacher), else the student. "
        "± is the population std over seeds.",
    ]
    ratio = result["margin_over_spread"]
    lines += [
        "",
        f"SVFormer minus supervised, means: {100 * result['ratios']['svformer_minus_supervised_top1']:+.1f} "
        f"points; seed spreads {100 * table['supervised']['best_top1']['std']:.1f} and "
        f"{100 * table['svformer']['best_top1']['std']:.1f}"
        + (f" (gain / summed spreads = {ratio:.2f})" if ratio is not None else ""),
    ]
    if paired:
        lines += [
            "",
            f"SVFormer minus supervised, seed by seed: {100 * paired['mean']:+.1f} ± {100 * paired['std']:.1f} "
            f"({', '.join(f'{100 * d:+.1f}' for d in paired['per_seed'])}); "
            f"better on {paired['seeds_better']} of {len(paired['per_seed'])} seeds",
        ]
    return "\n".join(lines) + "\n"


def plot(table: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(table)
    means = [100 * table[a]["best_top1"]["mean"] for a in arms]
    stds = [100 * table[a]["best_top1"]["std"] for a in arms]
    fig, ax = plt.subplots(figsize=(1.3 * len(arms) + 2, 4))
    colors = ["#999999" if a == "supervised" else "#1f77b4" if a == "svformer" else "#9ecae1" for a in arms]
    ax.bar(arms, means, yerr=stds, color=colors, capsize=4)
    for i, arm in enumerate(arms):  # every run as a dot: ablations have one seed, the main arms several
        values = [100 * v for v in table[arm]["best_top1"]["values"]]
        ax.scatter([i] * len(values), values, color="black", s=12, zorder=3)
    ax.set_ylabel("top-1 % (teacher where there is one)")
    ax.set_title(textwrap.fill(title, 80), fontsize=8)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _margin_over_spread(sup: dict, ssl: dict) -> float | None:
    """Mean gain over the sum of both arms' seed spreads (population std); None with no spread (one seed)."""
    spread = ssl["std"] + sup["std"]
    return (ssl["mean"] - sup["mean"]) / spread if spread > 0 else None


def _setting(args: argparse.Namespace) -> str:
    """One line naming the config, overrides and step budget the arms shared."""
    name = BUILT_IN[args.config][1] if args.config in BUILT_IN else str(args.config)
    extras = [*args.set] + ([f"{args.steps} steps"] if args.steps else []) + [f"{args.views} views"]
    return ", ".join([name, *extras])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the two main arms")
    parser.add_argument("--ablation-seeds", type=int, nargs="+", default=[0], help="seeds of each ablation")
    parser.add_argument("--no-ablations", action="store_true", help="run only supervised-only and SVFormer")
    parser.add_argument("--steps", type=int, default=None, help="override train.max_steps (default: the config's)")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (one thread each)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_ssl", help="run directories")
    parser.add_argument(
        "--config", type=Path, default=DEMO_CONFIG, help="training config every arm starts from (default: the demo's)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for every arm, repeatable (e.g. model.imagenet_init=vit.pth)",
    )
    parser.add_argument("--views", default="5x3", help="test views, clips x crops")
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS_DIR,
        help="where ssl.json, ssl.md and the plots go (default: bench/results)",
    )
    args = parser.parse_args()
    args.config, args.work = args.config.resolve(), args.work.resolve()
    if args.config in BUILT_IN:
        args.set = [*BUILT_IN[args.config][2], *args.set]  # the user's --set come later and win

    ensure_shards(args.config, args.set)
    jobs = [(arm, seed, sets) for seed in args.seeds for arm, sets in ARMS.items()]
    if not args.no_ablations:
        jobs += [(name, seed, sets) for seed in args.ablation_seeds for name, sets in ABLATIONS.items()]
    # Longest first: the supervised-only arms (no unlabeled forward) go last, to fill the final gap.
    jobs.sort(key=lambda job: job[0] == "supervised")
    start = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda job: run_arm(job[0], job[1], job[2], args), jobs))
    order = [*ARMS, *ABLATIONS]
    rows.sort(key=lambda row: order.index(row["arm"]))  # tables list the arms in the usual order
    table = summarize(rows)
    sup, ssl = table["supervised"]["best_top1"], table["svformer"]["best_top1"]  # supervised: best = student
    result = {
        "name": "ssl_vs_supervised",
        "setting": _setting(args),
        "ratios": {"svformer_minus_supervised_top1": ssl["mean"] - sup["mean"]},
        "margin_over_spread": _margin_over_spread(sup, ssl),
        "paired_gain": paired_gain(rows),
        "table": table,
        "runs": rows,
        "wall_s": round(time.perf_counter() - start, 1),
        "machine": machine_info(),
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "ssl.md").write_text(markdown(result))
    plot(
        table,
        args.results / "ssl_bars.png",
        "SVFormer vs supervised-only and ablations (bars: mean ± std over seeds; dots: runs): " + result["setting"],
    )
    curves = args.work / f"svformer-seed{args.seeds[0]}" / "eval" / "curves.png"
    if curves.exists():
        shutil.copy(curves, args.results / "ssl_curves.png")
    save_result("ssl", result, args.results)


if __name__ == "__main__":
    try:
        main()
    except (ArmFailed, UserError) as err:
        sys.exit(f"error: {err}")
