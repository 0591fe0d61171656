"""The three streams: labeled and unlabeled training (infinite, resampled) and evaluation (each video once).

Each is a webdataset pipeline written as explicit stages (shard list -> tar samples -> clip bytes ->
[shuffle] -> decode + views -> batches) and run by a torch DataLoader
(`wds.WebLoader`) with `data.workers` worker processes (0: in-process), wrapped in a `Stream` that
collects fault counts in the calling process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import webdataset as wds

from svformer.config import Config, parse_views
from svformer.data import samples
from svformer.data.prefetch import RemoteShards
from svformer.data.sources import shard_urls
from svformer.data.stages import (
    MAX_EVENTS,
    MAX_FAULT_STREAK,
    Batch,
    DecodeSamples,
    Fault,
    SeededShuffle,
    SplitSamples,
    SplitShards,
    StreamSeeds,
    StreamStats,
    identity,
)
from svformer.data.tarread import TarSamples
from svformer.errors import UserError
from svformer.preemption import ignore_stop_signals

log = logging.getLogger("svformer.data")


class Stream:
    """An iterable of batch dicts, plus `stats()`: the shards and samples it skipped.

    Worker processes hand over `Delivery`s (a batch and the faults their worker saw); this wrapper
    unpacks them, so every fault of every worker is counted here, in the process that iterates.
    """

    def __init__(self, loader: Any, name: str) -> None:
        self.loader = loader
        self.name = name
        self._events: list[Fault] = []
        self._counts = {"shards": 0, "samples": 0}

    def __iter__(self) -> Iterator[dict]:
        for delivery in self.loader:
            for url, key, reason in delivery.skipped:
                self._counts["shards" if key == "" else "samples"] += 1
                if len(self._events) < MAX_EVENTS:
                    self._events.append((url, key, reason))
            if delivery.batch is not None:
                yield delivery.batch

    def stats(self) -> dict[str, Any]:
        """{"skipped": total, "shards": shard faults, "samples": sample faults, "events": [(url, key, reason)]}
        (key "" for a shard fault; at most MAX_EVENTS events are kept, the counts are exact)."""
        return {"skipped": sum(self._counts.values()), **self._counts, "events": list(self._events)}


def _web_loader(pipeline: wds.DataPipeline, workers: int, persistent: bool) -> wds.WebLoader:
    # The pipeline batches itself (batch_size=None); identity collate keeps the fault lists as they are.
    return wds.WebLoader(
        pipeline,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        collate_fn=identity,
        persistent_workers=persistent and workers > 0,
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=ignore_stop_signals,  # a job-wide SIGTERM must reach the rank, not kill its workers
    )


def _training_stream(
    cfg: Config,
    name: str,
    spec: str,
    rank: int,
    seed: int | None,
    start_step: int,
    batch_size: int,
    make_clip: samples.ClipBytes,
    make_item: Callable,
    collate: Callable,
) -> Stream:
    urls = shard_urls(spec)
    seed = cfg.train.seed if seed is None else seed
    seeds = StreamSeeds(seed, rank, start_step, name)
    stats = StreamStats(fault_streak_limit=MAX_FAULT_STREAK)
    pipeline = wds.DataPipeline(
        # Infinite: each (rank, worker, resume point) draws its own shard order with replacement, so
        # ranks never share an order and any number of shards feeds any number of workers.
        wds.ResampledShards(urls, seed=seed, worker_seed=seeds, deterministic=True),
        RemoteShards(cfg.data.prefetch_shards),  # s3://, http(s):// shards: downloaded ahead, in parallel
        stats.track_shards,
        TarSamples(stats.tar_error),  # local shards: headers + JSON only; frames read when sliced
        DecodeSamples(make_clip, stats, seeds, "clips"),  # random clip start; only its JPEG bytes kept
        SeededShuffle(cfg.data.shuffle_buffer, seeds),
        DecodeSamples(make_item, stats, seeds, "augment"),  # decode T frames, augment
        Batch(batch_size, collate, stats, partial=False),
    )
    loader = _web_loader(pipeline, cfg.data.workers, persistent=True)
    return Stream(loader, name)


def labeled_loader(
    cfg: Config,
    rank: int = 0,
    seed: int | None = None,
    start_step: int = 0,
    transform: samples.TrainTransform | None = None,
) -> Stream:
    """Infinite labeled training stream of `data.labeled`.

    Args:
        cfg: data.* sets clip length/stride, crop, batch size, workers, shuffle buffer;
            model.num_classes bounds the labels (a sample outside is skipped and counted).
        rank: this process's rank; the shard order depends on it (every rank resamples all shards, so
            the number of ranks does not change what a rank reads, and needs no argument).
        seed: default train.seed. start_step: the step a (resumed) run starts at; part of the seed.
        transform: `(clip uint8 (C, T, H, W), g) -> uint8 (C, T, S, S)`; default `views.train_view`.
    Yields:
        {"video": uint8 (B, C, T, S, S), "label": long (B,)}, B = data.batch_size.
    """
    make_item = samples.TrainItem(transform or samples.TrainView(cfg.data))
    make_clip = samples.ClipBytes(cfg.data.num_frames, cfg.data.sampling_rate, cfg.model.num_classes)
    return _training_stream(
        cfg,
        "labeled",
        cfg.data.labeled,
        rank,
        seed,
        start_step,
        cfg.data.batch_size,
        make_clip,
        make_item,
        samples.collate_train,
    )


def unlabeled_loader(
    cfg: Config,
    rank: int = 0,
    seed: int | None = None,
    start_step: int = 0,
    transform: samples.PairTransform | None = None,
) -> Stream:
    """Infinite unlabeled training stream of `data.unlabeled` (labels, if any, for monitoring only).

    transform: `(clip, g) -> (weak, strong)`; default `views.weak_strong_views` with cfg.ssl.
    Yields:
        {"weak", "strong": uint8 (B, C, T, S, S), "label": long (B,) (-1 when unknown)},
        B = data.batch_size * data.unlabeled_ratio.
    """
    batch_size = cfg.data.batch_size * cfg.data.unlabeled_ratio
    if batch_size < 1:
        raise UserError("data.unlabeled_ratio is 0: there is no unlabeled batch to load (set train.method=supervised)")
    make_item = samples.WeakStrongItem(transform or samples.WeakStrongViews(cfg.data, cfg.ssl))
    make_clip = samples.ClipBytes(cfg.data.num_frames, cfg.data.sampling_rate, None)
    return _training_stream(
        cfg,
        "unlabeled",
        cfg.data.unlabeled,
        rank,
        seed,
        start_step,
        batch_size,
        make_clip,
        make_item,
        samples.collate_weak_strong,
    )


def eval_loader(
    spec: str | Sequence[str] | None,
    cfg: Config,
    views: tuple[int, int] | str = (1, 1),
    rank: int = 0,
    world_size: int = 1,
    batch_size: int | None = None,
    max_videos: int | None = None,
    transform: samples.TestTransform | None = None,
    workers: int | None = None,
) -> Stream:
    """Every video of `spec` (default data.val) exactly once across ranks, as multi-view batches.

    Splitting: with at least `world_size * workers` shards, slot `rank * workers + worker` reads every
    slots-th shard. With fewer shards (or `max_videos`), shard splitting would leave slots empty, so
    every slot reads all shards and keeps sample i when `i % slots == slot` (only its own samples
    are decoded). `max_videos` keeps the first that many videos in shard order (quick validation).

    Args:
        views: (clips, crops) or "CxS": C uniformly spaced clips x S crops (1 or 3) per video.
        batch_size: videos per batch, default eval.batch_size; the last partial batch is kept.
        transform: `clip (C, T, H, W) -> (crops, C, T, S, S)`; default `views.test_views`.
        workers: default data.workers.
    Yields:
        {"video": uint8 (B, V = clips * crops, C, T, S, S), view v = clip v // crops, crop v % crops;
         "label": long (B,); "key": list[str]}.
    """
    clips, crops = parse_views(views if isinstance(views, str) else "{}x{}".format(*views))
    urls = shard_urls(cfg.data.val if spec is None else spec)
    workers = cfg.data.workers if workers is None else workers
    batch_size = batch_size or cfg.eval.batch_size
    stats = StreamStats()
    by_shard = max_videos is None and len(urls) >= world_size * max(workers, 1)
    transform = transform or samples.TestViews(cfg.data.test_short_side, cfg.data.img_size, crops)
    pipeline = wds.DataPipeline(
        wds.SimpleShardList(urls),
        *([SplitShards(rank, world_size)] if by_shard else []),
        RemoteShards(cfg.data.prefetch_shards),
        stats.track_shards,
        TarSamples(stats.tar_error),
        *([] if by_shard else [SplitSamples(rank, world_size, stats, max_videos)]),
        DecodeSamples(
            samples.EvalItem(cfg.data.num_frames, cfg.data.sampling_rate, clips, transform), stats, None, "eval"
        ),
        Batch(batch_size, samples.collate_eval, stats, partial=True),
    )
    loader = _web_loader(pipeline, workers, persistent=False)
    log.debug(
        "eval stream: %d shards, %s split, rank %d/%d", len(urls), "shard" if by_shard else "sample", rank, world_size
    )
    return Stream(loader, "eval")


def video_loader(
    cfg: Config,
    spec: str | Sequence[str],
    rank: int = 0,
    seed: int | None = None,
    start_step: int = 0,
    name: str = "videos",
) -> Stream:
    """Infinite single-view training stream of any shards, labels ignored (masked-video pretraining).

    Args:
        spec: shard spec(s) as `shard_urls` takes them; several are mixed in proportion to their shard counts.
        name: the stream's name, part of its seed (two streams of one run draw different orders).
        The rest as `labeled_loader`; the view is `views.train_view` with data.* crop, scale jitter and flip.
    Yields:
        {"video": uint8 (B, C, T, S, S), "label": long (B,) (-1 when unknown; not for training)},
        B = data.batch_size.
    """
    make_item = samples.TrainItem(samples.TrainView(cfg.data))
    make_clip = samples.ClipBytes(cfg.data.num_frames, cfg.data.sampling_rate, None)
    return _training_stream(
        cfg, name, spec, rank, seed, start_step, cfg.data.batch_size, make_clip, make_item, samples.collate_train
    )
