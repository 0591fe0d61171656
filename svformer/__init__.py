"""svformer: semi-supervised video action recognition (SVFormer, CVPR 2023).

The top-level names are imported lazily so that `import svformer.errors` (the CLI's first import)
stays cheap; submodules (`from svformer import ssl`) import as usual.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "build_model": "svformer.model",
    "TimeSformer": "svformer.model",
    "load_official": "svformer.weight_import",
    "load_imagenet_vit": "svformer.weight_import",
    "save_exported": "svformer.run_dir",
    "load_exported": "svformer.run_dir",
    "Predictor": "svformer.predict",
}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'svformer' has no attribute {name!r}")
