"""File names in a prep directory, per-shard sidecars (resume), manifest.json and failures.tsv.

Without `--part`: `shard-000000.tar`, ..., `manifest.json`, `failures.tsv`.
With `--part i/N` (1-based): `shard-pIIofNN-000000.tar`, ..., `manifest-pIIofNN.json` and
`failures-pIIofNN.tsv` in the same directory; the part that finishes last (any order, any machine
sharing the directory) also writes the merged `manifest.json` + `failures.tsv` over all parts.
Each finished shard has a sidecar `<shard>.json` (written atomically after the shard's rename)
with its keys, checksum, the id of the run's inputs and settings, and `next_index`: the position
in the part's entry list where the next shard starts. A rerun trusts a shard only when the tar
matches its sidecar, and resumes at the last trusted sidecar's `next_index`.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from svformer.errors import UserError
from svformer.files import file_sha256, write_atomic
from svformer.lists import Failure

log = logging.getLogger(__name__)
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Naming:
    """The names of one prep run's files (a whole list, or one part of it)."""

    part: tuple[int, int] | None = None
    """(i, N), 1-based, or None for the whole list."""

    @property
    def tag(self) -> str:
        if self.part is None:
            return ""
        i, n = self.part
        width = max(2, len(str(n)))
        return f"p{i:0{width}d}of{n:0{width}d}"

    def shard(self, index: int) -> str:
        return f"shard-{self.tag + '-' if self.tag else ''}{index:06d}.tar"

    @property
    def manifest(self) -> str:
        return f"manifest-{self.tag}.json" if self.tag else "manifest.json"

    @property
    def failures(self) -> str:
        return f"failures-{self.tag}.tsv" if self.tag else "failures.tsv"

    def owns(self, filename: str) -> int | None:
        """The shard index when `filename` is one of this run's shard files (tar, sidecar, temp)."""
        prefix = re.escape(f"shard-{self.tag + '-' if self.tag else ''}")
        match = re.fullmatch(prefix + r"(\d{6})\.tar(\.json)?(\.tmp)?", filename)
        return int(match.group(1)) if match else None


def sidecar_path(shard: Path) -> Path:
    return shard.with_name(shard.name + ".json")


def load_completed(out: Path, naming: Naming, run_id: str) -> list[dict[str, Any]]:
    """Sidecars of the shards a previous run finished, in order, each checked against its tar.

    Stops at the first missing/mismatching shard and deletes this run's files from there on
    (temporary files, shards without a trusted sidecar) so the run rewrites them.
    Raises: UserError when the directory holds shards of another list or other settings.
    """
    done: list[dict[str, Any]] = []
    while True:
        shard = out / naming.shard(len(done))
        side = sidecar_path(shard)
        if not side.is_file():
            break
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            log.warning("%s: unreadable sidecar (%s); redoing from this shard", side, err)
            break
        if meta.get("run_id") != run_id:
            raise UserError(f"{shard}: made from another list or other prep settings; use a new --out or delete {out}")
        if not shard.is_file() or shard.stat().st_size != meta["bytes"] or file_sha256(shard) != meta["sha256"]:
            log.warning("%s does not match its sidecar; redoing from this shard", shard)
            break
        done.append(meta)
    for path in out.iterdir():
        index = naming.owns(path.name)
        if index is not None and (index >= len(done) or path.name.endswith(".tmp")):
            path.unlink()
    # This run's manifest marks completion; it is rewritten at the end (a merged manifest.json of
    # parts stays: it can only be rewritten identically, the run id guards the inputs).
    (out / naming.manifest).unlink(missing_ok=True)
    return done


def failure_rows(failures: list[Failure]) -> list[dict[str, Any]]:
    return [{"line": f.line, "source": f.source, "reason": f.reason} for f in sorted(failures, key=lambda f: f.line)]


def build_manifest(
    sidecars: list[dict[str, Any]],
    failures: list[Failure],
    settings: dict[str, Any],
    num_classes: int | None,
    class_names: list[str] | None = None,
) -> dict[str, Any]:
    """manifest.json's object (docs/architecture.md) from the shard sidecars and all failures.

    `class_names` (label i = name i, from `prep --classes`) is recorded when given; it is not part of
    the run id, so naming the classes never changes a shard's bytes or stops a resume.
    """
    classes: dict[int, int] = {}
    for meta in sidecars:
        for label, count in meta["classes"].items():
            classes[int(label)] = classes.get(int(label), 0) + count
    return {
        "version": MANIFEST_VERSION,
        "shards": [{k: m[k] for k in ("name", "samples", "bytes", "sha256")} for m in sidecars],
        "num_samples": sum(m["samples"] for m in sidecars),
        "num_frames": sum(m["num_frames"] for m in sidecars),
        "classes": {str(label): classes[label] for label in sorted(classes)},
        "num_classes": num_classes,
        **({"class_names": list(class_names)} if class_names is not None else {}),
        "settings": settings,
        "failures": failure_rows(failures),
        "complete": True,
    }


def _tsv_field(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def write_manifest(out: Path, naming: Naming, manifest: dict[str, Any]) -> None:
    """Write the run's manifest and failures.tsv atomically (failures first: the manifest marks completion)."""
    rows = ["line\tsource\treason"] + [
        "\t".join(_tsv_field(r[k]) for k in ("line", "source", "reason")) for r in manifest["failures"]
    ]
    write_atomic(out / naming.failures, "\n".join(rows) + "\n")
    write_atomic(out / naming.manifest, json.dumps(manifest, indent=1) + "\n")


def merge_parts(out: Path, parts: int) -> dict[str, Any] | None:
    """Write manifest.json over all parts when every part's manifest is complete; else None.

    Parts must come from the same list and settings (checked through `settings.list_sha256`).
    """
    manifests = []
    for i in range(1, parts + 1):
        path = out / Naming((i, parts)).manifest
        if not path.is_file():
            return None
        manifests.append(json.loads(path.read_text(encoding="utf-8")))
    # Paths may differ between the machines that ran the parts; the list content and settings may not.
    local = ("part", "list", "data_root")
    ids = {json.dumps({k: v for k, v in m["settings"].items() if k not in local}, sort_keys=True) for m in manifests}
    if len(ids) != 1 or not all(m.get("complete") for m in manifests):
        raise UserError(f"{out}: the {parts} part manifests disagree on list or settings; re-prep into a new --out")
    names = {json.dumps(m.get("class_names")) for m in manifests}
    if len(names) != 1:
        raise UserError(
            f"{out}: the {parts} part manifests name the classes differently (--classes); "
            "rerun the odd parts with the same classes file"
        )
    classes: dict[int, int] = {}
    for m in manifests:
        for label, count in m["classes"].items():
            classes[int(label)] = classes.get(int(label), 0) + count
    settings = dict(manifests[0]["settings"], part=f"1..{parts}/{parts}")
    merged = {
        "version": MANIFEST_VERSION,
        "shards": [s for m in manifests for s in m["shards"]],
        "num_samples": sum(m["num_samples"] for m in manifests),
        "num_frames": sum(m["num_frames"] for m in manifests),
        "classes": {str(label): classes[label] for label in sorted(classes)},
        "num_classes": manifests[0]["num_classes"],
        **({"class_names": manifests[0]["class_names"]} if "class_names" in manifests[0] else {}),
        "settings": settings,
        "failures": sorted((f for m in manifests for f in m["failures"]), key=lambda r: r["line"]),
        "complete": True,
    }
    write_manifest(out, Naming(None), merged)
    return merged
