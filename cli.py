#!/usr/bin/env python
"""svformer command line: synth, split, prep, inspect, train, eval, export, bench.

Each command parses its flags, loads what it needs and calls one library function. Mistakes a user
can fix (a missing file, a bad flag, an unknown config key) print one line and exit 2.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))

from svformer.errors import UserError  # noqa: E402


def _strip_launcher_args(argv: list[str]) -> list[str]:
    """The deepspeed launcher passes `--local_rank=N` first; LOCAL_RANK is in the environment too."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--local_rank":
            skip = True
        elif not arg.startswith("--local_rank="):
            out.append(arg)
    return out


class Group(click.Group):
    """A click group that turns UserError into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as err:
            click.echo(f"error: {err}", err=True)
            ctx.exit(2)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli() -> None:
    """svformer: semi-supervised video action recognition (SVFormer, CVPR 2023).

    \b
    Typical flow:
      python cli.py synth --out data/demo                 # or bring your own <path> <label> lists
      python cli.py split --list data/demo/all.txt --labeled 0.1 --val 0.2 --out lists/demo
      python cli.py prep  --list lists/demo/labeled.txt --out shards/labeled
      deepspeed cli.py train --config configs/demo.yaml
      python cli.py eval  --ckpt runs/demo
    """


# ---------------------------------------------------------------- data: synth, split, prep, inspect


# ---------------------------------------------------------------- training and evaluation

def _setup_logging() -> None:
    import logging
    import os

    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"%(asctime)s [rank{rank}] %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), required=True,
              help="YAML config (configs/demo.yaml, configs/svformer_b_k400_1pct.yaml, ...).")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override a config value, e.g. --set train.max_steps=100 (repeatable).")
def train(config_path: str, overrides: tuple[str, ...]) -> None:
    """Train SVFormer from prepped shards (resumes from the newest checkpoint in the output dir).

    \b
    One process:       python cli.py train --config configs/demo.yaml
    All GPUs of a node: deepspeed cli.py train --config configs/svformer_b_k400_1pct.yaml
    Many nodes:        deepspeed --hostfile hosts cli.py train --config ...
    CPU, 2 processes:  deepspeed --num_gpus 2 cli.py train --config configs/demo.yaml

    Precision, ZeRO stage and clipping come from ds_config.json (train.ds_config); batch sizes from
    the YAML. Writes checkpoints, metrics.jsonl, TensorBoard events and the resolved config into
    train.output_dir (default runs/<config name>).
    """
    from svformer.config import load_config
    from svformer.train import train as run_training

    _setup_logging()
    cfg = load_config(config_path, overrides)
    run_dir = run_training(cfg)
    click.echo(f"training done: {run_dir}", err=True)


@cli.command(name="eval")
@click.option("--ckpt", required=True, type=click.Path(),
              help="A run directory (its newest checkpoint), a checkpoint directory, or an exported .safetensors.")
@click.option("--shards", default=None, help="Shards to score (directory, brace pattern or URLs); default: the run's data.val.")
@click.option("--views", default="5x3", show_default=True, help="Temporal clips x spatial crops per video (crops: 1 or 3).")
@click.option("--model", "which", type=click.Choice(["teacher", "student", "both"]), default="both", show_default=True,
              help="Which weights to score.")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Report directory; default <ckpt>/eval.")
@click.option("--batch-size", default=None, type=int, help="Videos per batch (each with all its views).")
@click.option("--combine", type=click.Choice(["sum", "softmax"]), default="sum", show_default=True,
              help="Combine views by summing logits (the paper) or averaging softmax.")
def evaluate(ckpt: str, shards: str | None, views: str, which: str, out_dir: str | None,
             batch_size: int | None, combine: str) -> None:
    """Multi-view evaluation: metrics.json, predictions.csv, confusion.png (and curves.png).

    Works with one process or under the deepspeed launcher (every video is scored exactly once).
    """
    import json
    import os

    from svformer.evaluate import _default_out, evaluate as run_eval

    _setup_logging()
    results = run_eval(ckpt, shards=shards, views=views, which=which, out_dir=out_dir,
                       batch_size=batch_size, combine=combine)
    if int(os.environ.get("RANK", "0")) == 0:
        out = out_dir or _default_out(Path(ckpt))
        for name, m in results.items():
            click.echo(f"{name}: top-1 {m['top1']:.1%}  top-5 {m['top5']:.1%}  mean-class {m['mean_class_accuracy']:.1%}  "
                       f"({m['videos']} videos, {m['views']} views, step {m['step']})")
        click.echo(f"report: {out}/metrics.json, predictions.csv, confusion.png")
        click.echo(json.dumps({k: {"top1": v["top1"], "top5": v["top5"]} for k, v in results.items()}))


@cli.command()
@click.option("--ckpt", required=True, type=click.Path(exists=True), help="A run directory or a checkpoint directory.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .safetensors file.")
@click.option("--model", "which", type=click.Choice(["teacher", "student"]), default="teacher", show_default=True,
              help="Which weights to export.")
def export(ckpt: str, out: str, which: str) -> None:
    """Export weights + config + class count as one safetensors file (no DeepSpeed needed to load it)."""
    from svformer.evaluate import export as run_export

    path = run_export(ckpt, out, which)
    click.echo(f"exported {which} to {path}")


if __name__ == "__main__":
    cli(args=_strip_launcher_args(sys.argv[1:]), prog_name="cli.py")
