"""Object storage and web servers as homes for shards: read, list, stat, download and upload by URL.

`s3://bucket/key` and `http(s)://host/path` go through fsspec (s3fs for S3, aiohttp for HTTP); no
client is written here. S3 is configured the standard AWS way: `AWS_ENDPOINT_URL` (or
`AWS_ENDPOINT_URL_S3`) for MinIO, Ceph and other S3-compatible stores, `AWS_ACCESS_KEY_ID` /
`AWS_SECRET_ACCESS_KEY` / `AWS_PROFILE` / `~/.aws/credentials` and `AWS_DEFAULT_REGION` /
`~/.aws/config`. s3fs leaves `endpoint_url` unset unless told, and botocore (>= 1.31) then resolves it
from that environment and config file itself (checked against a moto server in tests/test_remote.py),
so nothing here reads those variables.

Every call is retried with exponential backoff, except for answers that cannot change on a retry
(no such object, no permission); what still fails is a `RemoteError` (an `OSError`, so the streams
count it as a broken shard) whose message names the URL and the server's reason.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

REMOTE_SCHEMES = ("s3", "http", "https")
ATTEMPTS = 3  # per call; botocore retries connection errors inside each attempt as well
BACKOFF_S = 0.5  # the wait before retry k is BACKOFF_S * 2**k
_REMOTE = re.compile(r"^(s3|https?)://", re.IGNORECASE)
SHA256_KEY = "sha256"  # S3 object metadata (x-amz-meta-sha256) that `upload` writes


class RemoteError(OSError):
    """A URL that could not be read or written after retries; `strerror` is the one-line reason."""

    def __init__(self, url: str, reason: str, missing: bool = False) -> None:
        super().__init__(reason)
        self.strerror = reason
        self.url = url
        self.missing = missing  # the server answered "no such object": the others may still be there

    def __str__(self) -> str:
        return f"{self.url}: {self.strerror}"


def is_remote(url: str | os.PathLike) -> bool:
    """True for s3:// and http(s):// URLs (read through fsspec), False for paths, file: and pipe:."""
    return bool(_REMOTE.match(str(url)))


def join(base: str, name: str) -> str:
    """`base/name` for a directory URL (with or without its trailing slash)."""
    return base.rstrip("/") + "/" + name


def basename(url: str) -> str:
    """The last path component of a URL (a shard's file name)."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path within it) for a remote URL. Listings are never cached: another process
    (prep, a user deleting a shard) may change the bucket at any time."""
    import fsspec.core

    return fsspec.core.url_to_fs(url, use_listings_cache=False)


def _root_cause(err: BaseException) -> BaseException:
    # fsspec's HTTP stat turns every failure into FileNotFoundError(url); the real one is its cause.
    seen = 0
    while err.__cause__ is not None and seen < 5:
        err, seen = err.__cause__, seen + 1
    return err


def _status(err: BaseException) -> int | None:
    status = getattr(err, "status", None)
    if isinstance(status, int):
        return status
    response = getattr(err, "response", None)  # botocore ClientError
    if isinstance(response, dict):
        return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None


def reason(err: BaseException) -> str:
    """One line for a failed call: the server's answer or the connection error, without the traceback."""
    root = _root_cause(err)
    status = _status(root)
    text = getattr(root, "message", None) or str(root) or type(root).__name__
    if isinstance(root, OSError) and root.strerror and not isinstance(root, RemoteError):
        text = root.strerror
    text = " ".join(str(text).split())
    if status is not None and str(status) not in text:
        text = f"HTTP {status} {text}"
    return f"{type(root).__name__}: {text}" if status is None and "Error" in type(root).__name__ else text


def is_missing(err: BaseException) -> bool:
    """The server said: no such object (404, NoSuchKey). Not a reason to give up on the others."""
    root = _root_cause(err)
    if _status(root) == 404 or (isinstance(root, FileNotFoundError) and root is err):
        return "bucket does not exist" not in str(root).lower()
    return False


def _final(err: BaseException) -> bool:
    """Answers a retry cannot change: missing objects, permission, other 4xx (except timeouts/throttling)."""
    root = _root_cause(err)
    status = _status(root)
    if status is not None:
        return 400 <= status < 500 and status not in (408, 429)
    return any(isinstance(e, (FileNotFoundError, PermissionError)) for e in (root, err))


def retrying(url: str, what: str, call: Callable[[], T], attempts: int = ATTEMPTS) -> T:
    """`call()` with up to `attempts` tries and exponential backoff; then `RemoteError(url, reason)`."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as err:  # every client raises its own types (botocore, aiohttp, OSError)
            if attempt + 1 == attempts or _final(err):
                raise RemoteError(url, f"cannot {what} ({reason(err)})", missing=is_missing(err)) from None
            wait = BACKOFF_S * 2**attempt
            log.info("%s: %s failed (%s); retrying in %.1f s", url, what, reason(err), wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


def read_bytes(url: str) -> bytes:
    """The whole object at `url` (a manifest: small)."""
    fs, path = filesystem(url)
    return retrying(url, "read", lambda: fs.cat_file(path))


def stat(url: str) -> dict[str, Any]:
    """{"size": bytes or None, "sha256": from upload's S3 metadata or None}; RemoteError when missing."""
    fs, path = filesystem(url)
    info = retrying(url, "stat", lambda: fs.info(path))
    if info.get("type") == "directory":
        raise RemoteError(url, "is a directory, not a file", missing=True)
    sha = None
    if fs.protocol[0] in ("s3", "s3a"):
        meta = retrying(url, "stat", lambda: fs.metadata(path))
        sha = meta.get(SHA256_KEY)
    return {"size": info.get("size"), "sha256": sha}


def exists(url: str) -> bool:
    """True when the object exists; False when the server says it does not; RemoteError otherwise."""
    try:
        stat(url)
    except RemoteError as err:
        if err.missing:
            return False
        raise
    return True


def list_names(directory: str) -> list[str]:
    """File names directly under a directory URL (S3 prefix listing; HTTP: the links of its index page)."""
    fs, path = filesystem(directory)
    entries = retrying(directory, "list", lambda: fs.ls(path.rstrip("/") + "/", detail=True))
    names = {basename(str(e["name"])) for e in entries if e.get("type") != "directory"}
    return sorted(n for n in names if n)


def download(url: str, dest: Path) -> None:
    """Copy the object at `url` to the local file `dest`, through `dest.part` and a rename."""
    fs, path = filesystem(url)
    part = dest.with_name(dest.name + ".part")
    try:
        retrying(url, "download", lambda: fs.get_file(path, str(part)))
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)


def upload(local: Path, url: str, sha256: str | None = None) -> None:
    """Put the local file at `url` (S3 only), with its SHA-256 in the object's metadata.

    A PUT (or a completed multipart upload) is atomic: readers see the old object or the whole new one.
    """
    fs, path = filesystem(url)
    extra = {"Metadata": {SHA256_KEY: sha256}} if sha256 else {}
    retrying(url, "upload", lambda: fs.put_file(str(local), path, **extra))


def delete(url: str) -> None:
    """Remove the object at `url`; a missing one is fine."""
    fs, path = filesystem(url)
    try:
        retrying(url, "delete", lambda: fs.rm_file(path))
    except RemoteError as err:
        if not err.missing:
            raise


PROBES = 4  # shards stat'ed at most when the first ones are missing (spread over the list)


def probe(urls: list[str], spec: str) -> None:
    """Fail at once, in one line, when a spec's remote shards cannot be read at all.

    Stats the first remote shard; when the server says it is missing, a few more spread over the list
    (a deleted shard is skipped and counted by the streams, a missing bucket or prefix is not). Any
    other failure (no server, no permission, no such bucket) is the one line at once.

    Raises:
        UserError: naming the URL and the reason.
    """
    from svformer.errors import UserError

    remote = [u for u in urls if is_remote(u)]
    if not remote:
        return
    picks = sorted({remote[i * (len(remote) - 1) // max(PROBES - 1, 1)] for i in range(min(PROBES, len(remote)))})
    picks = [remote[0]] + [u for u in picks if u != remote[0]]
    for url in picks:
        try:
            stat(url)
            return
        except RemoteError as err:
            if not err.missing:
                raise UserError(f"{url}: {err.strerror}; check the URL, AWS_ENDPOINT_URL and credentials") from None
    raise UserError(
        f"{spec}: no such shards: none of the {len(picks)} of its {len(remote)} shard(s) checked exist "
        f"(first: {remote[0]}); check the URL"
    )
