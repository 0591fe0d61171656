"""Models in and out of the formats other tools read: Hugging Face `transformers` and ONNX.

    hf.py    transformers TimeSformer directories: `model.hf_init=DIR` in, `export --format hf` out
             (a parameter-name map onto svformer's TimeSformer; the forward is the same network)
    onnx.py  `export --format onnx` (prep settings and class names in the metadata) and
             `OnnxModel`, the onnxruntime session `predict --ckpt model.onnx` scores with

transformers and onnxruntime are imported only when these are used.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def exporter(fmt: str) -> Callable[[str | Path, str | Path, str], Path]:
    """The `export --format` writer: (ckpt, out, which) -> the path written."""
    if fmt == "hf":
        from svformer.interchange.hf_export import export_hf

        return export_hf
    if fmt == "onnx":
        from svformer.interchange.onnx import export_onnx

        return export_onnx
    from svformer.run_dir import export

    return export
