"""Deterministic tar writing: sample members and one shard file (temp name, then renamed).

Headers are POSIX ustar with mtime 0, uid/gid 0, empty uname/gname and mode 0o644, so shard bytes
depend only on the members. The archive ends like Python's tarfile ends it (two zero blocks,
padded to a 10240-byte record), which every tar reader (webdataset included) accepts.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BLOCK = tarfile.BLOCKSIZE  # 512
RECORD = tarfile.RECORDSIZE  # 10240
END_OF_ARCHIVE = 2 * BLOCK


def _padded(size: int, unit: int) -> int:
    return -(-size // unit) * unit


def member(name: str, data: bytes) -> bytes:
    """One tar member (header + data + padding) with fixed metadata."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    header = info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")
    return header + data + b"\0" * (_padded(len(data), BLOCK) - len(data))


def sample_members(record: dict[str, Any], frames: list[bytes]) -> bytes:
    """The `KEY.json` + `KEY.jpgs` member pair of one sample (docs/architecture.md, "Shards")."""
    key = record["key"]
    meta = json.dumps(record, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return member(f"{key}.json", meta) + member(f"{key}.jpgs", b"".join(frames))


def archive_size(payload: int) -> int:
    """Bytes of a finished archive whose members take `payload` bytes."""
    return _padded(payload + END_OF_ARCHIVE, RECORD)


@dataclass(frozen=True)
class ShardInfo:
    """A finished shard as listed in manifest.json."""

    name: str
    samples: int
    bytes: int
    sha256: str


class ShardWriter:
    """Streams members into `<path>.tmp`; `finish()` ends the archive, fsyncs and renames it to `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        self._file: io.BufferedWriter = open(self.tmp, "wb")
        self._sha = hashlib.sha256()
        self.payload = 0
        self.samples = 0

    def add(self, members: bytes) -> None:
        """Append the member bytes of one sample."""
        self._file.write(members)
        self._sha.update(members)
        self.payload += len(members)
        self.samples += 1

    def finish(self) -> ShardInfo:
        """End the archive, make it durable and give it its final name."""
        tail = b"\0" * (archive_size(self.payload) - self.payload)
        self._file.write(tail)
        self._sha.update(tail)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.tmp, self.path)
        return ShardInfo(self.path.name, self.samples, self.payload + len(tail), self._sha.hexdigest())

    def abort(self) -> None:
        """Close and delete the temporary file (used when the run stops with an error)."""
        self._file.close()
        self.tmp.unlink(missing_ok=True)
