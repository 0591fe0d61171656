"""svformer command line: synth, split, prep, inspect, train, pretrain, eval, export, predict, bench.

Each command parses its flags, loads what it needs and calls one library function. Mistakes a user
can fix (a missing file, a bad flag, an unknown config key) print one line and exit 2.

Entry points, all `main`: the installed `svformer` command, `python -m svformer`, `python cli.py` in
a checkout, and under the DeepSpeed launcher `deepspeed --module svformer.cli train ...` (or
`deepspeed cli.py train ...` in a checkout).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from svformer.errors import UserError
from svformer.preemption import EXIT_STOPPED, Stopped
from svformer.resources import resolve_config

# Each command imports the library it runs inside its function: `--help`, `synth` and `split` start
# without loading torch, deepspeed or PyAV (seconds each on a small machine).


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
    """A click group that turns UserError into one line on stderr and exit code 2, Stopped into exit code 75."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as err:
            click.echo(f"error: {err}", err=True)
            ctx.exit(2)
        except Stopped as stopped:  # SIGTERM/SIGINT: outputs left resumable (svformer/preemption.py)
            click.echo(str(stopped), err=True)
            ctx.exit(EXIT_STOPPED)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli() -> None:
    """svformer: semi-supervised video action recognition (SVFormer, CVPR 2023).

    \b
    Typical flow:
      python cli.py synth --out data/demo                 # or bring your own <path> <label> lists
      python cli.py split --list data/demo/all.txt --labeled 0.1 --val 0.2 --out lists/demo
      python cli.py prep  --list lists/demo/labeled.txt --data-root data/demo --out shards/labeled
      deepspeed cli.py train --config configs/demo.yaml
      python cli.py eval  --ckpt runs/demo
    """


# ---------------------------------------------------------------- data: synth, split, prep, inspect
# Owned by the prep module (prep/); each command is a thin wrapper over one prep.* function.


def _data_logging() -> None:
    """INFO logs to stderr for the data commands (no-op when logging is already configured)."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


@cli.command()
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Output directory (videos/, all.txt, classes.txt; pretrain: videos/, all.txt, scenes.jsonl).",
)
@click.option(
    "--kind",
    type=click.Choice(["events", "motion", "pretrain"]),
    default="events",
    show_default=True,
    help="events (the demo's, make demo): 8 classes where every colour of a still frame turns about one "
    "of four RGB axes, one way or the other. motion: 8 object-motion classes (move, rotate, grow), "
    "which a small ViT from scratch does not learn on a CPU budget (configs/demo_motion.yaml). "
    "pretrain: an unlabeled set for `pretrain` (many moving, accelerating, transforming, textured "
    "shapes on varied backgrounds, after Yu et al. 2024); size it with --videos.",
)
@click.option(
    "--videos-per-class",
    default=None,
    type=click.IntRange(min=1),
    help="Videos per class (events, motion) [default: 24].",
)
@click.option(
    "--videos", default=None, type=click.IntRange(min=1), help="Number of videos (pretrain only) [default: 1000]."
)
@click.option(
    "--stages",
    default=None,
    help="pretrain only: comma-separated stages of the progression to draw from, 0-4 (moving circles, "
    "moving shapes, transforming, accelerating, textured) [default: all].",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed; same seed, same videos.")
@click.option(
    "--workers", default=None, type=click.IntRange(min=1), help="Parallel renderers/encoders [default: CPU count]."
)
def synth(
    out: str,
    kind: str,
    videos_per_class: int | None,
    videos: int | None,
    stages: str | None,
    seed: int,
    workers: int | None,
) -> None:
    """Write a synthetic dataset: classes only time tells apart, or an unlabeled pretraining set (see --kind).

    Real mp4 files (varied size, fps, duration, colours, shapes, noise), a list `all.txt`
    (`<path> <label>`, paths relative to OUT; label -1 for the pretrain kind) and, for the class kinds,
    `classes.txt` (one class name per line). Prep the list as usual (`prep --list OUT/all.txt`).
    """
    _data_logging()
    if kind == "pretrain":
        from prep.synth_pretrain import synthesize_pretrain

        if videos_per_class is not None:
            raise UserError("--kind pretrain has no classes: give its size with --videos N")
        try:
            chosen = [int(v) for v in stages.split(",")] if stages else None
            listing = synthesize_pretrain(out, videos=videos or 1000, seed=seed, workers=workers, stages=chosen)
        except ValueError as err:
            raise UserError(f"--stages {stages!r}: {err}") from None
        click.echo(f"wrote {videos or 1000} unlabeled pretraining videos and {listing}")
        return
    from prep.synth import KINDS, synthesize

    if videos is not None or stages is not None:
        raise UserError(f"--videos and --stages are for --kind pretrain; --kind {kind} takes --videos-per-class")
    per_class = videos_per_class or 24
    listing = synthesize(out, videos_per_class=per_class, seed=seed, workers=workers, kind=kind)
    click.echo(f"wrote {per_class * len(KINDS[kind])} {kind} videos ({len(KINDS[kind])} classes) and {listing}")


@cli.command()
@click.option(
    "--list",
    "list_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Labeled list: `<path> <label>` per line.",
)
@click.option(
    "--labeled",
    required=True,
    type=float,
    help="Fraction of each class's training videos that keep labels, in (0, 1]; at least one per class.",
)
@click.option(
    "--val",
    default=0.0,
    show_default=True,
    type=float,
    help="Fraction of each class held out for validation (taken first), in [0, 1).",
)
@click.option(
    "--seed", default=0, show_default=True, type=int, help="Random seed; the split is deterministic for a seed."
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Output directory for labeled.txt, unlabeled.txt, val.txt.",
)
def split(list_path: str, labeled: float, val: float, seed: int, out: str) -> None:
    """Stratified split of a list into labeled / unlabeled (labels kept, monitoring only) / val.

    Paths are written as in the input list, so prep the outputs with `--data-root` set to the input
    list's directory when its paths are relative.
    """
    from prep.split import split_list

    written = split_list(list_path, out, labeled=labeled, val=val, seed=seed)
    counts = {name: path.read_text(encoding="utf-8").count("\n") for name, path in written.items()}
    click.echo(" ".join(f"{name}={count}" for name, count in counts.items()) + f" -> {out}")


@cli.command()
@click.option(
    "--list",
    "list_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="List file: `<path> <label>` per line (label optional for unlabeled data).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Output directory for shards, manifest.json, failures.tsv; or s3://bucket/prefix (uploaded shard by shard).",
)
@click.option(
    "--data-root",
    default=None,
    type=click.Path(file_okay=False),
    help="Base of relative list paths [default: the list file's directory].",
)
@click.option(
    "--num-classes", default=None, type=click.IntRange(min=1), help="Labels must lie in [0, N) (or -1 = unknown)."
)
@click.option(
    "--classes",
    "classes_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Class names, one per line (the first names label 0; synth writes classes.txt); recorded in "
    "the manifest and carried by every checkpoint trained on the shards (predict prints them). "
    "Must hold --num-classes names; alone, it sets --num-classes.",
)
@click.option(
    "--short-side",
    default=256,
    show_default=True,
    type=click.IntRange(min=8),
    help="Resize the short side to this many pixels (never upscales).",
)
@click.option(
    "--fps",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Frame-rate cap; slower sources keep all their frames.",
)
@click.option(
    "--quality",
    default=90,
    show_default=True,
    type=click.IntRange(1, 100),
    help="JPEG quality 1-100 (mapped onto ffmpeg -q:v 31..2).",
)
@click.option(
    "--workers", default=None, type=click.IntRange(min=1), help="Parallel ffmpeg processes [default: CPU count]."
)
@click.option(
    "--shard-size",
    default="1GB",
    show_default=True,
    help="Roll over to a new shard at this size (1GB, 500MB, 64KiB, bytes).",
)
@click.option(
    "--part",
    default=None,
    help="Prep only part i/N (1-based) of the list's valid entries, e.g. 3/8; names shard-pIIofNN-*.tar.",
)
@click.option(
    "--max-failures",
    default=0.01,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Exit non-zero when more than this fraction of entries fail.",
)
def prep(
    list_path: str,
    out: str,
    data_root: str | None,
    num_classes: int | None,
    classes_path: str | None,
    short_side: int,
    fps: float,
    quality: int,
    workers: int | None,
    shard_size: str,
    part: str | None,
    max_failures: float,
) -> None:
    """Decode list-file videos into JPEG-frame tar shards (one ffmpeg process per video).

    Bad videos are skipped and recorded with file, line and reason (failures.tsv, manifest.json).
    A rerun after an interruption keeps the finished shards and produces the same bytes.
    """
    from prep.shards import parse_part, parse_size, prep_list
    from prep.upload import prep_to_storage
    from svformer.lists import read_class_names
    from svformer.storage import is_remote
    from svformer.video.decode import DecodeSettings

    _data_logging()
    class_names = read_class_names(classes_path, num_classes) if classes_path else None
    manifest = (prep_to_storage if is_remote(out) else prep_list)(
        list_path,
        out,
        DecodeSettings(short_side=short_side, fps=fps, quality=quality),
        data_root=data_root,
        num_classes=num_classes,
        shard_size=parse_size(shard_size),
        workers=workers,
        part=parse_part(part) if part else None,
        max_failures=max_failures,
        class_names=class_names,
    )
    click.echo(
        f"{manifest['num_samples']} videos, {manifest['num_frames']} frames in {len(manifest['shards'])} "
        f"shard(s) -> {out}; {len(manifest['failures'])} failed"
    )


@cli.command(name="inspect")
@click.argument("path", type=click.Path())
@click.option("--verify", is_flag=True, help="Decode every JPEG and check frames, sizes and checksums.")
def inspect_cmd(path: str, verify: bool) -> None:
    """Print one JSON line per sample of a prep directory or shard, then a summary line.

    With --verify, also one JSON line per problem; exits non-zero when there is any.
    """
    import json

    from prep.inspect_shards import inspect_path

    problems = 0
    for record in inspect_path(path, verify=verify):
        problems += "problem" in record
        click.echo(json.dumps(record))
    if problems:
        raise UserError(f"{path}: {problems} problem(s) found (see the 'problem' lines above)")


# ---------------------------------------------------------------- training and evaluation

CKPT_OPTION = click.option(
    "--ckpt",
    required=True,
    type=click.Path(),
    help="A run directory (its newest intact checkpoint), a checkpoint directory, or an exported .safetensors.",
)
VIEWS_OPTION = click.option(
    "--views", default="5x3", show_default=True, help="Temporal clips x spatial crops per video (crops: 1 or 3)."
)


def _setup_logging() -> None:
    import logging
    import os

    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s [rank{rank}] %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


@cli.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    required=True,
    help="YAML config file, or the name of a shipped one (demo, svformer_b_k400_1pct, ...).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override a config value, e.g. --set train.max_steps=100 (repeatable).",
)
def train(config_path: str, overrides: tuple[str, ...]) -> None:
    """Train with train.method (svformer, supervised, fixmatch) from prepped shards (resumes from the
    newest checkpoint in the output dir).

    \b
    One process:       python cli.py train --config configs/demo.yaml
    All GPUs of a node: deepspeed cli.py train --config configs/svformer_b_k400_1pct.yaml
    Many nodes:        deepspeed --hostfile hosts cli.py train --config ...
    CPU, 2 processes:  deepspeed --num_gpus 2 cli.py train --config configs/demo.yaml

    Precision, ZeRO stage and clipping come from ds_config.json (train.ds_config); batch sizes from
    the YAML. Writes checkpoints, metrics.jsonl, TensorBoard events and the resolved config into
    train.output_dir (default runs/<config name>). Resumes from the newest intact checkpoint there,
    also with another number of processes. SIGTERM/SIGINT: the current step finishes, a checkpoint
    is saved and the process exits with code 75; rerun the same command to resume.
    """
    from svformer.config import load_config
    from svformer.train import EXIT_STOPPED, TrainingStopped
    from svformer.train import train as run_training

    _setup_logging()
    cfg = load_config(resolve_config(config_path), overrides)
    try:
        run_dir = run_training(cfg)
    except TrainingStopped as stopped:
        click.echo(str(stopped), err=True)
        sys.exit(EXIT_STOPPED)
    click.echo(f"training done: {run_dir}", err=True)


@cli.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    required=True,
    help="YAML config file, or the name of a shipped one (pretrain_demo_motion, pretrain_vit_b, ...).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override a config value, e.g. --set pretrain.mask_ratio=0.75 (repeatable).",
)
def pretrain(config_path: str, overrides: tuple[str, ...]) -> None:
    """Masked-video pretraining (VideoMAE-style) of the TimeSformer encoder on unlabeled clips.

    \b
    One process:       python cli.py pretrain --config configs/pretrain_demo_motion.yaml
    All GPUs of a node: deepspeed cli.py pretrain --config configs/pretrain_vit_b.yaml

    Tube masks hide pretrain.mask_ratio of every frame's patches (the same ones in every frame); the
    encoder sees only the visible tubes and a light decoder reconstructs the hidden patches. Data:
    pretrain.data (default data.unlabeled and data.labeled, labels unused) and/or pretrain.synthetic
    (`synth --kind pretrain`, then `prep`), mixed by pretrain.synthetic_weight. Same run directory,
    checkpoints, resume, logs and exit code 75 on SIGTERM/SIGINT as train, plus recon.png every
    pretrain.recon_every steps. Fine-tune with `train --set model.pretrain_init=RUN_DIR`.
    The same loop as train, with train.method=masked_video.
    """
    from svformer.config import load_config
    from svformer.train import EXIT_STOPPED, TrainingStopped
    from svformer.train import train as run_training

    _setup_logging()
    cfg = load_config(resolve_config(config_path), [*overrides, "train.method=masked_video"])
    try:
        run_dir = run_training(cfg)
    except TrainingStopped as stopped:
        click.echo(str(stopped), err=True)
        sys.exit(EXIT_STOPPED)
    click.echo(f"pretraining done: {run_dir}; fine-tune with --set model.pretrain_init={run_dir}", err=True)


@cli.command(name="eval")
@CKPT_OPTION
@click.option(
    "--shards", default=None, help="Shards to score (directory, brace pattern or URLs); default: the run's data.val."
)
@VIEWS_OPTION
@click.option(
    "--model",
    "which",
    type=click.Choice(["teacher", "student", "both"]),
    default="both",
    show_default=True,
    help="Which weights to score.",
)
@click.option(
    "--out", "out_dir", default=None, type=click.Path(file_okay=False), help="Report directory; default <ckpt>/eval."
)
@click.option("--batch-size", default=None, type=int, help="Videos per batch (each with all its views).")
@click.option(
    "--combine",
    type=click.Choice(["sum", "softmax"]),
    default="sum",
    show_default=True,
    help="Combine views by summing logits (the paper) or averaging softmax.",
)
def evaluate(
    ckpt: str, shards: str | None, views: str, which: str, out_dir: str | None, batch_size: int | None, combine: str
) -> None:
    """Multi-view evaluation: metrics.json, predictions.csv, confusion.png (and curves.png).

    Works with one process or under the deepspeed launcher (every video is scored exactly once).
    """
    import json
    import os

    from svformer.evaluate import default_report_dir
    from svformer.evaluate import evaluate as run_eval

    _setup_logging()
    results = run_eval(
        ckpt, shards=shards, views=views, which=which, out_dir=out_dir, batch_size=batch_size, combine=combine
    )
    if int(os.environ.get("RANK", "0")) == 0:
        out = out_dir or default_report_dir(Path(ckpt))
        for name, m in results.items():
            click.echo(
                f"{name}: top-1 {m['top1']:.1%}  top-5 {m['top5']:.1%}  mean-class {m['mean_class_accuracy']:.1%}  "
                f"({m['videos']} videos, {m['views']} views, step {m['step']})"
            )
        click.echo(f"report: {out}/metrics.json, predictions.csv, confusion.png")
        click.echo(json.dumps({k: {"top1": v["top1"], "top5": v["top5"]} for k, v in results.items()}))


@cli.command()
@click.option("--ckpt", required=True, type=click.Path(exists=True), help="A run directory or a checkpoint directory.")
@click.option(
    "--out", required=True, type=click.Path(), help="Output: a .safetensors file, a directory (hf) or a .onnx file."
)
@click.option(
    "--model",
    "which",
    type=click.Choice(["teacher", "student"]),
    default="teacher",
    show_default=True,
    help="Which weights to export.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["safetensors", "hf", "onnx"]),
    default="safetensors",
    show_default=True,
    help="safetensors: svformer's one file; hf: a transformers TimeSformer directory; onnx: for onnxruntime.",
)
def export(ckpt: str, out: str, which: str, fmt: str) -> None:
    """Export weights + config + class count as one safetensors file (no DeepSpeed needed to load it),
    a Hugging Face transformers TimeSformer directory (--format hf) or an ONNX file (--format onnx)."""
    from svformer.interchange import exporter

    path = exporter(fmt)(ckpt, out, which)
    click.echo(f"exported {which} to {path}")


@cli.command()
@click.argument("videos", nargs=-1, metavar="[VIDEO]...")
@CKPT_OPTION
@click.option(
    "--list",
    "list_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="A list file of videos, `<path> [<label>]` per line (a label is only reported, as list_label).",
)
@click.option(
    "--data-root",
    default=None,
    type=click.Path(file_okay=False),
    help="Base of relative paths [default: the working directory for VIDEO, the list's directory for --list].",
)
@VIEWS_OPTION
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(min=1), help="Classes listed per video.")
@click.option(
    "--model",
    "which",
    type=click.Choice(["teacher", "student"]),
    default="teacher",
    show_default=True,
    help="Which weights to use.",
)
@click.option(
    "--out",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write the rows as JSON lines (.jsonl) or CSV (.csv) [default: a table on stdout].",
)
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(min=1),
    help="Decoding threads, each driving one ffmpeg, overlapping the model [default: CPU count].",
)
@click.option(
    "--batch-size",
    default=None,
    type=click.IntRange(min=1),
    help="Videos per forward pass, each with all its views [default: the run's eval.batch_size].",
)
@click.option(
    "--pseudo-labels",
    default=None,
    type=click.Path(dir_okay=False),
    help="Also write the predictions with confidence >= --threshold as a `<path> <label>` list.",
)
@click.option(
    "--threshold",
    default=0.9,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Confidence a prediction needs to enter --pseudo-labels.",
)
@click.option(
    "--label-next",
    nargs=2,
    default=None,
    type=(click.IntRange(min=1), click.Path(dir_okay=False)),
    metavar="K FILE",
    help="Also write the K least certain videos (smallest top-2 margin), spread over the "
    "predicted classes, as a list to label next (predicted labels, to check), and FILE.html, a "
    "self-contained page of them: frame strips, top-2 guesses, confidences, margin, path.",
)
def predict(
    videos: tuple[str, ...],
    ckpt: str,
    list_path: str | None,
    data_root: str | None,
    views: str,
    top_k: int,
    which: str,
    out: str | None,
    workers: int | None,
    batch_size: int | None,
    pseudo_labels: str | None,
    threshold: float,
    label_next: tuple[int, str] | None,
) -> None:
    """Predict the action in raw video files with a trained model (no prep, no shards).

    \b
    python cli.py predict --ckpt runs/demo clip.mp4 other.mkv
    python cli.py predict --ckpt demo.safetensors --list unlabeled.txt --data-root data/demo \\
        --out predictions.jsonl --pseudo-labels pseudo.txt --threshold 0.9 --label-next 16 next.txt
    python cli.py predict --ckpt runs/demo -- -odd-name.mp4    # `--` before paths starting with '-'
    python cli.py predict --ckpt model.onnx clip.mp4           # on onnxruntime (export --format onnx)

    Each video is decoded with prep's ffmpeg decoding and the prep settings recorded in the
    checkpoint, so it gets the logits `eval` gives its shard; views are combined like eval's.
    One row per input: source, line, list_label, label, name, confidence (softmax of the views'
    mean logits), margin (top-1 minus top-2 probability), topk ([label, name, probability] x K),
    error (null, or the one-line reason prep would record). A bad video becomes a row with its
    error; the exit code is 2 only when every input failed. The two lists are list files that
    `split` and `prep` read, with paths as given (prep them with the same --data-root).
    """
    from svformer.predict import predict_videos
    from svformer.predict.outputs import format_table

    _setup_logging()
    rows, summary = predict_videos(
        ckpt,
        videos,
        list_path=list_path,
        data_root=data_root,
        views=views,
        top_k=top_k,
        model=which,
        out=out,
        workers=workers,
        batch_size=batch_size,
        pseudo_labels=pseudo_labels,
        threshold=threshold,
        label_next=label_next,
    )
    if out is None:
        click.echo(format_table(rows), nl=False)
    done = [
        f"{summary['videos']} video(s): {summary['predicted']} predicted, {summary['failed']} failed"
        + (f" -> {summary['out']}" if "out" in summary else "")
    ]
    if pseudo_labels is not None:
        done.append(f"{summary['pseudo_labels']} pseudo-label(s) at >= {threshold:g} -> {pseudo_labels}")
    if label_next is not None:
        page = summary["label_page"]
        done.append(f"{summary['label_next']} video(s) to label next -> {label_next[1]} (page: {page})")
    click.echo("; ".join(done), err=True)


@cli.command()
@click.argument("names", nargs=-1, type=click.Choice(["prep", "loader", "model", "ssl", "e2e", "all"]))
def bench(names: tuple[str, ...]) -> None:
    """Run benchmarks (default: all) and write bench/results/*.json and summary.md.

    \b
    prep    prep wall time vs bare ffmpeg (prep_over_ffmpeg)
    loader  shard streams vs on-the-fly PyAV decoding and the JPEG-decode bound
    model   fused (SDPA + bf16) vs unfused float32 train step, per variant
    ssl     SVFormer vs supervised-only on the demo data, 3 seeds, plus ablations
    e2e     the whole demo pipeline, stage by stage
    """
    import subprocess

    from svformer.resources import checkout_root

    root = checkout_root()
    if root is None or not (root / "bench" / "run_all.py").is_file():
        raise UserError("bench needs a source checkout (its bench/ scripts are not installed): run it there")
    chosen = [] if not names or "all" in names else list(names)
    result = subprocess.run([sys.executable, str(root / "bench" / "run_all.py"), *chosen])
    sys.exit(result.returncode)


def main(prog_name: str | None = None) -> None:
    """Run the command line on sys.argv (less the DeepSpeed launcher's --local_rank)."""
    cli(args=_strip_launcher_args(sys.argv[1:]), prog_name=prog_name)


if __name__ == "__main__":
    main()
