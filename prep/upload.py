"""`prep --out s3://bucket/prefix`: prep into a local staging directory and keep the result in object storage.

Each shard is written locally (under $TMPDIR), uploaded as soon as it is finished, with its SHA-256
in the object's metadata (`x-amz-meta-sha256`, see svformer/storage.py), then its sidecar
`<shard>.json`; the local copy is deleted, so the staging directory holds one shard at a time. At
the end failures.tsv, then the manifest (last: it marks the output complete) are uploaded; the
parts of `--part i/N` land side by side under the prefix, and the part that finds every part
manifest there writes the merged manifest.json, as on a shared disk (prep/manifest.py).

A PUT is atomic (readers see no object or the whole one), so nothing that looks complete is ever
half-uploaded. A rerun trusts a shard when its sidecar names this run's inputs and settings and the
object has the sidecar's size and SHA-256; it resumes after the last trusted shard, and uploads a
file only when the object differs, so rerunning a finished prep uploads nothing.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from prep.manifest import Naming, merge_parts, sidecar_path
from svformer import storage
from svformer.errors import UserError
from svformer.files import file_sha256

log = logging.getLogger(__name__)


class Uploader:
    """Uploads one prep run's files to `out` (an s3:// prefix) and counts what it sent."""

    def __init__(self, out: str) -> None:
        if not out.lower().startswith("s3://"):
            raise UserError(f"--out {out}: prep writes to a local directory or s3://bucket/prefix (http is read-only)")
        self.out = out.rstrip("/")
        self.uploaded = 0
        self.kept = 0

    def url(self, name: str) -> str:
        return storage.join(self.out, name)

    def _fail(self, err: storage.RemoteError) -> UserError:
        return UserError(f"{err}; check --out, AWS_ENDPOINT_URL and credentials")

    def put(self, local: Path, sha256: str | None = None) -> None:
        """Upload `local` as `<out>/<name>` unless the object there already has its size and SHA-256."""
        sha256 = sha256 or file_sha256(local)
        url = self.url(local.name)
        try:
            if storage.exists(url):
                there = storage.stat(url)
                if there["size"] == local.stat().st_size and there["sha256"] == sha256:
                    self.kept += 1
                    return
            storage.upload(local, url, sha256)
        except storage.RemoteError as err:
            raise self._fail(err) from None
        self.uploaded += 1
        log.info("uploaded %s", url)

    def shard_done(self, shard: Path, meta: dict[str, Any]) -> None:
        """Roller hook: the shard, then its sidecar (the sidecar makes a rerun trust the shard)."""
        self.put(shard, meta["sha256"])
        self.put(sidecar_path(shard))
        shard.unlink()  # staging holds one shard at a time

    def completed(self, staging: Path, naming: Naming, run_id: str) -> list[dict[str, Any]]:
        """The sidecars of the shards already in object storage, in order, each checked against its object."""
        done: list[dict[str, Any]] = []
        while True:
            name = naming.shard(len(done))
            try:
                text = storage.read_bytes(self.url(name) + ".json")
            except storage.RemoteError as err:
                if err.missing:
                    break
                raise self._fail(err) from None
            try:
                meta = json.loads(text)
            except ValueError:
                log.warning("%s.json: unreadable sidecar; redoing from this shard", self.url(name))
                break
            if meta.get("run_id") != run_id:
                raise UserError(
                    f"{self.url(name)}: made from another list or other prep settings; use a new --out or delete it"
                )
            try:
                there = storage.stat(self.url(name))
            except storage.RemoteError as err:
                if not err.missing:
                    raise self._fail(err) from None
                there = {}
            if there.get("size") != meta["bytes"] or there.get("sha256") != meta["sha256"]:
                log.warning("%s does not match its sidecar; redoing from this shard", self.url(name))
                break
            done.append(meta)
        return done

    def finish(self, staging: Path, naming: Naming, parts: int | None) -> None:
        """failures.tsv, then the manifest; with parts, the merged manifest once every part is there."""
        for name in (naming.failures, naming.manifest):
            if (staging / name).is_file():
                self.put(staging / name)
        if parts is None:
            return
        for i in range(1, parts + 1):
            other = Naming((i, parts)).manifest
            if not (staging / other).is_file():
                try:
                    storage.download(self.url(other), staging / other)
                except storage.RemoteError as err:
                    if err.missing:
                        return  # that part is not done yet: its run merges
                    raise self._fail(err) from None
        if merge_parts(staging, parts) is not None:
            self.put(staging / Naming(None).failures)
            self.put(staging / Naming(None).manifest)
            log.info("%s: all %d parts complete; wrote the merged manifest.json", self.out, parts)


def prep_to_storage(list_path: str | Path, out: str, settings: Any, **kwargs: Any) -> dict[str, Any]:
    """`prep.shards.prep_list` into object storage (`out`: s3://bucket/prefix); same arguments and result."""
    from prep.shards import prep_list

    uploader = Uploader(out)
    root = Path(tempfile.mkdtemp(prefix="svformer-prep-"))
    staging = root / storage.basename(uploader.out)
    part = kwargs.get("part")
    naming = Naming(part)
    try:
        try:
            manifest = prep_list(
                list_path, staging, settings, completed=uploader.completed, on_shard=uploader.shard_done, **kwargs
            )
        except UserError as err:
            if (staging / naming.manifest).is_file():  # too many failures: the manifest is still the record
                uploader.finish(staging, naming, None if part is None else part[1])
            raise UserError(str(err).replace(str(staging), uploader.out)) from None
        uploader.finish(staging, naming, None if part is None else part[1])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    log.info("%s: %d file(s) uploaded, %d already there", uploader.out, uploader.uploaded, uploader.kept)
    return manifest
