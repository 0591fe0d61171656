"""`Predictor`: a trained model applied to raw video files, decoded exactly as its shards were made.

A video goes through the ffmpeg decoding prep uses (`svformer.video.decode.decode_video`) with the prep
settings recorded in the checkpoint (short side, fps cap, JPEG quality), which yields the very JPEG
bytes its shard sample would hold. From those bytes the views are cut the way the eval stream cuts
them (uniform clip starts, `decode_frames`, `views.test_views`) and scored with `view_logits`, so a
raw video gets the logits `eval` gives its shard.

Decoding runs in worker threads (each drives one ffmpeg process and cuts its video's views) while
the calling thread runs the model on the previous batch. A video that cannot be decoded becomes a
row with an `error` and never stops the others.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from svformer.config import Config, DataConfig, parse_views
from svformer.data.clips import SampleError, eval_views
from svformer.errors import UserError
from svformer.evaluate import view_logits
from svformer.run_dir import build_trained_model, load_trained, pick_models
from svformer.video.decode import DecodeError, DecodeSettings, decode_video
from svformer.views import test_views

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoInput:
    """One video to predict: the file to open and what its row reports."""

    path: str
    """The path opened (absolute, or relative to the working directory)."""
    source: str
    """The path as the user gave it (reported in the row and written into the list outputs)."""
    line: int | None = None
    """1-based line in the list file it came from; None for a path given directly."""
    list_label: int | None = None
    """The label the list gives it (reported, never used for prediction); None when unknown."""
    error: str | None = None
    """A list line that could not be parsed: the row reports this reason and nothing is decoded."""


def video_views(frames: Sequence[bytes], data: DataConfig, clips: int, crops: int) -> torch.Tensor:
    """The test views of a video given as its stored JPEG frames, as the eval stream cuts them.

    `data.clips.eval_views`, the function the eval stream calls on a shard sample, with `test_views`
    (short side to `data.test_short_side`, then the crops): so the same JPEG bytes give the same views.

    Args:
        frames: the video's JPEG frames in time order (a shard sample's `KEY.jpgs`, split).
        data: the run's data config (num_frames, sampling_rate, test_short_side, img_size).
        clips: temporal clips; crops: spatial crops (1 or 3).
    Returns:
        uint8 (V = clips * crops, C, T, S, S); view v is clip v // crops, crop v % crops.
    Raises:
        SampleError: an undecodable JPEG frame.
    """
    return eval_views(
        b"".join(frames),
        [len(f) for f in frames],
        data.num_frames,
        data.sampling_rate,
        clips,
        lambda clip: test_views(clip, data.test_short_side, data.img_size, crops),
    )


def view_probabilities(logits: torch.Tensor, combine: str) -> torch.Tensor:
    """Class probabilities of videos from their view logits: (N, V, K) -> (N, K).

    `sum` (eval's default, the paper's): softmax of the views' mean logits, which ranks classes as
    the sum does and keeps a single view's scale; `softmax`: the mean of the views' softmax.
    """
    return logits.mean(1).softmax(-1) if combine == "sum" else logits.softmax(-1).mean(1)


class Predictor:
    """A trained model, its decoding settings and class names, ready for raw videos.

    >>> predictor = Predictor.load("runs/demo", views="5x3")
    >>> rows = predictor.predict(["clip.mp4", "other.mkv"])
    >>> rows[0]["name"], rows[0]["confidence"], rows[0]["error"]

    Each row is a dict (see `predict`); a bad video gives a row whose `error` says why.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: Config,
        decode: DecodeSettings,
        class_names: list[str],
        views: str = "5x3",
        device: torch.device | str = "cpu",
        description: str = "",
    ) -> None:
        """Wrap an eval-mode model; `Predictor.load` builds one from a checkpoint or export."""
        self.model, self.config, self.decode = model, config, decode
        self.class_names = class_names
        self.views = parse_views(views)
        self.device = torch.device(device)
        self.description = description  # which weights (path, model, step): for logs and list headers

    @classmethod
    def load(
        cls,
        path: str | Path,
        model: str = "teacher",
        views: str = "5x3",
        device: torch.device | str | None = None,
        decode: DecodeSettings | None = None,
    ) -> Predictor:
        """Load weights from a run directory (its newest intact checkpoint), a checkpoint directory or an
        exported `.safetensors` file.

        Args:
            path: the run, checkpoint or export.
            model: "teacher" or "student".
            views: "CxS", C temporal clips x S spatial crops (1 or 3) per video, as `eval --views`.
            device: default CUDA when available, else CPU.
            decode: override the prep settings recorded in the checkpoint (needed when its shards were
                not prep output directories, so it records none).
        Raises:
            UserError: nothing usable at `path`, a damaged checkpoint, no such model in it.
        """
        if model not in ("teacher", "student"):
            raise UserError(f"model must be teacher or student, not {model!r}")
        parse_views(views)
        weights = load_trained(path)
        (name,) = pick_models(weights, model)
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        net = build_trained_model(weights, name, device)
        data = weights.data
        num_classes = weights.config.model.num_classes
        names = data.get("class_names")
        if names is not None and len(names) != num_classes:
            log.warning(
                "%s: %d class names recorded for %d classes; reporting label numbers",
                weights.source,
                len(names),
                num_classes,
            )
            names = None
        if decode is None:
            decode = _decode_settings(data.get("prep") or {}, weights.source)
        description = f"{weights.source} ({name}, step {weights.step})"
        return cls(
            net, weights.config, decode, names or [str(i) for i in range(num_classes)], views, device, description
        )

    # ------------------------------------------------------------------ decoding and scoring

    def decode_views(self, video: VideoInput) -> torch.Tensor | str:
        """The video's test views, uint8 (V, C, T, S, S), or the one-line reason it has none."""
        if video.error is not None:
            return video.error
        try:
            frames = decode_video(video.path, self.decode).frames
            return video_views(frames, self.config.data, *self.views)
        except DecodeError as err:
            return str(err)
        except SampleError as err:
            return f"ffmpeg wrote an unusable frame ({err})"

    def scored(
        self,
        videos: Sequence[VideoInput],
        workers: int | None = None,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> Iterator[tuple[VideoInput, torch.Tensor | str]]:
        """(video, view logits float32 (V, K) or an error reason) for every video, in input order.

        `workers` threads decode ahead (default: CPU count) while this thread runs the model on
        batches of `batch_size` videos (default: the run's eval.batch_size).
        """
        workers = max(1, workers or os.cpu_count() or 1)
        batch_size = max(1, batch_size or self.config.eval.batch_size)
        todo = iter(videos)
        window: deque[tuple[VideoInput, Future]] = deque()
        held: list[tuple[VideoInput, torch.Tensor | str]] = []
        failed = 0
        bar = tqdm(total=len(videos), unit="video", desc="predict", disable=not progress, dynamic_ncols=True)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="predict")

        def submit() -> None:
            video = next(todo, None)
            if video is not None:
                window.append((video, pool.submit(self.decode_views, video)))

        def flush() -> Iterator[tuple[VideoInput, torch.Tensor | str]]:
            good = [views for _, views in held if isinstance(views, torch.Tensor)]
            logits = iter(view_logits(self.model, torch.stack(good), self.config, self.device)) if good else iter(())
            for video, views in held:
                yield video, next(logits) if isinstance(views, torch.Tensor) else views
            bar.update(len(held))
            bar.set_postfix(failed=failed, refresh=False)
            held.clear()

        try:
            # Look ahead a batch plus two videos per worker: the workers keep decoding during the forward.
            for _ in range(batch_size + 2 * workers):
                submit()
            while window:
                video, future = window.popleft()
                submit()
                result = future.result()
                failed += isinstance(result, str)
                held.append((video, result))
                if sum(isinstance(views, torch.Tensor) for _, views in held) == batch_size:
                    yield from flush()
            yield from flush()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()

    def predict(
        self,
        videos: Iterable[str | Path | VideoInput],
        top_k: int = 5,
        workers: int | None = None,
        batch_size: int | None = None,
        progress: bool = False,
        logits: bool = False,
    ) -> list[dict]:
        """Predict every video; one row per input, in input order.

        Args:
            videos: paths (opened as given, relative to the working directory) or `VideoInput`s.
            top_k: classes listed in each row's `topk`.
            workers: decoding threads (one ffmpeg each); default the CPU count.
            batch_size: videos per forward pass; default the run's eval.batch_size.
            progress: show a progress bar on stderr.
            logits: add each video's per-view logits (V x K lists) as `logits`.
        Returns:
            dicts with `source`, `line`, `list_label` (from a list, else None), `label` (predicted class),
            `name`, `confidence` (its probability), `margin` (top-1 minus top-2 probability), `topk`
            (`[label, name, probability]` x k) and `error` (None, or the one-line reason prep would
            record; the prediction fields are then None and `topk` empty).
        """
        items = [v if isinstance(v, VideoInput) else VideoInput(str(v), str(v)) for v in videos]
        k = max(1, min(top_k, len(self.class_names)))
        rows = []
        for video, result in self.scored(items, workers, batch_size, progress):
            row = {
                "source": video.source,
                "line": video.line,
                "list_label": video.list_label,
                "label": None,
                "name": None,
                "confidence": None,
                "margin": None,
                "topk": [],
                "error": None,
            }
            if isinstance(result, str):
                row["error"] = result
            else:
                probs = view_probabilities(result[None], self.config.eval.combine)[0]  # (K,)
                top = probs.topk(max(k, min(2, len(probs))))
                labels, values = top.indices.tolist(), top.values.tolist()
                row.update(
                    label=labels[0],
                    name=self.class_names[labels[0]],
                    confidence=values[0],
                    margin=values[0] - values[1] if len(values) > 1 else values[0],
                    topk=[[c, self.class_names[c], p] for c, p in zip(labels[:k], values[:k])],
                )
                if logits:
                    row["logits"] = result.tolist()
            rows.append(row)
        return rows


def _decode_settings(prep: dict, source: Path) -> DecodeSettings:
    """DecodeSettings from a checkpoint's recorded prep settings (prep's defaults, with a warning, if none)."""
    if not prep.get("short_side"):
        log.warning(
            "%s records no prep settings (its shards were not prep output directories): "
            "decoding with prep's defaults %s; predictions may differ from eval's",
            source,
            DecodeSettings(),
        )
        return DecodeSettings()
    default = DecodeSettings()
    return DecodeSettings(
        short_side=int(prep["short_side"]),
        fps=float(prep.get("fps", default.fps)),
        quality=int(prep.get("quality", default.quality)),
    )
