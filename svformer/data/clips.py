"""Clip index math and frame decoding from one shard sample.

Indices and strides are in *stored* frames: prep caps the frame rate (30 fps by default, 15 on the
demo data), so `data.sampling_rate = 8` spans 8 stored frames whatever the source fps was. A clip of T
frames at stride s covers `(T - 1) * s + 1` stored frames; a video shorter than that repeats its last
frame (as the reference decoder does).

A sample (`KEY.json` + `KEY.jpgs`, see docs/architecture.md) holds every frame as a JPEG; the loader
slices out and decodes only the frames a clip needs, each distinct frame once.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torchvision.io import ImageReadMode, decode_jpeg


class ByteSlicer(Protocol):
    """bytes, or a lazy reader of a shard member (`tarread.ByteRange`): `len()` and `[a:b]` -> bytes."""

    def __len__(self) -> int: ...

    def __getitem__(self, part: slice) -> bytes: ...


class SampleError(ValueError):
    """A shard sample that cannot be used (bad JSON, missing member, undecodable frame); it is skipped."""


def clip_index_list(num_stored: int, num_frames: int, stride: int, start: int) -> list[int]:
    """`clip_indices` as a Python list (the hot path: tensor ops on 8 numbers cost more than the math)."""
    if num_stored < 1:
        raise SampleError("video has no frames")
    last = num_stored - 1
    return [min(max(start + stride * i, 0), last) for i in range(num_frames)]


def clip_indices(num_stored: int, num_frames: int, stride: int, start: int) -> torch.Tensor:
    """Stored-frame indices of one clip: `start, start + stride, ...`, clamped to the last frame.

    Args:
        num_stored: frames stored for the video (>= 1).
        num_frames: T, frames in the clip.
        stride: step between sampled frames, in stored frames.
        start: index of the first frame.
    Returns:
        LongTensor (T,), values in [0, num_stored - 1]; a short video repeats its last frame.
    """
    return torch.tensor(clip_index_list(num_stored, num_frames, stride, start), dtype=torch.long)


def _max_start(num_stored: int, num_frames: int, stride: int) -> int:
    return max(num_stored - ((num_frames - 1) * stride + 1), 0)


def random_clip_start(num_stored: int, num_frames: int, stride: int, g: torch.Generator) -> int:
    """A training clip start, uniform over the starts whose clip fits in the video (0 when none does)."""
    return int(torch.randint(_max_start(num_stored, num_frames, stride) + 1, (1,), generator=g))


def uniform_clip_starts(num_stored: int, num_frames: int, stride: int, clips: int) -> torch.Tensor:
    """Starts of `clips` test clips spread evenly over the video (the paper's 5 temporal views).

    The first clip starts at frame 0 and the last ends at the last frame; one clip is centred.
    Returns:
        LongTensor (clips,).
    """
    last = _max_start(num_stored, num_frames, stride)
    if clips == 1:
        return torch.tensor([last // 2], dtype=torch.long)
    return torch.arange(clips, dtype=torch.long) * last // (clips - 1)


def parse_sample(sample: dict[str, Any]) -> tuple[dict, ByteSlicer, list[int]]:
    """Check one shard sample and return (record, JPEG blob (bytes or a lazy ByteRange), frame sizes).

    Raises:
        SampleError: a missing member, JSON that is not a valid record, sizes that disagree with the blob.
    """
    key = sample.get("__key__", "?")
    for member in ("json", "jpgs"):
        if member not in sample:
            raise SampleError(f"missing member {key}.{member}")
    try:
        record = json.loads(sample["json"])
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SampleError(f"{key}.json is not valid JSON ({err})") from None
    if not isinstance(record, dict):
        raise SampleError(f"{key}.json is not an object")
    sizes = record.get("frame_sizes")
    try:  # min/sum reject what is not a list of numbers without a Python loop per frame
        valid = isinstance(sizes, list) and min(sizes) > 0 and isinstance(sum(sizes), int)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise SampleError(f"{key}.json: frame_sizes must be a non-empty list of positive integers")
    if not isinstance(record.get("label", -1), int):
        raise SampleError(f"{key}.json: label must be an integer")
    blob = sample["jpgs"]
    if sum(sizes) != len(blob):
        raise SampleError(f"{key}.jpgs holds {len(blob)} bytes but frame_sizes sum to {sum(sizes)}")
    return record, blob, sizes


def frame_offsets(sizes: Sequence[int]) -> list[int]:
    """Byte offsets of the frames in a `KEY.jpgs` blob: `cumsum([0] + sizes)` (one more than frames)."""
    return [0, *itertools.accumulate(sizes)]


def distinct_frames(indices: Sequence[int]) -> tuple[list[int], list[int]]:
    """(sorted distinct indices, position of each requested index among them)."""
    distinct = sorted(set(indices))
    where = {frame: i for i, frame in enumerate(distinct)}
    return distinct, [where[frame] for frame in indices]


def decode_frames(
    blob: bytes | ByteSlicer, sizes: Sequence[int], indices: Sequence[int] | torch.Tensor
) -> torch.Tensor:
    """Decode the frames `indices` of a concatenated-JPEG blob, each distinct frame once.

    Args:
        blob: the `KEY.jpgs` bytes, or anything sliceable to bytes (a `tarread.ByteRange` reads only
            the slices taken); frame i is `blob[offset[i]:offset[i] + sizes[i]]`.
        sizes: bytes of each JPEG, in order.
        indices: (T,) stored-frame indices, a list or LongTensor (repeats allowed).
    Returns:
        uint8 (C=3, T, H, W), RGB. A view with channels-last memory (T, H, W, C): decode_jpeg
        produces HWC pixels, and the crop that follows copies far fewer bytes than a transpose here.
    Raises:
        SampleError: an index out of range, an undecodable JPEG, frames of different sizes.
    """
    wanted = indices.tolist() if isinstance(indices, torch.Tensor) else list(indices)
    distinct, position = distinct_frames(wanted)
    if distinct and (distinct[0] < 0 or distinct[-1] >= len(sizes)):
        raise SampleError(f"frame index out of range [0, {len(sizes)})")
    offsets = frame_offsets(sizes)
    # bytearray: torch.frombuffer on read-only bytes warns (and the tensor must not be written).
    data = [torch.frombuffer(bytearray(blob[offsets[i] : offsets[i + 1]]), dtype=torch.uint8) for i in distinct]
    try:
        # The list form decodes the batch in one C++ call (measured ~20% faster than a loop on small frames).
        images = decode_jpeg(data, mode=ImageReadMode.RGB)
    except RuntimeError as err:
        raise SampleError(f"undecodable JPEG frame ({str(err).splitlines()[-1].split(', ')[-1]})") from None
    if any(img.shape != images[0].shape for img in images):
        raise SampleError("frames of different sizes")
    frames = torch.stack([img.permute(1, 2, 0) for img in images])  # (U, H, W, C): HWC views stack as a memcpy
    if position != list(range(len(distinct))):  # repeated or unordered frames
        frames = frames[position]  # (T, H, W, C)
    return frames.permute(3, 0, 1, 2)  # (C, T, H, W)


def eval_views(
    blob: bytes | ByteSlicer,
    sizes: Sequence[int],
    num_frames: int,
    stride: int,
    clips: int,
    transform: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """The multi-view test input of one video: `clips` uniformly spaced clips, each through `transform`.

    The one place views are cut for testing: the eval stream (a shard sample) and predict (a raw video
    decoded as prep does) both call it, so the two give the same logits.

    Args:
        blob, sizes: the video's concatenated JPEG frames and their byte sizes (see `decode_frames`).
        num_frames, stride: T and the stride in stored frames. clips: temporal clips.
        transform: clip uint8 (C, T, H, W) -> (crops, C, T, S, S), e.g. `views.test_views`.
    Returns:
        uint8 (V = clips * crops, C, T, S, S); view v is clip `v // crops`, crop `v % crops`. Frames
        shared by overlapping clips are decoded once.
    """
    starts = uniform_clip_starts(len(sizes), num_frames, stride, clips).tolist()
    index = [i for s in starts for i in clip_index_list(len(sizes), num_frames, stride, s)]
    frames = decode_frames(blob, sizes, index)  # (C, clips * T, H, W)
    per_clip = frames.unflatten(1, (clips, num_frames)).unbind(1)  # clips x (C, T, H, W)
    return torch.cat([transform(clip) for clip in per_clip])  # (clips * crops, C, T, S, S)
