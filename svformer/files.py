"""Writing files so that a reader never sees half of one: temp file, fsync, rename."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: str | Path, text: str) -> None:
    """Write `text` to `path` through `<path>.<pid>.tmp` and a rename (atomic on POSIX filesystems).

    The pid keeps writers apart: two prep parts of a Slurm array that finish together both write
    the merged manifest.json (the same text), and neither may rename the other's half-written temp.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
