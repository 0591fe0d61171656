"""What `predict` writes: its rows (JSON lines, CSV or a table) and two list files.

- `--pseudo-labels FILE`: `<source> <label>` for every prediction at or above the threshold.
- `--label-next K FILE`: the K least certain videos (smallest margin between the two top
  probabilities), spread over the predicted classes, as `<source> <predicted label>` lines: the
  label is a suggestion to check, so that the file is already a list `split` and `prep` accept.

Both are list files (svformer/lists.py): `#` comment lines, then one `<path> <label>` per line, paths
written as the inputs gave them (like `split`), so the same `--data-root` resolves them.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from svformer.errors import UserError
from svformer.files import write_atomic

COLUMNS = ("source", "line", "list_label", "label", "name", "confidence", "margin", "topk", "error")
FORMATS = (".jsonl", ".csv")


def check_out_path(out: str | Path | None) -> None:
    """Raise UserError unless `out` is None or names a .jsonl or .csv file."""
    if out is not None and Path(out).suffix.lower() not in FORMATS:
        raise UserError(f"--out {out}: name a .jsonl or .csv file (the format follows the suffix)")


def write_rows(path: str | Path, rows: Sequence[dict]) -> Path:
    """Write rows as JSON lines (.jsonl) or CSV (.csv, `topk` as a JSON list), atomically."""
    path = Path(path)
    check_out_path(path)
    if path.suffix.lower() == ".jsonl":
        text = "".join(json.dumps(row) + "\n" for row in rows)
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(dict(row, topk=json.dumps(row["topk"])))
        text = buffer.getvalue()
    _write(path, text)
    return path


def format_table(rows: Sequence[dict]) -> str:
    """A plain-text table for the terminal: source, line, predicted label and name, confidence, error."""
    lines = [("source", "line", "label", "name", "confidence", "error")]
    for row in rows:
        lines.append(
            (
                row["source"],
                "" if row["line"] is None else str(row["line"]),
                "" if row["label"] is None else str(row["label"]),
                row["name"] or "",
                "" if row["confidence"] is None else f"{row['confidence']:.3f}",
                row["error"] or "",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]) - 1)]
    return (
        "\n".join(
            "  ".join(cell.ljust(w) for cell, w in zip(line, widths)) + "  " + line[-1] for line in lines
        ).rstrip()
        + "\n"
    )


def confident(rows: Sequence[dict], threshold: float) -> list[dict]:
    """The predicted rows whose confidence is at least `threshold`, in input order."""
    return [row for row in rows if row["error"] is None and row["confidence"] >= threshold]


def label_next(rows: Sequence[dict], k: int) -> list[dict]:
    """The k least certain predictions, spread over the predicted classes.

    Round-robin: each round takes the least certain video left in every predicted class (smallest
    margin between the two top probabilities) and orders that round by ascending margin; rounds
    repeat until k are taken. Ties keep input order. Returns the rows in the order chosen.
    """
    by_class: dict[int, list[dict]] = defaultdict(list)
    for row in sorted((r for r in rows if r["error"] is None), key=lambda r: r["margin"]):  # stable: input order
        by_class[row["label"]].append(row)
    queues = [by_class[label] for label in sorted(by_class)]
    chosen: list[dict] = []
    while len(chosen) < k and any(queues):
        chosen += sorted((queue.pop(0) for queue in queues if queue), key=lambda r: r["margin"])
    return chosen[:k]


def write_pseudo_labels(path: str | Path, rows: Sequence[dict], threshold: float, description: str) -> int:
    """Write the confident predictions as a `<source> <label>` list; returns how many."""
    picked = confident(rows, threshold)
    predicted = sum(row["error"] is None for row in rows)
    header = [
        f"# pseudo-labels from {description}",
        f"# confidence >= {threshold:g}: {len(picked)} of {predicted} predicted videos; <path> <label>",
    ]
    _write(path, "\n".join(header + [f"{_list_path(row['source'])} {row['label']}" for row in picked]) + "\n")
    return len(picked)


def write_label_next(path: str | Path, rows: Sequence[dict], k: int, description: str) -> int:
    """Write the videos to label next as a `<source> <predicted label>` list (labels to check); returns how many."""
    picked = label_next(rows, k)
    lines = [
        f"# videos to label next, from {description}: the {len(picked)} least certain predictions",
        "# (smallest margin between the two top probabilities), spread over the predicted classes.",
        "# Each label is the model's guess: check it, correct it, then add the lines to the labeled list.",
    ]
    for row in picked:
        runner_up = f", then {row['topk'][1][1]} {row['topk'][1][2]:.3f}" if len(row["topk"]) > 1 else ""
        lines.append(f"# margin {row['margin']:.3f}: {row['name']} {row['confidence']:.3f}{runner_up}")
        lines.append(f"{_list_path(row['source'])} {row['label']}")
    _write(path, "\n".join(lines) + "\n")
    return len(picked)


def _list_path(source: str) -> str:
    """`source` as a list line's path: a relative path starting with '#' would read as a comment."""
    return "./" + source if source.startswith("#") else source


def _write(path: str | Path, text: str) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)
    except OSError as err:
        raise UserError(f"could not write {path} ({err.strerror or err})") from None
