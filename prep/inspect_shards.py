"""What a prep directory or shard holds: one record per sample, a summary, and `verify` checks.

`verify` decodes every JPEG (torchvision.io.decode_jpeg) and checks it against the sample's JSON
(frame count, frame sizes, height/width), and for a directory checks each manifest shard's size
and SHA-256. Problems are yielded as records too, so the CLI can print everything it found.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torchvision.io import decode_jpeg

from svformer import storage
from svformer.data import read_manifest
from svformer.data.tarread import read_shard
from svformer.errors import UserError
from svformer.files import file_sha256

SAMPLE_FIELDS = ("key", "label", "num_frames", "height", "width", "fps", "source")


def _remote_shards(url: str) -> tuple[list[str], dict[str, Any] | None]:
    """The shard URLs of a remote prep directory (its manifest) or brace pattern; one line if unreadable."""
    from svformer.data.sources import is_prep_dir, shard_urls

    if not is_prep_dir(url):
        return shard_urls(url), None
    manifest = read_manifest(url)
    shards = [storage.join(url, s["name"]) for s in manifest["shards"]]
    storage.probe(shards, url)
    return shards, manifest


def _local_copies(shards: list[Path] | list[str]) -> Iterator[tuple[str, Path | None, str | None]]:
    """(name, local file, fetch problem) per shard: remote ones downloaded ahead (prefetch.RemoteShards)."""
    if not shards or not storage.is_remote(str(shards[0])):
        yield from ((Path(s).name, Path(s), None) for s in shards)
        return
    from svformer.data.prefetch import RemoteShards

    for item in RemoteShards()({"url": str(s)} for s in shards):
        name, error = storage.basename(item["url"]), item.get("error")
        if error is not None and not error.missing:
            yield name, Path(name), f"cannot fetch ({error.strerror})"
        else:  # a missing object has no local copy (None): reported as missing below
            yield name, Path(item["local"]) if "local" in item else None, None


def shard_paths(path: Path | str) -> tuple[list[Path] | list[str], dict[str, Any] | None]:
    """The shards of a prep directory (from its manifest.json when present, else *.tar) or one tar;
    for an s3:// or http(s):// URL, the URLs of its shards."""
    if storage.is_remote(str(path)):
        return _remote_shards(str(path))
    path = Path(path)
    if path.is_file():
        return [path], None
    if not path.is_dir():
        raise UserError(f"{path}: no such shard file or directory")
    if (path / "manifest.json").is_file():
        manifest = read_manifest(path)
        return [path / s["name"] for s in manifest["shards"]], manifest
    tars = sorted(path.glob("*.tar"))
    if not tars:
        raise UserError(f"{path}: no manifest.json and no *.tar shards; is this a prep output directory?")
    return tars, None


def _verify_sample(meta: dict[str, Any], blob: bytes) -> list[str]:
    """Problems with one sample's JPEG blob versus its JSON (decodes every frame)."""
    sizes = meta.get("frame_sizes") or []
    if len(sizes) != meta.get("num_frames"):
        return [f"{len(sizes)} frame_sizes for num_frames={meta.get('num_frames')}"]
    if sum(sizes) != len(blob):
        return [f"frame_sizes add up to {sum(sizes)} bytes but the .jpgs member has {len(blob)}"]
    offsets = [0]
    for size in sizes:
        offsets.append(offsets[-1] + size)
    data = torch.frombuffer(bytearray(blob), dtype=torch.uint8) if blob else torch.empty(0, dtype=torch.uint8)
    problems = []
    for i in range(len(sizes)):
        try:
            frame = decode_jpeg(data[offsets[i] : offsets[i + 1]])
        except RuntimeError as err:
            problems.append(f"frame {i}: JPEG does not decode ({str(err).splitlines()[0]})")
            continue
        if tuple(frame.shape[1:]) != (meta.get("height"), meta.get("width")):
            problems.append(
                f"frame {i}: {frame.shape[1]}x{frame.shape[2]} pixels, JSON says "
                f"{meta.get('height')}x{meta.get('width')} (height x width)"
            )
    return problems


def _label_order(label: str) -> int:
    """Sort key for histogram labels ("-1", "0", ..., anything odd last)."""
    return int(label) if label.lstrip("-").isdigit() else 1 << 30


def inspect_path(path: str | Path, verify: bool = False) -> Iterator[dict[str, Any]]:
    """Yield {"shard", key, label, num_frames, height, width, fps, source} per sample, then problem
    records ({"problem", "shard", "key"}) when `verify`, and finally {"summary": {...}}."""
    shards, manifest = shard_paths(path if storage.is_remote(str(path)) else Path(path))
    samples = frames = problems = 0
    classes: dict[str, int] = {}

    def problem(name: str, key: str | None, reason: str) -> dict[str, Any]:
        nonlocal problems
        problems += 1
        return {"problem": reason, "shard": name, "key": key}

    by_name = {s["name"]: s for s in manifest["shards"]} if manifest else {}
    for name, shard, fetch_problem in _local_copies(shards):
        if fetch_problem is not None:
            yield problem(name, None, fetch_problem)
            continue
        if shard is None or not shard.is_file():
            yield problem(name, None, "shard listed in manifest.json is missing")
            continue
        count = 0
        try:
            for group in read_shard(shard):
                key = group["__key__"]
                count += 1
                try:
                    meta = json.loads(group["json"])
                except (KeyError, ValueError) as err:
                    yield problem(name, key, f"missing or invalid {key}.json ({err})")
                    continue
                samples += 1
                frames += int(meta.get("num_frames", 0))
                classes[str(meta.get("label"))] = classes.get(str(meta.get("label")), 0) + 1
                yield {"shard": name, **{f: meta.get(f) for f in SAMPLE_FIELDS}}
                if verify:
                    if "jpgs" not in group:
                        yield problem(name, key, f"no {key}.jpgs member")
                        continue
                    for reason in _verify_sample(meta, group["jpgs"]):
                        yield problem(name, key, reason)
        except (tarfile.TarError, OSError, EOFError) as err:
            yield problem(name, None, f"unreadable tar ({err})")
            continue
        listed = by_name.get(name)
        if verify and listed is not None:
            if listed["samples"] != count:
                yield problem(name, None, f"{count} samples, manifest.json says {listed['samples']}")
            if shard.stat().st_size != listed["bytes"] or file_sha256(shard) != listed["sha256"]:
                yield problem(name, None, "size or SHA-256 differs from manifest.json")
    summary = {
        "path": str(path),
        "shards": len(shards),
        "samples": samples,
        "frames": frames,
        "classes": dict(sorted(classes.items(), key=lambda kv: _label_order(kv[0]))),
        "failures_at_prep": len(manifest["failures"]) if manifest else None,
    }
    if verify:
        summary["problems"] = problems
    yield {"summary": summary}
