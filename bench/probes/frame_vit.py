"""A stand-in for ImageNet weights: a timm 2-D ViT trained on single synthetic frames.

Each frame comes from prep.synth (any class; a single frame carries no class by construction) and
the ViT regresses the object's pose: position on the torus (cos/sin), orientation modulo the
shape's symmetry (cos/sin of k*angle), log size and the centre in the crop. No action labels are
used. The saved state dict loads with `svformer.load_imagenet_vit` (or `model.imagenet_init`).
Not `make bench` output; see bench/probes/README.md. About 50 s for the defaults.

    python bench/probes/frame_vit.py --out vit2d.pth
"""
import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from prep import synth  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--frames", type=int, default=4096)
p.add_argument("--steps", type=int, default=1500)
p.add_argument("--bs", type=int, default=64)
p.add_argument("--side", type=int, default=32)
p.add_argument("--out", default="vit2d.pth")
args = p.parse_args()
torch.manual_seed(0); torch.set_num_threads(1)
SYM = {"square": 4, "cross": 4, "triangle": 3, "bar": 2, "ell": 1, "tee": 1}


def frame(i):
    rng = np.random.default_rng([7, i])
    prm = synth.sample_params(rng, int(rng.integers(8)))
    prm = dataclasses.replace(prm, num_frames=1)
    fr = synth.render_video(prm)[0]
    x = torch.from_numpy(fr).permute(2, 0, 1).float()[None]
    h, w = x.shape[-2:]
    s = (args.side + 4) / min(h, w)
    x = F.interpolate(x, size=(round(h * s), round(w * s)), mode="bilinear", antialias=True)[0]
    H, W = x.shape[-2:]
    i0, j0 = [int(v) for v in rng.integers(0, [H - args.side + 1, W - args.side + 1])]
    x = x[:, i0:i0 + args.side, j0:j0 + args.side]
    cx = (prm.x0 * s - j0) / args.side  # centre in crop units (may fall outside [0,1] when wrapped)
    cy = (prm.y0 * s - i0) / args.side
    k = SYM[prm.shape]
    size = math.log(prm.smin * synth.SIZE_RATIO ** prm.u0 * s / args.side)
    tgt = [math.cos(2 * math.pi * prm.x0 / prm.width), math.sin(2 * math.pi * prm.x0 / prm.width),
           math.cos(2 * math.pi * prm.y0 / prm.height), math.sin(2 * math.pi * prm.y0 / prm.height),
           math.cos(k * prm.angle0), math.sin(k * prm.angle0), size + 1.5, cx - 0.5, cy - 0.5]
    return x.clamp(0, 255).to(torch.uint8), torch.tensor(tgt, dtype=torch.float32)


t0 = time.time()
data = [frame(i) for i in range(args.frames)]
X = torch.stack([d[0] for d in data]); Y = torch.stack([d[1] for d in data])
print(f"rendered {len(data)} in {time.time()-t0:.1f}s", flush=True)
X = (X.float() - 0.45 * 255) / (0.225 * 255)
n_val = 256
vit = timm.models.vision_transformer.VisionTransformer(img_size=args.side, patch_size=8, embed_dim=64, depth=4,
                                                       num_heads=4, num_classes=Y.shape[1])
opt = torch.optim.AdamW(vit.parameters(), lr=1e-3, weight_decay=0.05)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * s / args.steps)))
t0 = time.time()
for s in range(args.steps):
    idx = torch.randint(n_val, len(X), (args.bs,))
    loss = F.mse_loss(vit(X[idx]), Y[idx])
    opt.zero_grad(); loss.backward(); opt.step(); sched.step()
    if (s + 1) % (args.steps // 5) == 0:
        with torch.no_grad():
            vit.eval(); err = ((vit(X[:n_val]) - Y[:n_val]) ** 2).mean(0); vit.train()
        print(f"step {s+1} loss {loss.item():.3f} val per-target mse {[round(v, 3) for v in err.tolist()]} ({time.time()-t0:.0f}s)", flush=True)
torch.save(vit.state_dict(), args.out)
