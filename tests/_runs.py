"""Test helper: tiny training configs over test shards, and running cli.py in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def tiny_config(shards: Path, out: Path, path: Path, **sections) -> Path:
    """Write a YAML config for a 2-block, 32-wide TimeSformer on 32x32 clips of 4 frames."""
    cfg = {
        "data": {
            "labeled": str(shards / "labeled"),
            "unlabeled": str(shards / "unlabeled"),
            "val": str(shards / "val"),
            "num_frames": 4,
            "sampling_rate": 2,
            "img_size": 32,
            "short_side_range": [32, 40],
            "test_short_side": 32,
            "batch_size": 2,
            "unlabeled_ratio": 2,
            "workers": 0,
            "shuffle_buffer": 8,
        },
        "model": {
            "variant": "tiny",
            "num_classes": 8,
            "patch_size": 8,
            "embed_dim": 32,
            "depth": 2,
            "num_heads": 2,
            "drop_path": 0.0,
        },
        "optim": {"name": "adamw", "lr": 0.001, "schedule": "cosine"},
        "train": {
            "output_dir": str(out),
            "max_steps": 6,
            "warmup_steps": 2,
            "checkpoint_every": 3,
            "val_every": 3,
            "val_max_videos": 8,
            "log_every": 1,
            "precision": "fp32",
            "keep_checkpoints": 5,
        },
        "eval": {"views": "2x3", "batch_size": 4},
    }
    for section, values in sections.items():
        cfg.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(cfg))
    return path


def env() -> dict:
    out = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    out.pop("RANK", None)
    return out


def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python cli.py ARGS` from the repo root, capturing output."""
    return subprocess.run(
        [sys.executable, "cli.py", *args], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout
    )


def launcher(*args: str, procs: int = 2) -> list[str]:
    """The real DeepSpeed launcher command line for `cli.py ARGS` with `procs` processes."""
    return [str(VENV_BIN / "deepspeed"), "--num_gpus", str(procs), "--master_port", str(_free_port()), "cli.py", *args]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
