"""Learnability probe: can the demo's tiny TimeSformer learn the synthetic classes at all?

Renders demo-like videos in memory (prep.synth, no ffmpeg), keeps <= 15 fps, resizes the short side
to side+4, and trains the model supervised on random 8-frame clips and crops; prints single-view
top-1 on fresh validation videos. Not a benchmark and not `make bench` output: a fast (about 1 min)
way to test a model/data change before running the real trainer. See bench/probes/README.md.

    python bench/probes/learnability.py --train 256 --steps 600              # from scratch
    python bench/probes/learnability.py --model c3d                           # a small 3-D CNN
    python bench/probes/learnability.py --init vit2d.pth --classes pairs      # 2-D init, 4 classes
"""
import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from prep import synth  # noqa: E402
from svformer.checkpoints import load_imagenet_vit  # noqa: E402
from svformer.model import build_model  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--train", type=int, default=256)
p.add_argument("--val", type=int, default=128)
p.add_argument("--steps", type=int, default=600)
p.add_argument("--bs", type=int, default=16)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--wd", type=float, default=0.05)
p.add_argument("--patch", type=int, default=8)
p.add_argument("--dim", type=int, default=64)
p.add_argument("--depth", type=int, default=4)
p.add_argument("--side", type=int, default=32)
p.add_argument("--T", type=int, default=8)
p.add_argument("--stride", type=int, default=2)
p.add_argument("--model", default="vit")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--init", default="", help="timm 2-D ViT weights (e.g. from frame_vit.py)")
p.add_argument("--classes", default="", help="pairs: merge each time-reversed pair (4 classes)")
p.add_argument("--tinit", type=float, default=0.0, help="std of a random time_embed init (0: zeros)")
p.add_argument("--fcinit", type=float, default=0.0, help="std of a random temporal_fc init (0: zeros)")
args = p.parse_args()
torch.manual_seed(args.seed)
torch.set_num_threads(1)


def video(i, split_seed):
    prm = synth.sample_params(np.random.default_rng([split_seed, i]), i % 8)
    fr = synth.render_video(prm)
    step = max(1, round(prm.fps / 15))
    fr = fr[::step]
    x = torch.from_numpy(fr).permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    s = (args.side + 4) / min(h, w)
    x = F.interpolate(x, size=(round(h * s), round(w * s)), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0, 255).to(torch.uint8), (prm.label // 2 if args.classes == "pairs" else prm.label)


t0 = time.time()
train = [video(i, 0) for i in range(args.train)]
val = [video(i, 1) for i in range(args.val)]
print(f"rendered {len(train)}+{len(val)} in {time.time()-t0:.1f}s", flush=True)
MEAN = torch.tensor([0.45, 0.45, 0.45]).view(1, 3, 1, 1, 1) * 255
STD = torch.tensor([0.225, 0.225, 0.225]).view(1, 3, 1, 1, 1) * 255


def clip(x, train_mode, gen):
    T, S = args.T, args.side
    n = x.shape[0]
    span = (T - 1) * args.stride + 1
    if train_mode:
        start = int(torch.randint(0, max(1, n - span + 1), (1,), generator=gen))
    else:
        start = max(0, (n - span) // 2)
    idx = torch.clamp(torch.arange(T) * args.stride + start, max=n - 1)
    c = x[idx]
    h, w = c.shape[-2:]
    if train_mode:
        i = int(torch.randint(0, h - S + 1, (1,), generator=gen)); j = int(torch.randint(0, w - S + 1, (1,), generator=gen))
    else:
        i, j = (h - S) // 2, (w - S) // 2
    return c[:, :, i:i + S, j:j + S]


def batch(items, train_mode, gen):
    v = torch.stack([clip(x, train_mode, gen) for x, _ in items]).permute(0, 2, 1, 3, 4).float()
    return (v - MEAN) / STD, torch.tensor([y for _, y in items])


class C3D(torch.nn.Module):
    def __init__(self):
        super().__init__()
        L = []
        c = 3
        for o in (32, 64, 96):
            L += [torch.nn.Conv3d(c, o, 3, padding=1), torch.nn.BatchNorm3d(o), torch.nn.ReLU(), torch.nn.MaxPool3d((1, 2, 2))]
            c = o
        self.f = torch.nn.Sequential(*L)
        self.head = torch.nn.Linear(c, 8)

    def forward(self, x):
        return self.head(self.f(x).mean((2, 3, 4)))


if args.model == "vit":
    model = build_model("tiny", 8, num_frames=args.T, img_size=args.side, patch_size=args.patch,
                        embed_dim=args.dim, depth=args.depth, num_heads=4, drop_path_rate=0.0)
else:
    model = C3D()
if args.tinit and args.model == "vit":
    torch.nn.init.trunc_normal_(model.time_embed, std=args.tinit)
if args.fcinit and args.model == "vit":
    for b in model.blocks:
        torch.nn.init.trunc_normal_(b.temporal_fc.weight, std=args.fcinit)
if args.init:
    rep = load_imagenet_vit(model, args.init)
    print({k: len(v) for k, v in rep.items()}, rep["missing"][:6])
opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.wd)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * s / args.steps)))
gen = torch.Generator().manual_seed(args.seed)


def evaluate():
    model.eval()
    correct = 0
    with torch.no_grad():
        for k in range(0, len(val), 32):
            x, y = batch(val[k:k + 32], False, gen)
            correct += (model(x).argmax(1) == y).sum().item()
    model.train()
    return correct / len(val)


t0 = time.time()
losses = []
for s in range(args.steps):
    pick = torch.randint(0, len(train), (args.bs,), generator=gen).tolist()
    x, y = batch([train[k] for k in pick], True, gen)
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(); loss.backward(); opt.step(); sched.step()
    losses.append(loss.item())
    if (s + 1) % max(1, args.steps // 6) == 0:
        print(f"step {s+1} loss {np.mean(losses[-50:]):.3f} val {evaluate():.3f} ({time.time()-t0:.0f}s)", flush=True)
