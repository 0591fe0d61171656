"""What a run's shards were made with: the prep settings and the class names (from their manifests).

Every checkpoint and export records `data_info` (run_dir writes it as `data.json`), so that `predict`
decodes a raw video exactly as its training shards were made and names the classes; reports name
the rows of their confusion matrix with `class_names`.
"""

from __future__ import annotations

from pathlib import Path

from svformer.config import Config
from svformer.data.sources import is_prep_dir, read_manifest
from svformer.errors import UserError
from svformer.lists import read_class_names


def class_names(cfg: Config) -> list[str]:
    """Names from a `classes.txt` in a shard directory, its prep data root or beside its list
    (as `synth` writes one); else the label numbers."""
    candidates = []
    for directory in (Path(cfg.data.val), Path(cfg.data.labeled)):
        candidates.append(directory / "classes.txt")
        if (directory / "manifest.json").exists():
            settings = read_manifest(directory).get("settings", {})
            for key in ("data_root", "list"):
                if settings.get(key):
                    base = Path(settings[key])
                    candidates += [base / "classes.txt", base.parent / "classes.txt"]
    for names_file in candidates:
        if names_file.is_file():
            try:
                return read_class_names(names_file, cfg.model.num_classes)
            except UserError:  # a classes file for another set of classes: look further
                continue
    return [str(i) for i in range(cfg.model.num_classes)]


def data_info(cfg: Config) -> dict:
    """The prep settings and class names of the run's shards: {"prep": {"short_side", "fps", "quality"}
    or {}, "class_names": [...] or None}, recorded in every checkpoint and export."""
    prep: dict = {}
    names = None
    for spec in (cfg.data.labeled, cfg.data.val, cfg.data.unlabeled):
        if not is_prep_dir(spec):  # a local or remote (s3://, http://) prep directory
            continue
        try:
            manifest = read_manifest(spec)
        except UserError:
            continue
        settings = manifest.get("settings", {})
        if not prep and "short_side" in settings:
            prep = {k: settings[k] for k in ("short_side", "fps", "quality") if k in settings}
        if names is None and isinstance(manifest.get("class_names"), list):
            names = manifest["class_names"]
    if names is None:
        found = class_names(cfg)
        names = None if found == [str(i) for i in range(cfg.model.num_classes)] else found
    return {"prep": prep, "class_names": names}
