"""Pipeline stages shared by the streams: per-worker seeds, fault accounting, splitting, batching.

Each stage is a callable `stage(iterator) -> iterator` (webdataset's convention), so a stream reads as
a list of stages. Stages that need the worker's identity (seeds, splits) look it up when iteration
starts, i.e. inside the DataLoader worker process, not when the pipeline is built.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import lzma
import random
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import webdataset as wds

from svformer.data.clips import SampleError

log = logging.getLogger("svformer.data")

# Stop a resampled (infinite) stream after this many faults in a row without one good sample: every
# shard is broken, and looping forever would hang the run without a word.
MAX_FAULT_STREAK = 1000
# Errors that mean "this shard's bytes are bad"; anything else is a bug and propagates.
TAR_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError, ValueError, KeyError)
# Keep at most this many (url, key, reason) records; the counts stay exact.
MAX_EVENTS = 1000


def worker_info() -> tuple[int, int]:
    """(worker id, number of workers) of the current DataLoader worker; (0, 1) in-process."""
    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any printable parts; stable across processes (unlike `hash` of a str)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class StreamSeeds:
    """Seeds of one stream on one rank: every (rank, worker, resume point, purpose) gets its own.

    `start_step` is the optimizer step the run (re)starts at, so a resumed run draws a fresh order
    instead of replaying the samples it saw before the crash.
    """

    def __init__(self, seed: int, rank: int, start_step: int, stream: str) -> None:
        self.parts = (seed, rank, start_step, stream)

    def for_worker(self, purpose: str) -> int:
        return derive_seed(*self.parts, worker_info()[0], purpose)

    def __call__(self) -> int:
        # ResampledShards' worker_seed hook: the shard order of this rank and worker.
        return self.for_worker("shards") & 0x7FFFFFFF


def _reason(exn: Exception) -> str:
    """One line for a shard fault; webdataset appends the stream and URL to `args`, which we drop."""
    if isinstance(exn, OSError) and exn.strerror:
        message = exn.strerror
    else:
        message = str(exn.args[0]) if exn.args else ""
    return f"{type(exn).__name__}: {message.split(' @ ')[0]}"


class StreamStats:
    """Skipped shards and samples of one pipeline copy (one per worker process).

    Events are `(url, key, reason)`; `key` is "" for a shard-level fault. New events wait in `pending`
    until the batching stage hands them over with the next batch (`Delivery.skipped`), which is how
    counts from worker processes reach the `Stream` object in the main process.
    """

    def __init__(self, fault_streak_limit: int | None = None) -> None:
        self.pending: list[tuple[str, str, str]] = []
        self.current_url = ""
        self.report_shard_faults = True
        self._visit = 0
        self._faulted_visit = -1
        self._warned: set[str] = set()
        self._streak = 0
        self._streak_limit = fault_streak_limit

    def track_shards(self, src: Iterable[dict]) -> Iterator[dict]:
        """Stage before the tar reader: remember which shard is open, for fault reports."""
        for shard in src:
            self.current_url = shard["url"]
            self._visit += 1
            yield shard

    def tar_error(self, exn: Exception) -> bool:
        """webdataset handler for unreadable shards: record once per shard visit, keep going."""
        if not isinstance(exn, TAR_ERRORS):
            raise exn
        if self._faulted_visit != self._visit:  # one shard can raise several times (member, then header)
            self._faulted_visit = self._visit
            self.skip(self.current_url, "", _reason(exn), shard=True)
        return True

    def skip(self, url: str, key: str, reason: str, shard: bool = False) -> None:
        """Record one skipped sample (or shard, key ""); warn once per shard per worker."""
        if shard and not self.report_shard_faults:
            return
        self.pending.append((url, key, reason))
        if url not in self._warned:
            self._warned.add(url)
            log.warning(
                "skipping corrupt %s in %s%s: %s",
                "shard" if shard else "sample",
                url,
                f" (key {key})" if key else "",
                reason,
            )
        else:
            log.debug("skipping %s key %s: %s", url, key, reason)
        self._streak += 1
        if self._streak_limit is not None and self._streak >= self._streak_limit:
            raise RuntimeError(
                f"{self._streak} corrupt shards/samples in a row and no good sample "
                f"(last: {url} {key} {reason}); check the shards with `python cli.py inspect`"
            )

    def ok(self) -> None:
        """A good sample came through: the fault streak is over."""
        self._streak = 0

    def drain(self) -> list[tuple[str, str, str]]:
        events, self.pending = self.pending, []
        return events


class DecodeSamples:
    """Stage: raw sample -> item via `make_item(sample, g)`; bad samples are skipped and recorded.

    `g` is a CPU torch.Generator seeded per worker and `purpose` (clip starts, augmentations); with
    `seeds` None (evaluation) it is seeded 0.
    """

    def __init__(
        self,
        make_item: Callable[[dict, torch.Generator], dict],
        stats: StreamStats,
        seeds: StreamSeeds | None,
        purpose: str,
    ) -> None:
        self.make_item, self.stats, self.seeds, self.purpose = make_item, stats, seeds, purpose

    def __call__(self, src: Iterable[dict]) -> Iterator[dict]:
        g = torch.Generator()
        g.manual_seed(self.seeds.for_worker(self.purpose) if self.seeds else 0)
        for sample in src:
            try:
                item = self.make_item(sample, g)
            except SampleError as err:
                self.stats.skip(sample.get("__url__", self.stats.current_url), sample.get("__key__", "?"), str(err))
                continue
            self.stats.ok()
            yield item


class SeededShuffle:
    """Stage: webdataset's buffer shuffle with a per-worker seed (drawn when iteration starts)."""

    def __init__(self, bufsize: int, seeds: StreamSeeds) -> None:
        self.bufsize, self.seeds = bufsize, seeds

    def __call__(self, src: Iterable[dict]) -> Iterator[dict]:
        if self.bufsize <= 1:
            return iter(src)
        rng = random.Random(self.seeds.for_worker("shuffle"))
        return wds.shuffle(self.bufsize, min(self.bufsize, 100), rng=rng)(src)


class SplitShards:
    """Stage on the shard list: slot `rank * workers + worker` of `world_size * workers` takes every
    slots-th shard (each shard read by exactly one worker of one rank)."""

    def __init__(self, rank: int, world_size: int) -> None:
        self.rank, self.world_size = rank, world_size

    def __call__(self, src: Iterable[dict]) -> Iterator[dict]:
        worker, workers = worker_info()
        return itertools.islice(src, self.rank * workers + worker, None, self.world_size * workers)


class SplitSamples:
    """Stage on samples when there are fewer shards than slots: every worker of every rank reads all
    shards in the same order and keeps sample i when `i % slots == slot` (so each sample is decoded
    by exactly one worker); stops after `max_videos` samples when given. Shard faults are reported by
    slot 0 only, since every slot sees them."""

    def __init__(self, rank: int, world_size: int, stats: StreamStats, max_videos: int | None) -> None:
        self.rank, self.world_size, self.stats, self.max_videos = rank, world_size, stats, max_videos

    def __call__(self, src: Iterable[dict]) -> Iterator[dict]:
        worker, workers = worker_info()
        slot, slots = self.rank * workers + worker, self.world_size * workers
        self.stats.report_shard_faults = slot == 0
        for i, sample in enumerate(src):
            if self.max_videos is not None and i >= self.max_videos:
                return
            if i % slots == slot:
                yield sample


def identity(batch: Any) -> Any:
    """DataLoader collate_fn for pipelines that batch themselves (picklable, unlike a lambda)."""
    return batch


Fault = tuple[str, str, str]
"""(url, key, reason) of one skipped sample; key "" marks a whole shard."""


@dataclass
class Delivery:
    """What the batching stage hands the `Stream` (across worker processes): a batch, or None after
    the last one, and the faults seen since the previous delivery."""

    batch: dict | None
    skipped: list[Fault] = field(default_factory=list)


class Batch:
    """Stage: items -> `Delivery`s of batches of `size` via `collate`, each with the faults seen since
    the last one. A partial last batch is kept when `partial`; faults after the last batch come out
    in a final `Delivery(None, faults)`."""

    def __init__(self, size: int, collate: Callable[[list[dict]], dict], stats: StreamStats, partial: bool) -> None:
        self.size, self.collate, self.stats, self.partial = size, collate, stats, partial

    def __call__(self, src: Iterable[dict]) -> Iterator[Delivery]:
        items: list[dict] = []
        for item in src:
            items.append(item)
            if len(items) == self.size:
                yield Delivery(self.collate(items), self.stats.drain())
                items = []
        if items and self.partial:
            yield Delivery(self.collate(items), self.stats.drain())
        if self.stats.pending:
            yield Delivery(None, self.stats.drain())
