#!/usr/bin/env python
"""predict on raw videos vs prep + eval of the same videos, side by side in one run.

Both sides start from the same video files and end with the same logits (the views of eval):
- predict: `svformer.predict.predict_videos` end to end (model load, K decoding threads each driving
  one ffmpeg, view cutting, the model, the rows file).
- prep + eval: `prep.shards.prep_list` (K ffmpeg workers, the checkpoint's prep settings) into a temp
  shard directory, then `svformer.evaluate.evaluate` on it (model load, the eval stream, the model,
  metrics.json, predictions.csv, confusion.png).
The sides alternate for `--rounds`; the fastest round of each counts (the machine may be shared).
A warm-up prediction of two videos runs first, untimed, so neither side pays for imports or a cold
page cache.

Model: `--ckpt` (a run, checkpoint or export), or by default configs/demo.yaml's model with random
weights, exported with the demo's prep settings (speed does not depend on the weights).
Data: `--list`/`--data-root` (default the demo val list, data/demo/lists/val.txt, as `make demo-data`
writes it; synthesised into a temp dir when missing), the first `--videos` of it.
Threads: one torch thread per process (OMP_NUM_THREADS=1, as `make bench` runs every benchmark),
unless OMP_NUM_THREADS is set: eval's loader worker processes and the model would otherwise each
start a thread per core and contend for the same cores.
Prints one JSON object as its last line and writes bench/results/predict.json.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # first: the `prep` package, not bench/prep.py
os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported (see the docstring)

from _common import PeakRSS, machine_info, save_result  # noqa: E402

log = logging.getLogger("bench.predict")
DEMO_LIST = ROOT / "data" / "demo" / "lists" / "val.txt"


def demo_export(path: Path, workers: int) -> Path:
    """configs/demo.yaml's model, random weights, exported with the Makefile's demo prep settings."""
    from svformer import build_model
    from svformer.config import load_config, to_dict
    from svformer.run_dir import save_exported

    cfg = load_config(ROOT / "configs" / "demo.yaml", [f"data.workers={workers}"])
    model = build_model(
        cfg.model.variant,
        cfg.model.num_classes,
        num_frames=cfg.data.num_frames,
        img_size=cfg.data.img_size,
        **cfg.model.overrides(),
    )
    config = to_dict(cfg)
    config["_exported_model"], config["_exported_step"] = "teacher", 0
    config["_data"] = {"prep": {"short_side": 64, "fps": 15.0, "quality": 90}, "class_names": None}
    return save_exported(path, model.state_dict(), config, cfg.model.num_classes)


def subset_list(list_path: Path, data_root: Path, videos: int, out: Path) -> tuple[Path, int]:
    """The first `videos` valid entries of a list, written with absolute paths; returns (path, count)."""
    from svformer.lists import read_list

    entries = read_list(list_path, data_root=data_root).entries[:videos]
    out.write_text("".join(f"{os.path.abspath(e.path)} {e.label}\n" for e in entries))
    return out, len(entries)


def warm_up(list_path: Path, ckpt: Path, views: str) -> None:
    """Read every video once (page cache) and predict two (imports, first-call costs); untimed."""
    from svformer.lists import read_list
    from svformer.predict import Predictor

    entries = read_list(list_path).entries
    for entry in entries:
        Path(entry.path).read_bytes()
    Predictor.load(ckpt, views=views).predict([e.path for e in entries[:2]], workers=2)


def run_predict(ckpt: Path, list_path: Path, views: str, workers: int, tmp: Path) -> float:
    from svformer.predict import predict_videos

    start = time.perf_counter()
    predict_videos(ckpt, list_path=list_path, views=views, out=tmp / "rows.jsonl", workers=workers, progress=False)
    return time.perf_counter() - start


def run_prep_eval(ckpt: Path, list_path: Path, views: str, workers: int, tmp: Path) -> tuple[float, float]:
    """Seconds of prep and of eval (a fresh shard directory each time)."""
    from prep.shards import prep_list
    from svformer import Predictor
    from svformer.evaluate import evaluate

    decode = Predictor.load(ckpt, views=views, device="cpu").decode  # the settings predict decodes with
    shards = tmp / "shards"
    shutil.rmtree(shards, ignore_errors=True)
    start = time.perf_counter()
    prep_list(list_path, shards, decode, workers=workers, progress=False)
    prepped = time.perf_counter()
    evaluate(ckpt, shards=str(shards), views=views, which="teacher", out_dir=tmp / "report")
    return prepped - start, time.perf_counter() - prepped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", type=Path, default=None, help="run, checkpoint or export (default: demo model)")
    parser.add_argument("--list", dest="list_path", type=Path, default=None, help=f"default {DEMO_LIST}")
    parser.add_argument("--data-root", type=Path, default=None, help="base of the list's relative paths")
    parser.add_argument("--videos", type=int, default=128, help="use the first N videos of the list")
    parser.add_argument("--views", default="5x3", help="clips x crops, as eval --views")
    parser.add_argument(
        "--workers",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="decoding threads (predict) = ffmpeg workers (prep) = loader workers (eval of the default model)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the fastest of each counts")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp_name:
        tmp = Path(tmp_name)
        list_path, data_root = args.list_path, args.data_root
        if list_path is None and DEMO_LIST.is_file():
            list_path, data_root = DEMO_LIST, DEMO_LIST.parent.parent
        if list_path is None:
            from prep.synth import synthesize

            log.warning("%s not found (make demo-data writes it): synthesising %d demo videos", DEMO_LIST, args.videos)
            list_path = synthesize(
                tmp / "videos", videos_per_class=max(1, args.videos // 8), workers=args.workers, kind="events"
            )
        videos, count = subset_list(list_path, data_root or list_path.parent, args.videos, tmp / "videos.txt")
        ckpt = args.ckpt or demo_export(tmp / "demo.safetensors", args.workers)
        warm_up(videos, ckpt, args.views)

        best = {"predict": float("inf"), "prep": float("inf"), "eval": float("inf"), "prep_plus_eval": float("inf")}
        peaks = {"predict": 0.0, "prep_plus_eval": 0.0}
        for _ in range(args.rounds):
            with PeakRSS() as mem:
                best["predict"] = min(best["predict"], run_predict(ckpt, videos, args.views, args.workers, tmp))
            peaks["predict"] = max(peaks["predict"], mem.peak_mb)
            with PeakRSS() as mem:
                prep_s, eval_s = run_prep_eval(ckpt, videos, args.views, args.workers, tmp)
            peaks["prep_plus_eval"] = max(peaks["prep_plus_eval"], mem.peak_mb)
            if prep_s + eval_s < best["prep_plus_eval"]:
                best.update(prep=prep_s, eval=eval_s, prep_plus_eval=prep_s + eval_s)

    rates = {name: count / seconds for name, seconds in best.items()}
    save_result(
        "predict",
        {
            "bench": "predict",
            "videos": count,
            "views": args.views,
            "workers": args.workers,
            "omp_num_threads": os.environ["OMP_NUM_THREADS"],
            "rounds": args.rounds,
            "checkpoint": str(args.ckpt) if args.ckpt else "configs/demo.yaml model, random weights (exported)",
            "list": str(list_path),
            "seconds": {name: round(s, 3) for name, s in best.items()},
            "videos_per_s": {name: round(r, 2) for name, r in rates.items()},
            "ratios": {"predict_over_prep_plus_eval": round(rates["predict"] / rates["prep_plus_eval"], 3)},
            # this process only: the ffmpeg processes of both sides and eval's loader workers are not counted
            "peak_rss_mb_main_process": {name: round(mb) for name, mb in peaks.items()},
            "machine": machine_info(),
        },
    )


if __name__ == "__main__":
    main()
