"""Does masked-video pretraining help the TimeSformer on the motion kind? Fine-tuned top-1 and a linear
probe against the pretraining data and its length, 3 seeds; then SVFormer and supervised-only from the
best init against the same arms from scratch.

Data (built when missing): the motion kind (make motion-data: 24 labeled = 10%, 232 unlabeled, 64 val)
and a synthetic pretraining set that is not the motion kind (`synth --kind pretrain`, --synthetic-videos).
Pretraining data arms: `in_domain` (motion unlabeled + labeled, labels unused), `synthetic`, `both`
(half the steps each). One pretraining run per data arm and seed (configs/pretrain_demo_motion.yaml)
to the longest --lengths; shorter lengths are its intermediate checkpoints (one cosine schedule, so a
checkpoint at step N is N steps into the longest run, not a run of N steps). Length 0 = from scratch.
Each init is scored by
  finetune  supervised-only training on the 10% labels (configs/demo_motion.yaml, train.method=supervised),
            5x3-view top-1 on the val shards
  probe     a linear classifier (L2 logistic regression) on frozen features (the mean of the encoder's
            normed patch tokens, averaged over 5 clips) of all 256 training videos with their labels,
            top-1 on the val shards
Then, from the init with the best mean fine-tuned top-1: supervised-only and SVFormer (the demo_motion
recipe) vs the same two arms from scratch, seed by seed.

    python bench/pretrain.py                   # the full bench (estimated ~1 h on 2 cores, not yet measured;
                                               #   not part of make bench)
    python bench/pretrain.py --quick           # a smoke run on a tiny copy of the data (minutes)

Prints one JSON object (last line) and writes pretrain.json, pretrain.md and pretrain.png to --results.
"""

from __future__ import annotations

import argparse
import json
import math
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

import ssl_vs_supervised as ssl_bench  # noqa: E402
from _common import RESULTS_DIR, machine_info, save_result  # noqa: E402

PRETRAIN_CONFIG = ROOT / "configs" / "pretrain_demo_motion.yaml"
FINETUNE_CONFIG = ROOT / "configs" / "demo_motion.yaml"
DATA_ARMS = {
    "in_domain": ["pretrain.synthetic=", "pretrain.synthetic_weight=0"],
    "synthetic": ["pretrain.synthetic_weight=1"],
    "both": ["pretrain.synthetic_weight=0.5"],
}


def _run(cmd: list[str], log: Path) -> float:
    """Run a cli.py command (one thread), its stderr into `log`; returns wall seconds."""
    start = time.perf_counter()
    with log.open("w") as err:
        done = subprocess.run(
            [sys.executable, "cli.py", *cmd],
            cwd=ROOT,
            env=dict(os.environ, OMP_NUM_THREADS="1"),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    if done.returncode != 0:
        last = (log.read_text().strip().splitlines() or ["(no output)"])[-1]
        raise ssl_bench.ArmFailed(f"{' '.join(cmd[:1])} failed: {last} (log: {log})")
    return time.perf_counter() - start


def _sets(pairs: list[str]) -> list[str]:
    return [a for s in pairs for a in ("--set", s)]


def build_data(args: argparse.Namespace) -> None:
    """The motion shards and the synthetic pretraining shards (quick: small copies under --work)."""

    def prep(listing: Path, root: Path, out: Path, classes: bool) -> None:
        extra = ["--num-classes", "8", "--classes", str(root / "classes.txt")] if classes else []
        _run(
            [
                "prep",
                "--list",
                str(listing),
                "--data-root",
                str(root),
                "--short-side",
                "64",
                "--fps",
                "15",
                "--workers",
                "2",
                "--out",
                str(out),
                *extra,
            ],
            args.work / f"prep-{out.name}.log",
        )

    if not (args.motion / "val" / "manifest.json").exists():
        if not args.quick:
            subprocess.run(["make", "motion-data"], cwd=ROOT, check=True)
        else:
            raw = args.work / "data" / "motion"
            _run(
                ["synth", "--kind", "motion", "--out", str(raw), "--videos-per-class", "6", "--workers", "2"],
                args.work / "synth-motion.log",
            )
            _run(
                [
                    "split",
                    "--list",
                    str(raw / "all.txt"),
                    "--labeled",
                    "0.25",
                    "--val",
                    "0.25",
                    "--out",
                    str(raw / "lists"),
                ],
                args.work / "split.log",
            )
            for part in ("labeled", "unlabeled", "val"):
                prep(raw / "lists" / f"{part}.txt", raw, args.motion / part, classes=True)
    if not (args.synthetic / "manifest.json").exists():
        raw = args.work / "data" / "pretrain_synth"
        _run(
            [
                "synth",
                "--kind",
                "pretrain",
                "--out",
                str(raw),
                "--videos",
                str(args.synthetic_videos),
                "--workers",
                "2",
            ],
            args.work / "synth-pretrain.log",
        )
        prep(raw / "all.txt", raw, args.synthetic, classes=False)


def data_sets(args: argparse.Namespace) -> list[str]:
    m = args.motion
    return [f"data.labeled={m / 'labeled'}", f"data.unlabeled={m / 'unlabeled'}", f"data.val={m / 'val'}"]


def pretrain(data: str, seed: int, args: argparse.Namespace) -> dict:
    """One pretraining run to the longest length, a checkpoint at every length; returns {length: ckpt}."""
    out = args.work / f"pre-{data}-seed{seed}"
    shutil.rmtree(out, ignore_errors=True)
    lengths = [n for n in args.lengths if n > 0]
    every = math.gcd(*lengths)
    sets = [
        *data_sets(args),
        f"pretrain.synthetic={args.synthetic}",
        *DATA_ARMS[data],
        *args.pretrain_set,
        f"train.output_dir={out}",
        f"train.seed={seed}",
        f"train.max_steps={max(lengths)}",
        f"train.checkpoint_every={every}",
        f"train.keep_checkpoints={max(lengths) // every + 1}",
    ]
    wall = _run(["pretrain", "--config", str(PRETRAIN_CONFIG), *_sets(sets)], args.work / f"{out.name}.log")
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    print(
        json.dumps(
            {"pretrain": data, "seed": seed, "wall_s": round(wall, 1), "loss_first": losses[0], "loss_last": losses[-1]}
        ),
        file=sys.stderr,
        flush=True,
    )
    return {
        "wall_s": wall,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "ckpts": {n: out / "checkpoints" / f"step-{n:06d}" for n in lengths},
    }


def linear_probe(init: Path | None, seed: int, args: argparse.Namespace) -> float:
    """Val top-1 of an L2 logistic regression on frozen, standardised encoder features (see the docstring)."""
    import torch

    from svformer.config import load_config
    from svformer.data import eval_loader
    from svformer.methods import Supervised
    from svformer.views import normalize

    cfg = load_config(str(FINETUNE_CONFIG), data_sets(args) + ["data.workers=0"])
    torch.manual_seed(seed)
    model = Supervised.build_model(
        cfg if init is None else load_config(str(FINETUNE_CONFIG), data_sets(args) + [f"model.pretrain_init={init}"])
    )
    model.eval()
    n = model.grid_size[0] * model.grid_size[1]

    @torch.no_grad()
    def features(specs: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for batch in eval_loader(specs, cfg, views=(5, 1), batch_size=16, workers=0):
            video = batch["video"].flatten(0, 1)  # (B*5, C, T, S, S)
            x = normalize(video, cfg.data.mean, cfg.data.std)
            tokens = model.forward_visible(x, torch.arange(n).expand(len(x), n)).mean(dim=1)  # (B*5, D)
            xs.append(tokens.view(len(batch["label"]), 5, -1).mean(dim=1))
            ys.append(batch["label"])
        return torch.cat(xs), torch.cat(ys)

    from svformer.data import shard_urls

    x_train, y_train = features(shard_urls(cfg.data.labeled) + shard_urls(cfg.data.unlabeled))
    x_val, y_val = features(shard_urls(cfg.data.val))
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_val = (x_train - mean) / std, (x_val - mean) / std
    head = torch.nn.Linear(x_train.shape[1], cfg.model.num_classes)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x_train), y_train) + 1e-3 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return float((head(x_val).argmax(-1) == y_val).float().mean())


def finetune(init_name: str, init: Path | None, seed: int, arm: str, args: argparse.Namespace) -> dict:
    """supervised or svformer training from `init` (None: scratch), scored 5x3 by ssl_vs_supervised.run_arm."""
    ns = argparse.Namespace(
        set=[*data_sets(args), *args.finetune_set],
        work=args.work,
        steps=args.finetune_steps,
        config=FINETUNE_CONFIG,
        views=args.views,
    )
    overrides = (["train.method=supervised"] if arm == "supervised" else []) + (
        [f"model.pretrain_init={init}"] if init is not None else []
    )
    row = ssl_bench.run_arm(f"{arm}-{init_name}", seed, overrides, ns)
    return {**row, "arm": arm, "init": init_name}


def _stats(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values), "values": values}


def plot(table: dict, final: dict, lengths: list[int], path: Path, setting: str, views: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, metric, title in (
        (axes[0], "finetune_top1", "fine-tuned top-1 (supervised, 10% labels)"),
        (axes[1], "probe_top1", "linear probe top-1 (frozen encoder)"),
    ):
        for i, data in enumerate(DATA_ARMS):
            keys = ["scratch" if n == 0 else f"{data}@{n}" for n in lengths]
            if not all(k in table for k in keys):
                continue
            shift = (i - 1) * 0.012 * max(lengths)  # side by side, so equal scores stay visible
            means = [100 * table[k][metric]["mean"] for k in keys]
            stds = [100 * table[k][metric]["std"] for k in keys]
            ax.errorbar([n + shift for n in lengths], means, yerr=stds, marker="o", capsize=3, label=data)
        ax.axhline(100 / 8, color="grey", ls=":", lw=1, label="chance")
        ax.set_xlabel("pretraining steps")
        ax.set_ylabel("top-1 % (mean ± std over seeds)")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    names = list(final)
    means = [100 * final[k]["mean"] for k in names]
    axes[2].bar(
        names,
        means,
        yerr=[100 * final[k]["std"] for k in names],
        capsize=4,
        color=["#999999", "#1f77b4", "#bbbbbb", "#9ecae1"][: len(names)],
    )
    for i, key in enumerate(names):
        values = [100 * v for v in final[key]["values"]]
        axes[2].scatter([i] * len(values), values, color="k", s=10, zorder=3)
    axes[2].set_title(f"from the best init vs from scratch ({views} views)", fontsize=9)
    axes[2].tick_params(axis="x", rotation=20)
    fig.suptitle(setting, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--lengths",
        type=int,
        nargs="+",
        default=[0, 250, 500, 1000],
        help="pretraining steps (0: from scratch); checkpoints of one run to the longest",
    )
    parser.add_argument("--data", nargs="+", default=list(DATA_ARMS), choices=list(DATA_ARMS))
    parser.add_argument("--synthetic-videos", type=int, default=1000)
    parser.add_argument("--finetune-steps", type=int, default=None, help="default: demo_motion's max_steps")
    parser.add_argument("--views", default="5x3")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--pretrain-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--finetune-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_pretrain")
    parser.add_argument("--motion", type=Path, default=None, help="motion shards (default shards/motion)")
    parser.add_argument("--synthetic", type=Path, default=None, help="synthetic shards (default shards/pretrain_synth)")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny data, 1 seed, a few steps each")
    args = parser.parse_args()
    shards = ROOT / "shards"
    if args.quick:  # everything small and under its own work dir; results stay out of bench/results
        args.seeds, args.lengths, args.synthetic_videos = args.seeds[:1], [0, 10], min(args.synthetic_videos, 16)
        args.finetune_steps, args.views, args.work = 10, "1x1", args.work.with_name(args.work.name + "_quick")
        args.finetune_set = ["train.warmup_steps=5", "data.batch_size=2", "data.unlabeled_ratio=1", *args.finetune_set]
        args.pretrain_set = ["data.batch_size=4", *args.pretrain_set]
        args.results, shards = args.work / "results", args.work / "shards"
    args.work = args.work.resolve()
    args.motion = (args.motion or shards / "motion").resolve()
    args.synthetic = (args.synthetic or shards / "pretrain_synth").resolve()
    return args


def score_inits(args: argparse.Namespace, pool: ThreadPoolExecutor) -> tuple[dict, dict, list[dict]]:
    """Pretrain every data arm and seed, then fine-tune and probe every init. Returns (table, runs, rows)."""
    jobs = [(d, s) for d in args.data for s in args.seeds]
    pre = dict(zip(jobs, pool.map(lambda job: pretrain(*job, args), jobs)))
    inits = [("scratch", None, s) for s in args.seeds]
    inits += [
        (f"{d}@{n}", pre[(d, s)]["ckpts"][n], s) for d in args.data for n in args.lengths if n > 0 for s in args.seeds
    ]
    tuned = list(pool.map(lambda job: finetune(*job, "supervised", args), inits))
    probes = [linear_probe(init, seed, args) for _, init, seed in inits]  # in this process, one at a time
    table: dict = {}
    for (name, ckpt, seed), row, probe in zip(inits, tuned, probes):
        entry = table.setdefault(name, {"seeds": [], "ckpts": [], "finetune": [], "probe": [], "finetune_s": []})
        entry["seeds"].append(seed)
        entry["ckpts"].append(str(ckpt) if ckpt else None)
        entry["finetune"].append(row["student_top1"])
        entry["probe"].append(probe)
        entry["finetune_s"].append(row["train_s"])
    for name, entry in table.items():
        entry["finetune_top1"], entry["probe_top1"] = _stats(entry.pop("finetune")), _stats(entry.pop("probe"))
        if name != "scratch":
            data, length = name.split("@")
            runs = [pre[(data, s)] for s in entry["seeds"]]  # wall time pro rata of the one long run
            entry["pretrain_s"] = [round(r["wall_s"] * int(length) / max(args.lengths), 1) for r in runs]
            entry["pretrain_loss_last_of_run"] = [r["loss_last"] for r in runs]
    return table, pre, tuned


def compare_from_best(
    table: dict, tuned: list[dict], args: argparse.Namespace, pool: ThreadPoolExecutor
) -> tuple[str, dict, dict, list[dict]]:
    """SVFormer and supervised-only from the best init vs from scratch, seed by seed."""
    best = max((k for k in table if k != "scratch"), key=lambda k: table[k]["finetune_top1"]["mean"])
    jobs = [
        (name, table[name]["ckpts"][i], s, "svformer", args)
        for name in ("scratch", best)
        for i, s in enumerate(table[name]["seeds"])
    ]
    ssl_rows = list(pool.map(lambda job: finetune(*job), [(n, Path(c) if c else None, *rest) for n, c, *rest in jobs]))
    sup = {k: {r["seed"]: r["student_top1"] for r in tuned if r["init"] == k} for k in ("scratch", best)}
    ssl = {k: {r["seed"]: r["best_top1"] for r in ssl_rows if r["init"] == k} for k in ("scratch", best)}
    final = {
        f"{arm} {k}": _stats([scores[k][s] for s in args.seeds])
        for k in ("scratch", best)
        for arm, scores in (("supervised", sup), ("svformer", ssl))
    }
    per_seed = {
        s: {
            "supervised_gain": sup[best][s] - sup["scratch"][s],
            "svformer_gain": ssl[best][s] - ssl["scratch"][s],
            "svformer_minus_supervised": ssl[best][s] - sup[best][s],
        }
        for s in args.seeds
    }
    return best, final, per_seed, ssl_rows


def main() -> None:
    args = parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    build_data(args)
    data_s = time.perf_counter() - start
    with ThreadPoolExecutor(args.jobs) as pool:
        table, _, tuned = score_inits(args, pool)
        best, final, per_seed, ssl_rows = compare_from_best(table, tuned, args, pool)
    gains = per_seed.values()
    goals = {
        "both_arms_20_points_above_scratch": all(
            g["supervised_gain"] >= 0.2 and g["svformer_gain"] >= 0.2 for g in gains
        ),
        "svformer_5_points_above_supervised": all(g["svformer_minus_supervised"] >= 0.05 for g in gains),
    }
    setting = (
        f"motion kind (10% labels), {args.synthetic_videos} synthetic videos, lengths {args.lengths}, "
        f"seeds {args.seeds}, {args.views} views" + (" [QUICK SMOKE RUN]" if args.quick else "")
    )
    result = {
        "name": "pretrain",
        "setting": setting,
        "best_init": best,
        "table": table,
        "final": final,
        "per_seed": per_seed,
        "goals": goals,
        "svformer_runs": ssl_rows,
        "ratios": {
            "best_init_minus_scratch_supervised_top1": final[f"supervised {best}"]["mean"]
            - final["supervised scratch"]["mean"]
        },
        "data_s": round(data_s, 1),
        "wall_s": round(time.perf_counter() - start, 1),
        "machine": machine_info(),
    }
    args.results.mkdir(parents=True, exist_ok=True)
    plot(table, final, args.lengths, args.results / "pretrain.png", setting, args.views)
    (args.results / "pretrain.md").write_text(markdown(result))
    save_result("pretrain", result, args.results)


def markdown(result: dict) -> str:
    """pretrain.md: every init's fine-tuned and probe top-1, then the from-best-init comparison."""
    lines = [
        f"Setting: {result['setting']}",
        "",
        "| init | fine-tuned top-1 | linear probe top-1 | fine-tuned per seed | pretrain s | fine-tune s |",
        "|---|---|---|---|---|---|",
    ]
    for name, e in result["table"].items():
        ft, pr = e["finetune_top1"], e["probe_top1"]
        pre = statistics.fmean(e["pretrain_s"]) if "pretrain_s" in e else 0.0
        lines.append(
            f"| {name} | {100 * ft['mean']:.1f} ± {100 * ft['std']:.1f} | {100 * pr['mean']:.1f} ± "
            f"{100 * pr['std']:.1f} | {', '.join(f'{100 * v:.1f}' for v in ft['values'])} | {pre:.0f} | "
            f"{statistics.fmean(e['finetune_s']):.0f} |"
        )
    lines += ["", f"Best init: {result['best_init']}", "", "| arm | top-1 | per seed |", "|---|---|---|"]
    for name, e in result["final"].items():
        lines.append(
            f"| {name} | {100 * e['mean']:.1f} ± {100 * e['std']:.1f} | "
            f"{', '.join(f'{100 * v:.1f}' for v in e['values'])} |"
        )
    lines += ["", "Goals (seed by seed): " + ", ".join(f"{k}: {v}" for k, v in result["goals"].items())]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    try:
        main()
    except ssl_bench.ArmFailed as err:
        sys.exit(f"error: {err}")
