"""Where shards are: prep directories (their manifests), brace patterns, URL lists, `pipe:` commands.

`shard_urls` turns what a user writes in `data.labeled` / `data.unlabeled` / `data.val` into the list
of webdataset URLs the streams read. A shard that a manifest lists but that is missing on disk is
kept (with a warning): the stream skips and counts it like any other broken shard, so one lost file
on a shared filesystem never stops a run. A spec that yields no shard at all is a `UserError`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import braceexpand

from svformer import storage
from svformer.errors import UserError

log = logging.getLogger(__name__)

# Anything with a scheme (`pipe:`, `s3://`, `http://`, `file:`) is handed to webdataset's gopen as is.
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(?!\\)")


def is_url(item: str) -> bool:
    """True for `scheme:...` (pipe:, s3://, http://, file:), False for a local path."""
    # A Windows drive letter (C:\...) is a path, not a scheme; `file:` is treated as a URL too.
    return bool(_URL_SCHEME.match(item)) and not re.match(r"^[A-Za-z]:[\\/]", item)


def _read_json(path: Path | str) -> dict:
    try:
        data = json.loads(storage.read_bytes(path) if storage.is_remote(path) else Path(path).read_text())
    except OSError as err:
        raise UserError(f"{path}: cannot read the manifest ({err.strerror or err})") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON (line {err.lineno}); rerun prep to rewrite it") from None
    if not isinstance(data, dict) or not isinstance(data.get("shards", []), list):
        raise UserError(f"{path}: not a prep manifest (expected an object with a 'shards' list)")
    return data


def read_manifest(directory: str | Path) -> dict:
    """The manifest of a prep output directory (see docs/architecture.md, "Shards").

    `manifest.json` when present; otherwise the part manifests that `prep --part i/N` may write
    (`manifest*.json`), merged: shards concatenated in file-name order, sample/frame totals and class
    histograms summed, failures concatenated, `complete` only when every part is complete.

    Raises:
        UserError: the directory or its manifest is missing or unreadable.
    """
    if storage.is_remote(directory):
        parts = _remote_manifests(str(directory))
    else:
        directory = Path(directory)
        if not directory.is_dir():
            raise UserError(
                f"shard directory {directory} does not exist; run `python cli.py prep --out {directory}` first"
            )
        main = directory / "manifest.json"
        parts = [main] if main.is_file() else sorted(directory.glob("manifest*.json"))
    if not parts:
        raise UserError(f"{directory}: no manifest.json; is this a prep output directory?")
    manifests = [_read_json(p) for p in parts]
    if len(manifests) == 1:
        return manifests[0]
    merged: dict = {
        "version": manifests[0].get("version", 1),
        "shards": [],
        "num_samples": 0,
        "num_frames": 0,
        "classes": {},
        "num_classes": manifests[0].get("num_classes"),
        "settings": manifests[0].get("settings", {}),
        "failures": [],
        "complete": True,
    }
    for m in manifests:
        merged["shards"] += m.get("shards", [])
        merged["num_samples"] += int(m.get("num_samples", 0))
        merged["num_frames"] += int(m.get("num_frames", 0))
        for label, count in (m.get("classes") or {}).items():
            merged["classes"][label] = merged["classes"].get(label, 0) + int(count)
        merged["failures"] += m.get("failures", [])
        merged["complete"] = merged["complete"] and bool(m.get("complete", False))
    return merged


def _directory_urls(directory: Path) -> list[str]:
    """The shards of a prep directory: those its manifest(s) list, else every complete `*.tar`."""
    has_manifest = any(directory.glob("manifest*.json"))
    if has_manifest:
        manifest = read_manifest(directory)
        if not manifest.get("complete", True):
            log.warning("%s: manifest says prep did not complete; reading the shards it lists", directory)
        names = [s["name"] if isinstance(s, dict) else str(s) for s in manifest.get("shards", [])]
        paths = [directory / name for name in names]
        missing = [p for p in paths if not p.is_file()]
        if paths and len(missing) == len(paths):
            raise UserError(
                f"{directory}: none of the {len(paths)} shards in its manifest exist (first: {missing[0].name})"
            )
        for p in missing:
            log.warning("%s: listed in the manifest but missing; the stream will skip it", p)
    else:
        # Prep writes under a temporary name and renames when complete: dot-files and *.tmp are partial.
        paths = sorted(p for p in directory.glob("*.tar") if not p.name.startswith("."))
    if not paths:
        raise UserError(f"{directory}: no shards (*.tar); run `python cli.py prep --out {directory}`")
    return [str(p) for p in paths]


def is_prep_dir(spec: str | Path) -> bool:
    """True for a local directory, and for a remote URL that names a directory (prep's output) rather
    than shards: no brace pattern, no `.tar`/`.tgz` ending."""
    text = str(spec).strip()
    if storage.is_remote(text):
        return not re.search(r"[{},\s]|\.(tar|tgz|tar\.gz)$", text)
    return Path(text).expanduser().is_dir()


def _remote_names(directory: str) -> list[str]:
    """The file names a remote directory lists (S3: its prefix; HTTP: the links of its index page)."""
    try:
        return storage.list_names(directory)
    except storage.RemoteError as err:
        raise UserError(f"{err}; check the URL, AWS_ENDPOINT_URL and credentials") from None


def _remote_manifests(directory: str) -> list[str]:
    """The manifest URL(s) of a remote prep directory: manifest.json, else its listed part manifests
    (`manifest*.json`); [] when there is none."""
    main = storage.join(directory, "manifest.json")
    try:
        if storage.exists(main):
            return [main]
    except storage.RemoteError as err:
        raise UserError(f"{err}; check the URL, AWS_ENDPOINT_URL and credentials") from None
    return [storage.join(directory, n) for n in _remote_names(directory) if re.fullmatch(r"manifest.*\.json", n)]


def _remote_directory_urls(directory: str) -> list[str]:
    """The shards of a remote prep directory: those its manifest(s) list, else every listed `*.tar`.
    Missing ones are found by the probe and the streams (one stat per shard would be slow)."""
    if _remote_manifests(directory):
        manifest = read_manifest(directory)
        names = [s["name"] if isinstance(s, dict) else str(s) for s in manifest.get("shards", [])]
    else:
        names = [n for n in _remote_names(directory) if n.endswith(".tar") and not n.startswith(".")]
    if not names:
        raise UserError(f"{directory}: no shards (*.tar) there; run `python cli.py prep --out {directory}`")
    return [storage.join(directory, n) for n in names]


def _expand_item(item: str) -> list[str]:
    """One spec item: a directory, a URL, a (brace pattern of) local file(s); missing files are kept."""
    if storage.is_remote(item):
        return _remote_directory_urls(item) if is_prep_dir(item) else list(braceexpand.braceexpand(item))
    path = Path(item).expanduser()
    if path.is_dir():
        return _directory_urls(path)
    if is_url(item):
        return list(braceexpand.braceexpand(item))
    return [str(Path(p).expanduser()) for p in braceexpand.braceexpand(item)]


def _split_spec(spec: str) -> list[str]:
    """Split a comma/space-separated list, keeping `pipe:` commands (which contain spaces) whole."""
    items: list[str] = []
    for chunk in spec.split(","):
        chunk = chunk.strip()
        if not chunk:
            continue
        if chunk.startswith("pipe:") or Path(chunk).expanduser().exists():
            items.append(chunk)
        else:
            items.extend(chunk.split())
    return items


def shard_urls(spec: str | Path | Sequence[str | Path]) -> list[str]:
    """Resolve a shard spec to webdataset URLs, in a stable order.

    Args:
        spec: a prep output directory (its manifest's shards, or every `*.tar` when there is no
            manifest), a brace pattern (`/x/shard-{000000..000009}.tar`), a comma/space-separated list
            of any of these, `pipe:` commands / `s3://`-style URLs (passed through), or a list of them.
    Returns:
        The shard URLs (local paths as strings).
    Raises:
        UserError: an empty spec, a missing directory, or a pattern that matches no shard.
    """
    items = [str(s) for s in spec] if isinstance(spec, (list, tuple)) else _split_spec(str(spec))
    if not items:
        raise UserError("no shards given (empty shard spec); set data.labeled/data.unlabeled/data.val")
    urls: list[str] = []
    for item in items:
        urls.extend(_expand_item(item))
    local = [u for u in urls if not is_url(u)]
    missing = [u for u in local if not Path(u).is_file()]
    if local and len(missing) == len(urls):
        raise UserError(
            f"{spec}: no such shard directory or shard file"
            if len(items) == 1 and len(urls) == 1
            else f"{spec}: none of the {len(urls)} shards it names exist (first: {missing[0]})"
        )
    for url in missing:
        log.warning("%s: no such shard; the stream will skip it", url)
    storage.probe(urls, str(spec))  # no server, bucket or permission: one line now, not 1000 faults later
    return urls
