"""Test helper: tiny shards in prep's format (docs/architecture.md, "Shards") with known frames.

Frame i of every video is a flat grey image of value `frame_value(i)`, so a test can tell from the
decoded pixels which stored frames a clip holds (`frame_ids`).
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.io import encode_jpeg


def frame_value(i: int) -> int:
    """Grey level of stored frame i (distinct for i < 32, 8 levels apart: far beyond JPEG error)."""
    return (8 * i + 4) % 256


def frame_ids(clip: torch.Tensor) -> list[int]:
    """Stored-frame index of each frame of a uint8 clip (C, T, H, W) made from these shards."""
    means = clip.float().mean(dim=(0, 2, 3))
    return [round((float(m) - 4) / 8) for m in means]


@dataclass
class Video:
    key: str
    label: int
    num_frames: int = 20
    height: int = 48
    width: int = 64
    fault: str = ""
    """"" (good), "jpeg" (undecodable frames), "json" (bad JSON), "no_jpgs" (missing member)."""


def _jpegs(video: Video) -> list[bytes]:
    frames = []
    for i in range(video.num_frames):
        image = torch.full((3, video.height, video.width), frame_value(i), dtype=torch.uint8)
        data = encode_jpeg(image, quality=95).numpy().tobytes()
        frames.append(b"\x00" * len(data) if video.fault == "jpeg" else data)
    return frames


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0, 0, "", ""
    tar.addfile(info, io.BytesIO(data))


def write_shards(out: Path, videos: list[Video], per_shard: int, manifest: bool = True) -> list[Path]:
    """Write `videos` into shard-000000.tar, ... (`per_shard` each) and a manifest.json; returns the shards."""
    out.mkdir(parents=True, exist_ok=True)
    paths, entries = [], []
    for s in range(0, len(videos), per_shard):
        path = out / f"shard-{s // per_shard:06d}.tar"
        with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
            for line, video in enumerate(videos[s : s + per_shard], start=s + 1):
                frames = _jpegs(video)
                record = {
                    "key": video.key,
                    "label": video.label,
                    "source": f"videos/{video.key}.mp4",
                    "line": line,
                    "src_fps": 30.0,
                    "src_width": video.width,
                    "src_height": video.height,
                    "src_duration": video.num_frames / 15,
                    "fps": 15.0,
                    "num_frames": video.num_frames,
                    "height": video.height,
                    "width": video.width,
                    "frame_sizes": [len(f) for f in frames],
                }
                text = b"{not json" if video.fault == "json" else json.dumps(record).encode()
                _add(tar, f"{video.key}.json", text)
                if video.fault != "no_jpgs":
                    _add(tar, f"{video.key}.jpgs", b"".join(frames))
        paths.append(path)
        entries.append(
            {"name": path.name, "samples": len(videos[s : s + per_shard]), "bytes": path.stat().st_size, "sha256": ""}
        )
    if manifest:
        data = {
            "version": 1,
            "shards": entries,
            "num_samples": len(videos),
            "num_frames": 0,
            "classes": {},
            "num_classes": None,
            "settings": {},
            "failures": [],
            "complete": True,
        }
        (out / "manifest.json").write_text(json.dumps(data))
    return paths


def videos(n: int, num_classes: int = 4, prefix: str = "v", **kw) -> list[Video]:
    """n good videos with keys `{prefix}{i:04d}` and labels `i % num_classes`."""
    return [Video(f"{prefix}{i:04d}", i % num_classes, **kw) for i in range(n)]
