"""Read shard samples without reading whole videos: random access for local shards.

A sample's `KEY.jpgs` holds every frame of the video (about 4 MB for 10 s at 256p), while a clip
needs 8 of them. webdataset's tar reader streams every byte (measured: reading cost more than
JPEG-decoding the clip), so for local (seekable) shards the `TarSamples` stage parses the tar
headers with the standard library's random-access mode, reads `KEY.json` and hands out `KEY.jpgs` as
a `ByteRange` that reads only the byte slices asked for. `pipe:` and remote URLs cannot seek and go
through webdataset's streaming reader (`tarfile_samples`), with the same handler. `read_shard` is
the same reader for tools that want every member's bytes (`cli.py inspect`, tests): this module is
the one tar reader of the project.

A `ByteRange` reads from the shard's open file: it is valid until the stream moves on to the next
shard, so stages must slice what they need (ClipBytes, EvalItem do) before the sample is buffered.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NoReturn

import webdataset as wds
from webdataset.tariterators import base_plus_ext

from svformer.data.clips import SampleError
from svformer.data.sources import is_url

# Members read eagerly (small); everything else is left on disk behind a ByteRange.
EAGER_SUFFIXES = ("json",)
# Compressed tars cannot be read at random offsets: they take webdataset's streaming path.
COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd")


class ByteRange:
    """A read-only `bytes`-like view of `size` bytes at `offset` of an open file: `len()` and slices."""

    def __init__(self, fileobj, offset: int, size: int) -> None:
        self.fileobj, self.offset, self.size = fileobj, offset, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, part: slice) -> bytes:
        start, stop, step = part.indices(self.size)
        if step != 1:
            raise ValueError("ByteRange supports contiguous slices only")
        try:
            self.fileobj.seek(self.offset + start)
            data = self.fileobj.read(max(stop - start, 0))
        except (OSError, ValueError) as err:  # ValueError: the shard was closed (the stream moved on)
            raise SampleError(f"cannot read frame bytes ({err})") from None
        if len(data) != max(stop - start, 0):
            raise SampleError(f"unexpected end of data at byte {self.offset + start} (shard changed on disk?)")
        return data


def local_path(url: str) -> str | None:
    """The file path of a plain local shard (a path or file: URL), else None (pipe:, s3://, http://...)."""
    if url.startswith("file:"):
        return url[5:]
    return None if is_url(url) else url


def _streamed(url: str, handler: Callable[[Exception], bool]) -> Iterator[dict]:
    return wds.tariterators.tarfile_samples([{"url": url}], handler=handler)


def _local_samples(url: str, path: str, handler: Callable[[Exception], bool]) -> Iterator[dict]:
    try:
        with open(path, "rb") as probe:
            compressed = probe.read(4).startswith(COMPRESSED_MAGIC)
        tar = None if compressed else tarfile.open(path, mode="r:")
    except (tarfile.TarError, OSError, EOFError) as exn:
        handler(exn)
        return
    if tar is None:
        yield from _streamed(url, handler)
        return
    with tar:
        end = os.fstat(tar.fileobj.fileno()).st_size
        sample: dict = {}
        try:
            while (info := tar.next()) is not None:
                tar.members = []  # random-access mode keeps every header; a stream needs none
                if not info.isreg():
                    continue
                key, suffix = base_plus_ext(info.name)
                if key is None:
                    continue
                suffix = suffix.lower()
                if sample and (key != sample["__key__"] or suffix in sample):
                    yield sample
                    sample = {}
                if info.offset_data + info.size > end:
                    sample = {}  # a video cut short: dropped with the shard
                    raise tarfile.ReadError(f"unexpected end of data in {info.name} (truncated shard)")
                if not sample:
                    sample = {"__key__": key, "__url__": url}
                if suffix in EAGER_SUFFIXES:
                    tar.fileobj.seek(info.offset_data)
                    sample[suffix] = tar.fileobj.read(info.size)
                else:
                    sample[suffix] = ByteRange(tar.fileobj, info.offset_data, info.size)
            if sample:  # its members are all on disk, whatever follows them
                yield sample
                sample = {}
            # tarfile stops quietly at a truncated header; a complete archive ends with two zero blocks.
            tar.fileobj.seek(tar.offset)
            if tar.fileobj.read(2 * tarfile.BLOCKSIZE).strip(b"\0") or end - tar.offset < 2 * tarfile.BLOCKSIZE:
                raise tarfile.ReadError("no end-of-archive marker (truncated or corrupt shard)")
        except (tarfile.TarError, OSError, EOFError) as exn:
            handler(exn)
        if sample:  # members read before a bad header: parse_sample reports any that are missing
            yield sample


class TarSamples:
    """Stage: {"url"} dicts -> samples {"__key__", "__url__", "json": bytes, "jpgs": ByteRange or bytes}.

    `handler(exn)` is told about every unreadable shard (it records the fault and returns True to go
    on, or raises); the good samples before a fault in a shard are kept.
    """

    def __init__(self, handler: Callable[[Exception], bool]) -> None:
        self.handler = handler

    def __call__(self, src: Iterable[dict]) -> Iterator[dict]:
        for shard in src:
            url = shard["url"]
            if "error" in shard:  # a remote shard that could not be fetched (prefetch.RemoteShards)
                self.handler(shard["error"])
                continue
            path = shard.get("local") or local_path(url)  # a remote shard's downloaded copy, or a local one
            yield from (_streamed(url, self.handler) if path is None else _local_samples(url, path, self.handler))


def _raise(exn: Exception) -> NoReturn:
    raise exn


def read_shard(path: str | Path) -> Iterator[dict]:
    """Every sample of one local shard in tar order, each member's bytes read: {"__key__", "__url__", ext: bytes}.

    Raises:
        tarfile.TarError, OSError: the shard is unreadable, truncated or corrupt (after yielding the
            samples before the fault).
    """
    url = str(path)
    for sample in _local_samples(url, url, _raise):
        yield {name: value[:] if isinstance(value, ByteRange) else value for name, value in sample.items()}
