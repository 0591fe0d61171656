"""Multi-view evaluation: every video once, C clips x S crops, views combined per video.

Writes `metrics.json` (top-1/top-5, mean class accuracy, clip- and video-level accuracy, counts),
`predictions.csv` and `confusion.png`, plus `curves.png` when the run has a `metrics.jsonl`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from svformer.config import Config, parse_views
from svformer.data import eval_loader
from svformer.deepspeed_setup import all_sum, init_distributed
from svformer.errors import UserError
from svformer.methods import method_class
from svformer.reports import write_report
from svformer.run_dir import build_trained_model, load_trained, pick_models
from svformer.views import normalize

log = logging.getLogger(__name__)


@torch.no_grad()
def view_logits(
    model: torch.nn.Module, video: torch.Tensor, cfg: Config, device: torch.device, chunk: int = 32
) -> torch.Tensor:
    """Logits of every view: uint8 (B, V, C, T, S, S) -> float32 (B, V, K)."""
    b, v = video.shape[:2]
    flat = video.flatten(0, 1)  # (B*V, C, T, S, S)
    out = [
        model(normalize(flat[i : i + chunk].to(device), cfg.data.mean, cfg.data.std)).float()
        for i in range(0, flat.shape[0], chunk)
    ]
    return torch.cat(out).view(b, v, -1).cpu()


def quick_accuracy(model: torch.nn.Module, cfg: Config, rank: int, world: int, device: torch.device) -> float:
    """Single-view (1 centre clip x 1 crop) top-1 on the first `train.val_max_videos` videos of data.val."""
    was_training = model.training
    model.eval()
    correct = total = 0.0
    for batch in eval_loader(
        cfg.data.val, cfg, views=(1, 1), rank=rank, world_size=world, max_videos=cfg.train.val_max_videos, workers=0
    ):
        pred = view_logits(model, batch["video"], cfg, device)[:, 0].argmax(-1)
        correct += float((pred == batch["label"]).sum())
        total += len(pred)
    model.train(was_training)
    correct, total = all_sum([correct, total], device)
    return correct / total if total else float("nan")


def _gather(items: list) -> list:
    """All ranks' lists, concatenated (rank 0 order), on every rank."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return items
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, items)
    return [x for part in parts for x in part]


def combine_views(logits: torch.Tensor, combine: str) -> torch.Tensor:
    """Per-view logits (N, V, K) -> per-video scores (N, K): sum of logits (the paper) or mean softmax."""
    return logits.sum(1) if combine == "sum" else logits.softmax(-1).mean(1)


def score(logits: torch.Tensor, labels: torch.Tensor, combine: str, num_classes: int) -> dict:
    """Metrics from per-view logits (N, V, K) and labels (N,)."""
    combined = combine_views(logits, combine)
    top5 = combined.topk(min(5, num_classes), dim=-1).indices
    pred = top5[:, 0]
    correct = pred == labels
    per_class = [float(correct[labels == c].float().mean()) for c in range(num_classes) if (labels == c).any()]
    clip_correct = logits.argmax(-1) == labels[:, None]  # (N, V)
    return {
        "top1": float(correct.float().mean()),
        "top5": float((top5 == labels[:, None]).any(-1).float().mean()),
        "mean_class_accuracy": sum(per_class) / len(per_class),
        "clip_accuracy": float(clip_correct.float().mean()),
        "video_accuracy": float(correct.float().mean()),
    }


def evaluate(
    ckpt: str | Path,
    shards: str | None = None,
    views: str = "5x3",
    which: str = "teacher",
    out_dir: str | Path | None = None,
    batch_size: int | None = None,
    combine: str = "sum",
) -> dict:
    """Score the checkpoint at `ckpt` on `shards` (default: the run's data.val) and write the report.

    Runs on one process or under the deepspeed launcher (each rank scores its share of videos).
    Returns {model name: metrics}; files are written by rank 0 into `out_dir` (default <ckpt>/eval).
    """
    rank, world, device = init_distributed()
    weights = load_trained(ckpt)
    cfg = weights.config
    clips, crops = parse_views(views)
    names = pick_models(weights, which)
    spec = shards or cfg.data.val
    out = Path(out_dir) if out_dir else default_report_dir(Path(ckpt))
    results, predictions = {}, {}
    for name in names:
        model = build_trained_model(weights, name, device)
        keys, labels, logits = [], [], []
        stream = eval_loader(
            spec, cfg, views=(clips, crops), rank=rank, world_size=world, batch_size=batch_size or cfg.eval.batch_size
        )
        for batch in tqdm(stream, desc=f"eval {name}", disable=rank != 0, unit="batch"):
            _check_labels(batch["label"], cfg.model.num_classes, spec)
            logits.append(view_logits(model, batch["video"], cfg, device))
            labels.append(batch["label"])
            keys.extend(batch["key"])
        rows = _gather(
            list(zip(keys, torch.cat(labels).tolist() if labels else [], torch.cat(logits).tolist() if logits else []))
        )
        if not rows:
            raise UserError(f"{spec}: no videos to evaluate")
        rows.sort(key=lambda r: r[0])
        all_labels = torch.tensor([r[1] for r in rows])
        all_logits = torch.tensor([r[2] for r in rows])  # (N, V, K)
        metrics = score(all_logits, all_labels, combine, cfg.model.num_classes)
        combined = combine_views(all_logits, combine)
        metrics.update(
            videos=len(rows),
            views=f"{clips}x{crops}",
            combine=combine,
            model=name,
            step=weights.step,
            checkpoint=str(weights.source),
            shards=str(spec),
        )
        results[name] = metrics
        predictions[name] = ([r[0] for r in rows], all_labels, combined)
    if rank == 0:
        write_report(out, results, predictions, cfg, Path(ckpt), method_class(cfg.train.method).log_keys)
    return results


def default_report_dir(ckpt: Path) -> Path:
    """<ckpt>/eval for a directory, <stem>-eval beside an exported file."""
    return ckpt.parent / f"{ckpt.stem}-eval" if ckpt.is_file() else ckpt / "eval"


def _check_labels(labels: torch.Tensor, num_classes: int, spec: str) -> None:
    if labels.numel() and (labels.max() >= num_classes or labels.min() < 0):
        bad = int(labels.max()) if labels.max() >= num_classes else int(labels.min())
        raise UserError(
            f"{spec}: video label {bad} is outside the model's {num_classes} classes; "
            "these shards belong to another dataset (or were prepped without labels)"
        )
