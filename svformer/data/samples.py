"""Per-sample steps of the streams: cut a clip's JPEG bytes out of a shard sample, decode, view.

Training streams split the work in two so that the shuffle buffer holds only the few JPEGs a clip
needs (about T x 15 KB at 256p) instead of whole videos (hundreds of frames): `ClipBytes` draws the
clip start and slices its frames' bytes, the buffer shuffles those, then `TrainItem` /
`WeakStrongItem` decode and augment.

The default transforms call `svformer.views`; any callable with the same signature can be injected instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import default_collate

from svformer import views
from svformer.config import DataConfig, SSLConfig
from svformer.data.clips import (
    SampleError,
    clip_index_list,
    decode_frames,
    distinct_frames,
    eval_views,
    frame_offsets,
    parse_sample,
    random_clip_start,
)

TrainTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
PairTransform = Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]
TestTransform = Callable[[torch.Tensor], torch.Tensor]


class TrainView:
    """Default labeled transform: `views.train_view` with the config's crop, scale jitter and flip."""

    def __init__(self, data: DataConfig) -> None:
        self.size, self.short_side_range, self.hflip = data.img_size, list(data.short_side_range), data.hflip

    def __call__(self, clip: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return views.train_view(clip, self.size, self.short_side_range, self.hflip, g)


class WeakStrongViews(TrainView):
    """Default unlabeled transform: `views.weak_strong_views` (same crop; strong adds warp/RandAugment)."""

    def __init__(self, data: DataConfig, ssl: SSLConfig) -> None:
        super().__init__(data)
        self.ssl = ssl

    def __call__(self, clip: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return views.weak_strong_views(clip, self.size, self.short_side_range, self.hflip, self.ssl, g)


class TestViews:
    """Default evaluation transform: `views.test_views` (short-side resize, 1 or 3 crops)."""

    def __init__(self, short_side: int, size: int, crops: int) -> None:
        self.short_side, self.size, self.crops = short_side, size, crops

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        return views.test_views(clip, self.short_side, self.size, self.crops)


def _label(record: dict, key: str, num_classes: int | None) -> int:
    label = int(record.get("label", -1))
    if num_classes is not None and not 0 <= label < num_classes:
        raise SampleError(f"{key}: label {label} outside [0, {num_classes}) in a labeled stream")
    return label


class ClipBytes:
    """Shard sample -> the JPEG bytes of one randomly placed training clip (nothing decoded yet).

    Returns {"__key__", "__url__", "label", "jpgs": bytes of the distinct frames, "sizes": their
    sizes, "indices": list (T,) of positions among them}. `num_classes` set: labels must lie in [0, num_classes).
    """

    def __init__(self, num_frames: int, stride: int, num_classes: int | None) -> None:
        self.num_frames, self.stride, self.num_classes = num_frames, stride, num_classes

    def __call__(self, sample: dict, g: torch.Generator) -> dict[str, Any]:
        record, blob, sizes = parse_sample(sample)
        start = random_clip_start(len(sizes), self.num_frames, self.stride, g)
        picked, position = distinct_frames(clip_index_list(len(sizes), self.num_frames, self.stride, start))
        offsets = frame_offsets(sizes)
        return {
            "__key__": sample["__key__"],
            "__url__": sample.get("__url__", ""),
            "label": _label(record, sample["__key__"], self.num_classes),
            "jpgs": b"".join(blob[offsets[i] : offsets[i + 1]] for i in picked),
            "sizes": [sizes[i] for i in picked],
            "indices": position,
        }


def _decode_clip(item: dict) -> torch.Tensor:
    return decode_frames(item["jpgs"], item["sizes"], item["indices"])  # (C, T, H, W)


class TrainItem:
    """ClipBytes output -> {"video": uint8 (C, T, S, S), "label"} through `transform(clip, g)`."""

    def __init__(self, transform: TrainTransform) -> None:
        self.transform = transform

    def __call__(self, item: dict, g: torch.Generator) -> dict[str, Any]:
        return {"video": self.transform(_decode_clip(item), g), "label": item["label"]}


class WeakStrongItem:
    """ClipBytes output -> {"weak", "strong": uint8 (C, T, S, S), "label"} through `transform(clip, g)`."""

    def __init__(self, transform: PairTransform) -> None:
        self.transform = transform

    def __call__(self, item: dict, g: torch.Generator) -> dict[str, Any]:
        weak, strong = self.transform(_decode_clip(item), g)
        return {"weak": weak, "strong": strong, "label": item["label"]}


class EvalItem:
    """Shard sample -> {"video": uint8 (V = clips * crops, C, T, S, S), "label", "key"}.

    View v is clip `v // crops`, crop `v % crops`. Frames shared by overlapping clips are decoded once.
    """

    def __init__(self, num_frames: int, stride: int, clips: int, transform: TestTransform) -> None:
        self.num_frames, self.stride, self.clips, self.transform = num_frames, stride, clips, transform

    def __call__(self, sample: dict, g: torch.Generator) -> dict[str, Any]:
        record, blob, sizes = parse_sample(sample)
        views = eval_views(blob, sizes, self.num_frames, self.stride, self.clips, self.transform)
        return {"video": views, "label": int(record.get("label", -1)), "key": sample["__key__"]}


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    # default_collate stacks straight into shared memory inside a DataLoader worker: no heap copy of
    # every batch (which also fragmented the worker's heap: ~0.5 GB more RSS per worker at 256p).
    return default_collate(tensors)


def collate_train(items: list[dict]) -> dict[str, torch.Tensor]:
    """-> {"video": uint8 (B, C, T, S, S), "label": long (B,)}."""
    return {
        "video": _stack([i["video"] for i in items]),
        "label": torch.tensor([i["label"] for i in items], dtype=torch.long),
    }


def collate_weak_strong(items: list[dict]) -> dict[str, torch.Tensor]:
    """-> {"weak", "strong": uint8 (B, C, T, S, S), "label": long (B,) (-1 when unknown)}."""
    return {
        "weak": _stack([i["weak"] for i in items]),
        "strong": _stack([i["strong"] for i in items]),
        "label": torch.tensor([i["label"] for i in items], dtype=torch.long),
    }


def collate_eval(items: list[dict]) -> dict[str, Any]:
    """-> {"video": uint8 (B, V, C, T, S, S), "label": long (B,), "key": list[str]}."""
    return {
        "video": _stack([i["video"] for i in items]),
        "label": torch.tensor([i["label"] for i in items], dtype=torch.long),
        "key": [i["key"] for i in items],
    }
