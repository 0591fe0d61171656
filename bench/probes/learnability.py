"""Learnability probe: can the demo's tiny TimeSformer learn the synthetic classes at all?

Renders demo-like videos in memory (prep.synth, no ffmpeg), keeps <= 15 fps and resizes the short
side to side+4, then trains supervised with the trainer's own pieces (clip sampling, crops,
normalisation, optimizer and LR schedule) and prints single-view top-1 on fresh validation videos.
Not a benchmark and not `make bench` output: a fast (about 1 min) way to test a model or data change
before running the real trainer. See bench/probes/README.md.

    python bench/probes/learnability.py --train 256 --steps 600              # from scratch
    python bench/probes/learnability.py --model c3d                           # a small 3-D CNN
    python bench/probes/learnability.py --init vit2d.pth --classes pairs      # 2-D init, 4 classes
    python bench/probes/learnability.py --task scene                          # whole-frame changes
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import variants  # noqa: E402

from svformer.config import load_config  # noqa: E402
from svformer.data.clips import clip_indices, random_clip_start, uniform_clip_starts  # noqa: E402
from svformer.errors import UserError  # noqa: E402
from svformer.model import build_model  # noqa: E402
from svformer.optim import build_optimizer, lr_factor  # noqa: E402
from svformer.views import normalize, test_views, train_view  # noqa: E402
from svformer.weight_import import load_imagenet_vit  # noqa: E402

MEAN, STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)


class C3D(torch.nn.Module):
    """A small 3-D CNN baseline: three conv-BN-ReLU-pool stages, global average pool, linear head."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        layers, c = [], 3
        for out in (32, 64, 96):
            layers += [
                torch.nn.Conv3d(c, out, 3, padding=1),
                torch.nn.BatchNorm3d(out),
                torch.nn.ReLU(),
                torch.nn.MaxPool3d((1, 2, 2)),
            ]
            c = out
        self.features = torch.nn.Sequential(*layers)
        self.head = torch.nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3, 4)))


def render(index: int, split_seed: int, args: argparse.Namespace) -> tuple[torch.Tensor, int]:
    """One synthetic video as uint8 (C, T, H, W) at <= 15 fps, short side side+4; and its label."""
    if args.pair >= 0:  # only classes 2K and 2K+1: video i becomes video (i // 2) * n + 2K + i % 2 of the task
        index = (index // 2) * variants.NUM_CLASSES[args.task] + 2 * args.pair + index % 2
    frames, fps, label = variants.video(args.task, index, split_seed, args.object_scale)
    label -= 2 * max(args.pair, 0)
    frames = frames[:: max(1, round(fps / 15))]
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()  # (T, C, H, W)
    scale = (args.side + 4) / min(x.shape[-2:])
    x = F.interpolate(
        x,
        size=(round(x.shape[-2] * scale), round(x.shape[-1] * scale)),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )
    label = label // 2 if args.classes == "pairs" else label
    return x.clamp(0, 255).to(torch.uint8).transpose(0, 1).contiguous(), label


def colour_shuffle(clip: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """uint8 (C, T, H, W): a random RGB channel order and, with probability 1/2, inverted colours."""
    clip = clip[torch.randperm(3, generator=g)]
    return 255 - clip if torch.rand(1, generator=g).item() < 0.5 else clip


def make_batch(items, train: bool, args: argparse.Namespace, g: torch.Generator):
    """Normalised float (B, C, T, side, side) clips and labels: random clip/crop, or centre clip/crop."""
    clips = []
    for video, _ in items:
        n = video.shape[1]
        start = (
            random_clip_start(n, args.T, args.stride, g)
            if train
            else int(uniform_clip_starts(n, args.T, args.stride, 1)[0])
        )
        clip = video[:, clip_indices(n, args.T, args.stride, start)]
        if train:
            clip = train_view(clip, args.side, (args.side + 4, args.side + 4), False, g)
            clips.append(colour_shuffle(clip, g) if args.colour_aug else clip)
        else:
            clips.append(test_views(clip, args.side + 4, args.side, 1)[0])
    return normalize(torch.stack(clips), MEAN, STD), torch.tensor([y for _, y in items])


def build(args: argparse.Namespace, num_classes: int) -> torch.nn.Module:
    if args.model == "c3d":
        return C3D(num_classes)
    model = build_model(
        "tiny",
        num_classes,
        num_frames=args.T,
        img_size=args.side,
        patch_size=args.patch,
        embed_dim=args.dim,
        depth=args.depth,
        num_heads=4,
        drop_path_rate=0.0,
    )
    if args.tinit:
        torch.nn.init.trunc_normal_(model.time_embed, std=args.tinit)
    if args.fcinit:
        for block in model.blocks:
            torch.nn.init.trunc_normal_(block.temporal_fc.weight, std=args.fcinit)
    if args.init:
        report = load_imagenet_vit(model, args.init)
        print(f"init from {args.init}: {len(report['loaded'])} loaded, {len(report['missing'])} left at init")
    return model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=int, default=256, help="training videos (all labeled)")
    p.add_argument("--val", type=int, default=128, help="validation videos (fresh seeds)")
    p.add_argument("--steps", type=int, default=600, help="optimizer steps")
    p.add_argument("--bs", type=int, default=16, help="clips per step")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (cosine, 50 warm-up steps)")
    p.add_argument("--wd", type=float, default=0.05, help="AdamW weight decay")
    p.add_argument("--patch", type=int, default=8, help="ViT patch side")
    p.add_argument("--dim", type=int, default=64, help="ViT width")
    p.add_argument("--depth", type=int, default=4, help="ViT blocks")
    p.add_argument("--side", type=int, default=32, help="crop side in pixels")
    p.add_argument("--T", type=int, default=8, help="frames per clip")
    p.add_argument("--stride", type=int, default=2, help="stored frames between clip frames")
    p.add_argument("--model", choices=("vit", "c3d"), default="vit", help="tiny TimeSformer or small 3-D CNN")
    p.add_argument("--seed", type=int, default=0, help="model init and data order")
    p.add_argument("--init", default="", help="timm 2-D ViT weights to start from (e.g. from frame_vit.py)")
    p.add_argument(
        "--task",
        choices=variants.TASKS,
        default="motion",
        help="what the label names (see variants.py); events is the demo's classes",
    )
    p.add_argument(
        "--classes",
        choices=("all", "pairs"),
        default="all",
        help="pairs: merge each time-reversed pair (4 classes that need no time order; motion and scene)",
    )
    p.add_argument(
        "--pair",
        type=int,
        default=-1,
        help="keep only the time-reversed pair K (classes 2K and 2K+1) of an 8- or 4-class task",
    )
    p.add_argument("--object-scale", type=float, default=1.0, help="multiply the object's size")
    p.add_argument(
        "--colour-aug",
        action="store_true",
        help="training clips get a random RGB channel order and, half the time, inverted colours",
    )
    p.add_argument("--tinit", type=float, default=0.0, help="std of a random time_embed init (0: zeros)")
    p.add_argument("--fcinit", type=float, default=0.0, help="std of a random temporal_fc init (0: zeros)")
    args = p.parse_args(argv)
    if min(args.train, args.val, args.steps, args.bs) < 1:
        p.error("--train, --val, --steps and --bs must be >= 1")
    if args.classes == "pairs" and args.task not in ("events", "motion", "scene"):
        p.error("--classes pairs needs --task events, motion or scene (the tasks with time-reversed pairs)")
    if args.pair >= 0 and (
        args.task not in ("events", "motion", "scene")
        or 2 * args.pair + 1 >= variants.NUM_CLASSES[args.task]
        or args.classes == "pairs"
    ):
        p.error(
            "--pair K needs --task events, motion or scene, a K with 2K+1 below its class count, and no --classes pairs"
        )
    if args.object_scale <= 0:
        p.error("--object-scale must be > 0")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    num_classes = 2 if args.pair >= 0 else variants.NUM_CLASSES[args.task] // (2 if args.classes == "pairs" else 1)
    start = time.time()
    train = [render(i, 0, args) for i in range(args.train)]
    val = [render(i, 1, args) for i in range(args.val)]
    print(f"rendered {len(train)}+{len(val)} videos in {time.time() - start:.1f}s", flush=True)

    model = build(args, num_classes)
    cfg = load_config(
        None,
        [
            "optim.name=adamw",
            f"optim.lr={args.lr}",
            f"optim.weight_decay={args.wd}",
            "optim.schedule=cosine",
            "optim.lr_warmup_steps=50",
            f"train.max_steps={args.steps}",
        ],
    )
    opt = build_optimizer(model, cfg.optim, torch.device("cpu"))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(cfg))
    g = torch.Generator().manual_seed(args.seed)

    def top1() -> float:
        model.eval()
        with torch.no_grad():
            correct = sum(
                (model(x).argmax(1) == y).sum().item()
                for x, y in (make_batch(val[k : k + 32], False, args, g) for k in range(0, len(val), 32))
            )
        model.train()
        return correct / len(val)

    start, losses = time.time(), []
    for step in range(args.steps):
        pick = torch.randint(0, len(train), (args.bs,), generator=g).tolist()
        x, y = make_batch([train[k] for k in pick], True, args, g)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % max(1, args.steps // 6) == 0 or step + 1 == args.steps:
            print(
                f"step {step + 1} loss {np.mean(losses[-50:]):.3f} val top-1 {top1():.3f} ({time.time() - start:.0f}s)",
                flush=True,
            )


if __name__ == "__main__":
    try:
        main()
    except UserError as err:
        sys.exit(f"error: {err}")
