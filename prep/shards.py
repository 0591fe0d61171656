"""The prep run: list file -> decoded videos (K parallel ffmpeg workers) -> shards in list order.

Shard assignment is a pure function of the list and the settings: videos are taken in list order,
and a shard is closed just before the sample that would push it past `shard_size` bytes (a sample
larger than `shard_size` gets a shard of its own). So an interrupted run is resumed by trusting
the finished shards (their sidecars say where the next shard starts, `next_index`) and decoding
from there; the result is byte-identical to an uninterrupted run. Failed videos are recorded,
never written; the run raises UserError (after writing the manifest) when more than
`max_failures` of the list's entries failed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tqdm import tqdm

from prep.manifest import Naming, build_manifest, load_completed, merge_parts, sidecar_path, write_manifest
from prep.tarfmt import ShardWriter, archive_size, sample_members
from svformer.errors import UserError
from svformer.files import write_atomic
from svformer.lists import Entry, Failure, read_list
from svformer.preemption import StopRequest
from svformer.video.decode import Decoded, DecodeError, DecodeSettings, decode_video
from svformer.video.ffmpeg_bin import ffmpeg_version

log = logging.getLogger(__name__)
DECODE_TIMEOUT_S = 600.0
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_size(text: str) -> int:
    """Bytes from '1GB', '500MB', '10MB', '64KiB' or '12345' (KB/MB/GB decimal, KiB/MiB/GiB binary)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS or float(match.group(1)) * _UNITS[unit] < 1:
        raise UserError(f"--shard-size {text!r}: expected a size such as 1GB, 500MB, 64KiB or a byte count")
    return int(float(match.group(1)) * _UNITS[unit])


def parse_part(text: str) -> tuple[int, int]:
    """(i, N) from 'i/N', 1-based: '1/8' is the first of eight parts."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise UserError(f"--part {text!r}: expected i/N with 1 <= i <= N (1-based), e.g. 3/8")
    return int(match.group(1)), int(match.group(2))


def part_bounds(count: int, part: tuple[int, int] | None) -> tuple[int, int]:
    """[lo, hi) of part i/N over `count` valid entries: contiguous slices of near-equal size."""
    if part is None:
        return 0, count
    i, n = part
    return (i - 1) * count // n, i * count // n


def _select_part(
    entries: list[Entry], failures: list[Failure], part: tuple[int, int] | None
) -> tuple[list[Entry], list[Failure]]:
    """The part's entries, and the list failures it reports (each failure goes to exactly one part)."""
    lo, hi = part_bounds(len(entries), part)
    if part is None:
        return entries, failures
    lines = [e.line for e in entries]
    last = part[0] == part[1]
    # A failed line belongs to the part holding the next valid entry (the last part for the tail).
    mine = [f for f in failures if lo <= bisect_left(lines, f.line) < hi or (last and bisect_left(lines, f.line) >= hi)]
    return entries[lo:hi], mine


def _record(entry: Entry, video: Decoded) -> dict[str, Any]:
    """The sample's KEY.json object (docs/architecture.md), in the documented key order."""

    def r6(x: float | None) -> float | None:
        return None if x is None else round(float(x), 6)

    return {
        "key": entry.key,
        "label": entry.label,
        "source": entry.source,
        "line": entry.line,
        "src_fps": r6(video.src_fps),
        "src_width": video.src_width,
        "src_height": video.src_height,
        "src_duration": r6(video.src_duration),
        "src_rotation": video.src_rotation,
        "fps": r6(video.fps),
        "num_frames": len(video.frames),
        "height": video.height,
        "width": video.width,
        "frame_sizes": [len(f) for f in video.frames],
    }


class _Roller:
    """Appends samples to the current shard and rolls over at `shard_size`; writes each sidecar."""

    def __init__(
        self,
        out: Path,
        naming: Naming,
        run_id: str,
        shard_size: int,
        sidecars: list[dict[str, Any]],
        on_shard: Callable[[Path, dict[str, Any]], None] | None = None,
    ):
        self.out, self.naming, self.run_id, self.shard_size = out, naming, run_id, shard_size
        self.sidecars = sidecars
        self.on_shard = on_shard
        self.writer: ShardWriter | None = None
        self.keys: list[str] = []
        self.frames = 0
        self.classes: dict[str, int] = {}
        self.pending: list[Failure] = []  # failures since the last sidecar

    def add(self, index: int, entry: Entry, video: Decoded) -> None:
        members = sample_members(_record(entry, video), video.frames)
        if self.writer is not None and archive_size(self.writer.payload + len(members)) > self.shard_size:
            self.close(next_index=index)
        if self.writer is None:
            self.writer = ShardWriter(self.out / self.naming.shard(len(self.sidecars)))
        self.writer.add(members)
        self.keys.append(entry.key)
        self.frames += len(video.frames)
        self.classes[str(entry.label)] = self.classes.get(str(entry.label), 0) + 1

    def close(self, next_index: int) -> None:
        """Finish the current shard (rename), then write its sidecar: the resume point."""
        if self.writer is None:
            return
        info = self.writer.finish()
        meta = {
            "name": info.name,
            "samples": info.samples,
            "bytes": info.bytes,
            "sha256": info.sha256,
            "run_id": self.run_id,
            "next_index": next_index,
            "num_frames": self.frames,
            "classes": self.classes,
            "keys": self.keys,
            "failures": [{"line": f.line, "source": f.source, "reason": f.reason} for f in self.pending],
        }
        write_atomic(sidecar_path(self.writer.path), json.dumps(meta) + "\n")
        if self.on_shard is not None:  # prep --out s3://: upload the finished shard (prep/upload.py)
            self.on_shard(self.writer.path, meta)
        self.sidecars.append(meta)
        self.writer, self.keys, self.frames, self.classes, self.pending = None, [], 0, {}, []

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


def _decode(entry: Entry, settings: DecodeSettings) -> Decoded | DecodeError:
    try:
        return decode_video(entry.path, settings, timeout_s=DECODE_TIMEOUT_S)
    except DecodeError as err:
        return err


def prep_list(
    list_path: str | Path,
    out_dir: str | Path,
    settings: DecodeSettings = DecodeSettings(),
    *,
    data_root: str | Path | None = None,
    num_classes: int | None = None,
    shard_size: int = 10**9,
    workers: int | None = None,
    part: tuple[int, int] | None = None,
    max_failures: float = 0.01,
    progress: bool = True,
    class_names: list[str] | None = None,
    completed: Callable[[Path, Naming, str], list[dict[str, Any]]] = load_completed,
    on_shard: Callable[[Path, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Prep the videos of a list file into shards in `out_dir`; returns the manifest object.

    `class_names` (label i = name i; see `svformer.lists.read_class_names`) goes into the manifest, and
    from there into every checkpoint trained on the shards. When given without `num_classes`,
    labels must lie in [0, len(class_names)).

    `completed(out, naming, run_id)` returns the sidecars of the shards already done (default: those
    in `out_dir`), `on_shard(shard, sidecar)` is called after each shard is finished: prep/upload.py
    passes both to keep the shards in object storage.

    Resumes a killed run in the same `out_dir`. Raises UserError for an unreadable list, a
    directory holding another run's shards, or more than `max_failures` (fraction) failed entries.
    """
    if class_names is not None:
        if num_classes is not None and len(class_names) != num_classes:
            raise UserError(f"{len(class_names)} class names but --num-classes {num_classes}; give one name per class")
        num_classes = len(class_names)
    parsed = read_list(list_path, data_root=data_root, num_classes=num_classes)
    entries, failures = _select_part(parsed.entries, parsed.failures, part)
    list_failures = len(failures)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    naming = Naming(part)
    doc = {
        "short_side": settings.short_side,
        "fps": settings.fps,
        "quality": settings.quality,
        "shard_size": shard_size,
        "num_classes": num_classes,
        "ffmpeg": ffmpeg_version(),
        "list_sha256": hashlib.sha256(
            json.dumps([(e.line, e.source, e.label) for e in parsed.entries]).encode()
        ).hexdigest(),
    }
    part_entries = [(e.line, e.source, e.label) for e in entries]
    run_id = hashlib.sha256(json.dumps([doc, part, part_entries]).encode()).hexdigest()
    sidecars = completed(out, naming, run_id)
    start = sidecars[-1]["next_index"] if sidecars else 0
    if sidecars:
        log.info(
            "%s: %d finished shard(s) kept; resuming at list line %s",
            out,
            len(sidecars),
            entries[start].line if start < len(entries) else "end",
        )
    failures = failures + [Failure(**f) for meta in sidecars for f in meta["failures"]]
    roller = _Roller(out, naming, run_id, shard_size, sidecars, on_shard)
    # A signal stops at once: the shard being written stays a temp file (the rerun deletes it), finished ones stay.
    with StopRequest(interrupt=f"prep stopped by {{signal}}: finished shards in {out} kept; rerun the same command"):
        _run(entries, start, settings, roller, failures, workers or os.cpu_count() or 1, progress, out.name)
    settings_doc = dict(
        doc,
        part=None if part is None else f"{part[0]}/{part[1]}",
        list=str(list_path),
        data_root=None if data_root is None else str(data_root),
    )
    manifest = build_manifest(roller.sidecars, failures, settings_doc, num_classes, class_names)
    write_manifest(out, naming, manifest)
    if part is not None and merge_parts(out, part[1]) is not None:
        log.info("%s: all %d parts complete; wrote the merged manifest.json", out, part[1])
    checked = len(entries) + list_failures  # every entry line of this part, good or bad
    if len(failures) > max_failures * checked:
        raise UserError(
            f"{len(failures)} of {checked} list entries failed (more than --max-failures "
            f"{max_failures:g}); reasons in {out / naming.failures}"
        )
    return manifest


def _run(
    entries: list[Entry],
    start: int,
    settings: DecodeSettings,
    roller: _Roller,
    failures: list[Failure],
    workers: int,
    progress: bool,
    name: str,
) -> None:
    """Decode entries[start:] with `workers` threads (each drives one ffmpeg) and write them in list order."""
    todo = iter(range(start, len(entries)))
    window: deque[tuple[int, Future]] = deque()
    frames, t0 = 0, time.perf_counter()
    bar = tqdm(
        total=len(entries), initial=start, unit="video", desc=f"prep {name}", disable=not progress, dynamic_ncols=True
    )
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prep")
    try:

        def submit() -> None:
            index = next(todo, None)
            if index is not None:
                window.append((index, pool.submit(_decode, entries[index], settings)))

        for _ in range(2 * workers):  # bounded look-ahead: memory stays ~2K decoded videos
            submit()
        while window:
            index, future = window.popleft()
            submit()
            result = future.result()
            entry = entries[index]
            if isinstance(result, DecodeError):
                failure = Failure(entry.line, entry.source, str(result))
                failures.append(failure)
                roller.pending.append(failure)
                log.debug("%s:%d skipped: %s", entry.source, entry.line, result)
            else:
                roller.add(index, entry, result)
                frames += len(result.frames)
            bar.update(1)
            bar.set_postfix(
                frames_s=f"{frames / max(time.perf_counter() - t0, 1e-9):.0f}", failed=len(failures), refresh=False
            )
        roller.close(next_index=len(entries))
    except BaseException:
        roller.abort()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
