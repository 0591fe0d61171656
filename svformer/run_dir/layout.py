"""The run directory's layout: where checkpoints are, which are complete, and whether their bytes are intact.

    runs/<name>/checkpoints/step-NNNNNN/        a committed checkpoint; `index.json` lists its files
    runs/<name>/checkpoints/step-NNNNNN.tmp/    being written; never read
Every checkpoint ends with `index.json` (each file's size and sha256, written last). Readers trust a
checkpoint only when its files match it (`verify`); `latest_checkpoint` skips damaged ones with a warning.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

from svformer.errors import UserError
from svformer.files import file_sha256, write_atomic

log = logging.getLogger("svformer.run_dir")
STEP_DIR = re.compile(r"^step-(\d{6,})$")
INDEX = "index.json"
MODEL_FILE = "mp_rank_00_model_states.pt"


class CorruptCheckpoint(UserError):
    """A checkpoint whose files do not match its index (truncated, missing, changed on disk)."""


def checkpoint_root(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def step_of(ckpt: Path) -> int:
    """The step a checkpoint directory was saved at (-1 when its name is not step-NNNNNN)."""
    match = STEP_DIR.match(ckpt.name)
    return int(match.group(1)) if match else -1


def complete_checkpoints(run_dir: str | Path) -> list[Path]:
    """Committed checkpoint directories of a run (renamed from .tmp, so holding an index), oldest first;
    not yet verified."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and STEP_DIR.match(p.name) and (p / INDEX).exists()]
    return sorted(found, key=step_of)


def write_index(ckpt: Path) -> None:
    """Record every file of `ckpt` with its size and sha256 in index.json (atomically, last)."""
    files = {
        str(p.relative_to(ckpt)): {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
        for p in sorted(ckpt.rglob("*"))
        if p.is_file() and p.name != INDEX
    }
    write_atomic(ckpt / INDEX, json.dumps({"version": 1, "files": files}, indent=1) + "\n")


def verify(ckpt: Path) -> None:
    """Raise CorruptCheckpoint (one line naming the first bad file) unless every indexed file matches."""
    index_file = ckpt / INDEX
    if not index_file.exists():
        raise CorruptCheckpoint(f"{ckpt}: no {INDEX}; not a complete svformer checkpoint")
    try:
        files = json.loads(index_file.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CorruptCheckpoint(f"{ckpt}: unreadable {INDEX} ({type(err).__name__})") from None
    for name, meta in files.items():
        path = ckpt / name
        if not path.is_file():
            raise CorruptCheckpoint(f"{ckpt}: {name} is missing")
        if path.stat().st_size != meta["bytes"]:
            raise CorruptCheckpoint(
                f"{ckpt}: {name} has {path.stat().st_size} bytes, the index says {meta['bytes']} (truncated?)"
            )
        if file_sha256(path) != meta["sha256"]:
            raise CorruptCheckpoint(f"{ckpt}: {name} does not match its sha256 in {INDEX} (changed or damaged)")


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint of a run that verifies; newer damaged ones are named in a warning."""
    for ckpt in reversed(complete_checkpoints(run_dir)):
        try:
            verify(ckpt)
        except CorruptCheckpoint as err:
            log.warning("skipping damaged checkpoint: %s; falling back to the one before", err)
            continue
        return ckpt
    return None


def clean_partial(run_dir: str | Path) -> None:
    """Remove `.tmp` checkpoints left by a crash (rank 0 only, before training starts)."""
    root = checkpoint_root(run_dir)
    if root.is_dir():
        for partial in root.glob("*.tmp"):
            log.warning("removing incomplete checkpoint %s", partial)
            shutil.rmtree(partial, ignore_errors=True)
