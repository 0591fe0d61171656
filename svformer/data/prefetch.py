"""Read remote shards ahead, in parallel, so that a slow or distant server does not stall the stream.

`RemoteShards(ahead)` is a pipeline stage placed before the tar reader: while the reader works on one
shard, threads download the next `ahead` remote shards (s3://, http(s)://) of the shard order to a
private temporary directory (under $TMPDIR), each through `storage.download` with its retries. The
reader then takes the local copy's fast path (random access, only the clip's bytes read;
tarread.py). Local shards pass straight through.

Bounds, per pipeline copy (one per DataLoader worker and stream; `ahead` is data.prefetch_shards):
at most `ahead` downloads in flight or waiting, plus the shard being read, are on disk, i.e.
(ahead + 1) x shard size (prep's --shard-size, 1 GB by default), and nothing is held in memory. A
copy is deleted as soon as the reader asks for the next shard, the directory when the stream ends. A shard that still cannot be fetched is handed
on as {"url", "error"}: the tar reader reports it to the fault handler, which skips and counts it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from svformer import storage

log = logging.getLogger("svformer.data")

PREFETCH_SHARDS = 2
"""Remote shards downloaded ahead of the one being read (per worker and stream): data.prefetch_shards."""


def _fetch(url: str, dest: Path) -> Path | storage.RemoteError:
    try:
        storage.download(url, dest)
    except storage.RemoteError as err:
        return err
    return dest


class RemoteShards:
    """Stage: {"url"} dicts -> the same in order, remote ones with "local" (a downloaded copy) or "error"."""

    def __init__(self, ahead: int = PREFETCH_SHARDS) -> None:
        self.ahead = max(1, ahead)

    def __call__(self, src: Iterable[dict]) -> Iterator[dict]:
        shards = iter(src)
        tmp: Path | None = None  # made at the first remote shard: local lists need neither disk nor threads
        pool = ThreadPoolExecutor(max_workers=self.ahead, thread_name_prefix="shard-fetch")
        window: deque[tuple[dict, Future | None]] = deque()
        count = 0

        def submit(shard: dict | None) -> None:
            nonlocal count, tmp
            if shard is None:
                return
            url = shard["url"]
            if not storage.is_remote(url):
                window.append((shard, None))
                return
            tmp = tmp or Path(tempfile.mkdtemp(prefix="svformer-shards-"))
            count += 1
            dest = tmp / f"{count:08d}-{storage.basename(url)}"
            window.append((shard, pool.submit(_fetch, url, dest)))

        try:
            for _ in range(self.ahead):
                submit(next(shards, None))
            while window:
                shard, future = window.popleft()
                submit(next(shards, None))  # keeps `ahead` downloads going while this shard is read
                if future is None:
                    yield shard
                    continue
                result = future.result()
                if isinstance(result, storage.RemoteError):
                    log.debug("%s: %s", shard["url"], result.strerror)
                    yield dict(shard, error=result)
                    continue
                try:
                    yield dict(shard, local=str(result))
                finally:
                    result.unlink(missing_ok=True)  # the reader has moved on: disk stays bounded
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
