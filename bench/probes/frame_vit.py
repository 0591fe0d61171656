"""A stand-in for ImageNet weights: a timm 2-D ViT trained on single synthetic frames.

Each frame comes from prep.synth (any class; a single frame carries no class by construction) and
the ViT regresses the object's pose: position on the torus (cos/sin), orientation modulo the
shape's symmetry (cos/sin of k*angle), log size and the centre in the crop. No action labels are
used. The saved state dict loads with `svformer.load_imagenet_vit` (or `model.imagenet_init`).
Not `make bench` output; see bench/probes/README.md. About 50 s for the defaults.

    python bench/probes/frame_vit.py --out vit2d.pth
"""

from __future__ import annotations

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
from svformer.views import apply_crop, normalize, sample_crop  # noqa: E402

# Rotational symmetry order of each synth shape: the angle is only defined modulo 2 pi / k.
SYMMETRY = {"square": 4, "cross": 4, "triangle": 3, "bar": 2, "ell": 1, "tee": 1}
MEAN, STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)


def frame(index: int, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One synthetic frame, resized so its short side is side+4 and randomly cropped to side.

    Returns (uint8 (3, 1, side, side), pose targets (9,)).
    """
    rng = np.random.default_rng([7, index])
    params = dataclasses.replace(synth.sample_params(rng, int(rng.integers(len(synth.MOTION_CLASSES)))), num_frames=1)
    image = torch.from_numpy(synth.render_video(params)).permute(3, 0, 1, 2)  # (3, 1, H, W)
    g = torch.Generator().manual_seed(index)
    box = sample_crop(params.height, params.width, side, (side + 4, side + 4), False, g)
    x = apply_crop(image, box, side)
    k = SYMMETRY[params.shape]
    turn_x, turn_y = 2 * math.pi * params.x0 / params.width, 2 * math.pi * params.y0 / params.height
    log_size = math.log(params.smin * synth.SIZE_RATIO**params.u0 / box.side)  # half-extent in crop units
    target = [
        math.cos(turn_x),
        math.sin(turn_x),
        math.cos(turn_y),
        math.sin(turn_y),
        math.cos(k * params.angle0),
        math.sin(k * params.angle0),
        log_size + 1.5,
        (params.x0 - box.left) / box.side - 0.5,
        (params.y0 - box.top) / box.side - 0.5,
    ]
    return x, torch.tensor(target, dtype=torch.float32)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=4096, help="synthetic frames rendered (256 held out)")
    p.add_argument("--steps", type=int, default=1500, help="AdamW steps")
    p.add_argument("--bs", type=int, default=64, help="frames per step")
    p.add_argument("--side", type=int, default=32, help="frame side; must match the video model's img_size")
    p.add_argument("--out", type=Path, default=Path("vit2d.pth"), help="where the timm state dict is saved")
    args = p.parse_args(argv)
    if args.frames <= 256 or args.steps < 5 or args.bs < 1 or args.side % 8:
        p.error("need --frames > 256, --steps >= 5, --bs >= 1 and --side a multiple of 8 (the patch size)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    start = time.time()
    data = [frame(i, args.side) for i in range(args.frames)]
    x_all = normalize(torch.stack([d[0] for d in data]), MEAN, STD)[:, :, 0]  # (N, 3, side, side)
    y_all = torch.stack([d[1] for d in data])
    print(f"rendered {len(data)} frames in {time.time() - start:.1f}s", flush=True)
    n_val = 256
    vit = timm.models.vision_transformer.VisionTransformer(
        img_size=args.side, patch_size=8, embed_dim=64, depth=4, num_heads=4, num_classes=y_all.shape[1]
    )
    opt = torch.optim.AdamW(vit.parameters(), lr=1e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * s / args.steps))
    )
    start = time.time()
    for step in range(args.steps):
        idx = torch.randint(n_val, len(x_all), (args.bs,))
        loss = F.mse_loss(vit(x_all[idx]), y_all[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % (args.steps // 5) == 0:
            vit.eval()
            with torch.no_grad():
                err = ((vit(x_all[:n_val]) - y_all[:n_val]) ** 2).mean(0)
            vit.train()
            print(
                f"step {step + 1} loss {loss.item():.3f} held-out mse per target "
                f"{[round(v, 3) for v in err.tolist()]} ({time.time() - start:.0f}s)",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    torch.save(vit.state_dict(), tmp)
    tmp.replace(args.out)  # never a half-written weights file under the final name
    print(f"saved {args.out} (load with --set model.imagenet_init={args.out})")


if __name__ == "__main__":
    main()
