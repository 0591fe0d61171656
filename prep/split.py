"""The stratified labeled/unlabeled/val split of a labeled list (`cli.py split`), and list writing.

Lists are read by `svformer.lists.read_list` (the one reader of the `<path> <label>` format); the
parts are written back with the sources exactly as the input list wrote them.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from pathlib import Path

from svformer.errors import UserError
from svformer.files import write_atomic
from svformer.lists import Entry, read_list


def write_list(path: Path, entries: list[Entry]) -> None:
    """Write `<source> <label>` lines (sources as in the input list), atomically."""
    write_atomic(path, "".join(f"{e.source} {e.label}\n" for e in entries))


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def stratified_split(entries: list[Entry], labeled: float, val: float, seed: int) -> dict[str, list[Entry]]:
    """Split entries per class: val first, then the labeled fraction of the rest, the rest unlabeled.

    Per class with n videos: n_val = round(val * n) (at most n - 1); of the n - n_val training
    videos, n_lab = round(labeled * (n - n_val)), at least 1. Deterministic for a seed (each class
    is shuffled by its own `random.Random(f"{seed}:{label}")`); each part is returned in list order.
    Unlabeled entries keep their labels (for monitoring only).
    """
    by_class: dict[int, list[Entry]] = defaultdict(list)
    for entry in entries:
        by_class[entry.label].append(entry)
    parts: dict[str, list[Entry]] = {"labeled": [], "unlabeled": [], "val": []}
    for label in sorted(by_class):
        members = list(by_class[label])
        random.Random(f"{seed}:{label}").shuffle(members)
        n = len(members)
        n_val = min(n - 1, _round_half_up(val * n))
        n_lab = min(n - n_val, max(1, _round_half_up(labeled * (n - n_val))))
        parts["val"] += members[:n_val]
        parts["labeled"] += members[n_val : n_val + n_lab]
        parts["unlabeled"] += members[n_val + n_lab :]
    return {name: sorted(part, key=lambda e: e.line) for name, part in parts.items()}


def split_list(list_path: str | Path, out_dir: str | Path, labeled: float, val: float, seed: int) -> dict[str, Path]:
    """Read a labeled list and write labeled.txt, unlabeled.txt and (when val > 0) val.txt to out_dir.

    Returns: {"labeled": path, "unlabeled": path, ["val": path]}.
    Raises: UserError for bad fractions or any bad line (naming the first one).
    """
    if not 0.0 < labeled <= 1.0:
        raise UserError(f"--labeled {labeled}: must be a fraction in (0, 1]")
    if not 0.0 <= val < 1.0:
        raise UserError(f"--val {val}: must be a fraction in [0, 1)")
    parsed = read_list(list_path, require_labels=True)
    if parsed.failures:
        first = parsed.failures[0]
        raise UserError(
            f"{list_path}:{first.line}: {first.reason} ({len(parsed.failures)} bad line(s)); "
            "fix the list before splitting"
        )
    parts = stratified_split(parsed.entries, labeled, val, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, part in parts.items():
        if name == "val" and val == 0.0:
            continue
        written[name] = out / f"{name}.txt"
        write_list(written[name], part)
    return written
