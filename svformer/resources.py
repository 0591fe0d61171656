"""The files that ship beside the code: the YAML configs (usable by name) and the default ds_config.json.

A checkout keeps them at its top level (configs/, ds_config.json); a wheel carries copies of them in
svformer/package_data/ (setup.py puts them there). So `--config svformer_b_ucf101_1pct` and the
default `train.ds_config` work the same from a checkout, an editable install and a plain install.
The bench scripts are not packaged: `checkout_root` says whether they are at hand.
"""

from __future__ import annotations

import logging
from pathlib import Path

from svformer.errors import UserError

log = logging.getLogger(__name__)

PACKAGE_DATA = Path(__file__).resolve().parent / "package_data"
DEFAULT_DS_CONFIG = "ds_config.json"


def checkout_root() -> Path | None:
    """The source checkout this package is imported from, or None when it runs from an install."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "cli.py").is_file() else None


def bundled_root() -> Path:
    """The directory holding configs/ and ds_config.json: the package's copy, else the checkout's top."""
    if PACKAGE_DATA.is_dir():
        return PACKAGE_DATA
    root = checkout_root()
    if root is None:
        raise UserError(f"svformer's configs are missing: neither {PACKAGE_DATA} nor a checkout; reinstall svformer")
    return root


def config_names() -> list[str]:
    """The names `--config NAME` accepts: the shipped configs/*.yaml, without the suffix."""
    return sorted(p.stem for p in (bundled_root() / "configs").glob("*.yaml"))


def resolve_config(value: str | Path) -> Path:
    """`--config VALUE` as a file: an existing file as given, else a shipped config named VALUE.

    A name may carry its `.yaml` suffix (`demo` or `demo.yaml`). Raises UserError naming the value and
    the shipped names when it is neither.
    """
    path = Path(value)
    if path.is_file():
        return path
    text = str(value)
    name = text[: -len(".yaml")] if text.endswith(".yaml") else text
    if name and "/" not in name and "\\" not in name:
        shipped = bundled_root() / "configs" / f"{name}.yaml"
        if shipped.is_file():
            return shipped
    raise UserError(
        f"--config {text}: no such file, nor a shipped config of that name "
        f"(names: {', '.join(config_names())}; e.g. --config demo)"
    )


def resolve_ds_config(value: str | Path) -> Path:
    """`train.ds_config` as a file: as given when it exists; the default name falls back to the shipped file.

    A run started outside a checkout has no ds_config.json in its working directory: it gets the one
    that ships with svformer (logged). Any other missing path is returned unchanged, for the caller's
    one-line error.
    """
    path = Path(value)
    if path.exists() or str(value) != DEFAULT_DS_CONFIG:
        return path
    shipped = bundled_root() / DEFAULT_DS_CONFIG
    log.info("train.ds_config %s is not in %s: using svformer's default %s", value, Path.cwd(), shipped)
    return shipped
