"""One `predict` run, as the CLI drives it: inputs -> `Predictor` -> rows and list files."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from svformer.errors import UserError
from svformer.lists import read_list, resolve
from svformer.predict import outputs
from svformer.predict.predictor import Predictor, VideoInput

log = logging.getLogger(__name__)


def gather_inputs(
    videos: Sequence[str], list_path: str | Path | None = None, data_root: str | Path | None = None
) -> list[VideoInput]:
    """The videos to predict: paths given directly, then a list file's lines in order.

    Relative paths are joined to `data_root` when given; otherwise a path given directly is taken
    from the working directory and a list's paths from the list's own directory (as `prep` does).
    A list's labels are optional and only reported; a list line that does not parse (a bad label, a
    duplicate, a missing file without a label) becomes an input carrying its reason.
    """
    if data_root is not None and not Path(data_root).is_dir():
        raise UserError(f"--data-root {data_root}: not a directory")
    inputs = [VideoInput(resolve(v, Path(data_root)) if data_root is not None else v, v) for v in videos]
    if list_path is not None:
        parsed = read_list(list_path, data_root=data_root)
        lines = [VideoInput(e.path, e.source, e.line, None if e.label == -1 else e.label) for e in parsed.entries]
        lines += [VideoInput("", f.source, f.line, error=f.reason) for f in parsed.failures]
        inputs += sorted(lines, key=lambda v: v.line)
    if not inputs:
        raise UserError("nothing to predict: give video paths, or --list FILE")
    return inputs


def predict_videos(
    ckpt: str | Path,
    videos: Sequence[str] = (),
    list_path: str | Path | None = None,
    data_root: str | Path | None = None,
    views: str = "5x3",
    top_k: int = 5,
    model: str = "teacher",
    out: str | Path | None = None,
    workers: int | None = None,
    batch_size: int | None = None,
    pseudo_labels: str | Path | None = None,
    threshold: float = 0.9,
    label_next: tuple[int, str | Path] | None = None,
    progress: bool = True,
) -> tuple[list[dict], dict]:
    """Predict the videos, write `out` and the optional lists; returns (rows, summary).

    Raises UserError (after writing every file) when every input failed, naming the first reason.
    """
    outputs.check_out_path(out)
    inputs = gather_inputs(videos, list_path, data_root)
    predictor = Predictor.load(ckpt, model=model, views=views)
    log.info(
        "predicting %d video(s) with %s, %s views, decoded at %s",
        len(inputs),
        predictor.description,
        views,
        predictor.decode,
    )
    rows = predictor.predict(inputs, top_k=top_k, workers=workers, batch_size=batch_size, progress=progress)
    failed = [row for row in rows if row["error"] is not None]
    summary: dict = {"videos": len(rows), "predicted": len(rows) - len(failed), "failed": len(failed)}
    if out is not None:
        summary["out"] = str(outputs.write_rows(out, rows))
    if pseudo_labels is not None:
        summary["pseudo_labels"] = outputs.write_pseudo_labels(pseudo_labels, rows, threshold, predictor.description)
    if label_next is not None:
        k, path = label_next
        summary["label_next"] = outputs.write_label_next(path, rows, k, predictor.description)
    if len(failed) == len(rows):
        first = failed[0]
        raise UserError(f"all {len(rows)} input(s) failed; first: {first['source']}: {first['error']}")
    return rows, summary
