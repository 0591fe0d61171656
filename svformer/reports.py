"""Reports: metrics.json, predictions.csv, confusion.png, curves.png of an evaluation; pretraining's recon.png
(matplotlib, no display)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import torch

from svformer.config import Config
from svformer.data import class_names
from svformer.files import write_atomic

RECON_FRAMES_SHOWN = 8


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix(labels: torch.Tensor, pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) counts, rows = true class, columns = predicted class."""
    flat = labels * num_classes + pred
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def plot_confusion(matrix: torch.Tensor, names: list[str], title: str, path: Path) -> None:
    """Row-normalised confusion matrix; tick labels only where they stay readable (<= 40 classes)."""
    plt = _plt()
    k = matrix.shape[0]
    norm = matrix.float() / matrix.sum(1, keepdim=True).clamp(min=1)
    side = min(4 + 0.12 * k, 16)
    fig, ax = plt.subplots(figsize=(side, side))
    image = ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if k <= 40:
        ax.set_xticks(range(k), names, rotation=90, fontsize=max(5, 10 - k // 8))
        ax.set_yticks(range(k), names, fontsize=max(5, 10 - k // 8))
    if k <= 12:
        for i in range(k):
            for j in range(k):
                if matrix[i, j]:
                    ax.text(
                        j,
                        i,
                        int(matrix[i, j]),
                        ha="center",
                        va="center",
                        color="white" if norm[i, j] > 0.5 else "black",
                        fontsize=8,
                    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(jsonl: Path, path: Path, panels: dict[str, tuple[str, ...]]) -> bool:
    """Training curves from metrics.jsonl: one panel per entry of `panels` (the method's `log_keys`:
    title -> keys), then the validation top-1 of every model the run scored."""
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    train = [r for r in rows if r.get("split") == "train"]
    val = [r for r in rows if r.get("split") == "val"]
    if not train:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(5 * (len(panels) + 1), 4), squeeze=False)
    axes = axes[0]
    for ax, (title, keys) in zip(axes, panels.items()):
        for key in keys:
            points = [(r["step"], r[key]) for r in train if key in r]
            if points:
                ax.plot(*zip(*points), label=key)
        ax.set_title(title)
        ax.set_xlabel("step")
        _legend_or_note(ax)
    for key in dict.fromkeys(k for r in val for k in r if k.endswith("_top1")):
        points = [(r["step"], r[key]) for r in val if key in r]
        axes[-1].plot(*zip(*points), marker="o", label=key)
    axes[-1].set_title("validation top-1 (single view)")
    axes[-1].set_xlabel("step")
    _legend_or_note(axes[-1])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _legend_or_note(ax) -> None:
    """A legend when the panel has curves; else say so (e.g. supervised-only, or train.val_every 0)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "not logged in this run", ha="center", va="center", transform=ax.transAxes)


def write_report(
    out: Path, results: dict, predictions: dict, cfg: Config, ckpt: Path, panels: dict[str, tuple[str, ...]]
) -> None:
    """Write every report file for the scored models into `out`; `panels`: the curves (`plot_curves`)."""
    out.mkdir(parents=True, exist_ok=True)
    names = class_names(cfg)
    write_atomic(out / "metrics.json", json.dumps(results, indent=2) + "\n")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["model", "key", "label", "top5", "scores"])
    for model, (keys, labels, combined) in predictions.items():
        top = combined.topk(min(5, combined.shape[-1]), dim=-1)
        for key, label, idx, val in zip(keys, labels.tolist(), top.indices.tolist(), top.values.tolist()):
            writer.writerow([model, key, label, " ".join(map(str, idx)), " ".join(f"{v:.4f}" for v in val)])
    write_atomic(out / "predictions.csv", buffer.getvalue())
    for i, (model, (_keys, labels, combined)) in enumerate(predictions.items()):
        matrix = confusion_matrix(labels, combined.argmax(-1), cfg.model.num_classes)
        title = f"{model}: top-1 {results[model]['top1']:.1%} ({results[model]['views']} views)"
        plot_confusion(matrix, names, title, out / ("confusion.png" if i == 0 else f"confusion-{model}.png"))
    run_dir = ckpt if ckpt.is_dir() and (ckpt / "metrics.jsonl").exists() else ckpt.parent.parent
    if (run_dir / "metrics.jsonl").exists():
        plot_curves(run_dir / "metrics.jsonl", out / "curves.png", panels)


def plot_reconstruction(
    path: Path, video: torch.Tensor, hidden: torch.Tensor, recon: torch.Tensor, patch_size: int, step: int
) -> None:
    """Rows: the frames, the masked input (hidden patches grey), the reconstruction. Written atomically."""
    plt = _plt()
    frames = video.float() / 255.0  # (C, T, H, W)
    c, t, h, w = frames.shape
    grid_w = w // patch_size
    keep = torch.ones(h // patch_size * grid_w, dtype=torch.bool)
    keep[hidden] = False
    keep = keep.view(-1, grid_w).repeat_interleave(patch_size, 0).repeat_interleave(patch_size, 1)  # (H, W)
    masked = torch.where(keep, frames, torch.full_like(frames, 0.5))
    shown = torch.linspace(0, t - 1, min(t, RECON_FRAMES_SHOWN)).round().long().tolist()
    rows = [("frames", frames), ("input", masked), ("reconstruction", recon)]
    fig, axes = plt.subplots(3, len(shown), figsize=(1.4 * len(shown), 4.6), squeeze=False)
    for r, (title, clip) in enumerate(rows):
        for col, i in enumerate(shown):
            ax = axes[r][col]
            ax.imshow(clip[:, i].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(title, fontsize=8)
            if r == 0:
                ax.set_title(f"frame {i}", fontsize=8)
    total = keep.numel() // patch_size**2
    fig.suptitle(f"step {step}: {len(hidden)} of {total} patches hidden in every frame (grey)", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
