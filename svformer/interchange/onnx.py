"""`export --format onnx`, and `OnnxModel`: the onnxruntime session `predict --ckpt model.onnx` scores with.

The graph maps normalised views, float32 (B, C, T, S, S) with a dynamic batch axis, to logits
(B, K). It comes from torch's `torch.export`-based exporter (`dynamo=True`; the attention's
`scaled_dot_product_attention` and the einops rearranges trace to plain MatMul/Softmax/Reshape),
opset `OPSET`. What `predict` needs beside the graph rides in the model's `metadata_props`:
the run's config (frames, sizes, mean/std, how views combine), the prep settings its shards were
decoded with and the class names; so a deployment needs the decoding code and onnxruntime, not
the training stack or torch weights.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from svformer.config import Config, from_dict, to_dict
from svformer.errors import UserError
from svformer.interchange.source import ExportSource, load_export_source
from svformer.run_dir import TrainedWeights

log = logging.getLogger(__name__)

OPSET = 20
FORMAT = "svformer-onnx"
VERSION = "1"
INPUT, OUTPUT = "video", "logits"


def _metadata(source: ExportSource) -> dict[str, str]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": source.which,
        "step": str(source.step),
        "config": json.dumps(to_dict(source.config)),
        "prep": json.dumps(source.prep),
        "class_names": json.dumps(source.class_names),
        "input": f"{INPUT}: float32 (batch, C, T, S, S), frames on [0, 1] normalised with data.mean/std",
    }


def export_onnx(ckpt: str | Path, out: str | Path, which: str = "teacher") -> Path:
    """Write the `which` model of a run/checkpoint/export as one ONNX file (dynamic batch), atomically.

    Raises:
        UserError: nothing usable at `ckpt`, or `out` cannot be written.
    """
    import onnx

    out = Path(out)
    source = load_export_source(ckpt, which)
    model = source.model
    c, t, s = model.patch_embed.proj.in_channels, model.time_embed.shape[1], model.grid_size[0] * model.patch_size
    example = torch.zeros(2, c, t, s, s)  # batch 2: a batch of 1 would let the tracer specialise the axis
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        input_names=[INPUT],
        output_names=[OUTPUT],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        opset_version=OPSET,
        verbose=False,
    )
    proto = program.model_proto
    proto.producer_name, proto.doc_string = "svformer", f"svformer TimeSformer ({source.which}, step {source.step})"
    for key, value in _metadata(source).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    try:
        onnx.save(proto, str(tmp))
        os.replace(tmp, out)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise UserError(f"could not write {out} ({err.strerror or err})") from None
    log.info("exported %s (step %d) as ONNX opset %d to %s", source.which, source.step, OPSET, out)
    return out


class OnnxModel:
    """An exported ONNX TimeSformer on onnxruntime's CPU provider, called like the torch model.

    Args:
        path: a file written by `export_onnx`.
        threads: intra-op threads; default torch's thread count, so both backends get the same cores.
    Raises:
        UserError: not a readable ONNX file, or not one svformer wrote.
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"--ckpt {self.path} does not exist")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3  # errors only: onnxruntime's warnings are not the user's to act on
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except (ort_errors.Fail, ort_errors.InvalidProtobuf, ort_errors.InvalidArgument, ort_errors.NoSuchFile) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"{self.path} is not a readable ONNX model ({first[:200]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("format") != FORMAT:
            raise UserError(f"{self.path} is not an svformer ONNX export; make one with `export --format onnx`")
        if meta.get("version") != VERSION:
            raise UserError(f"{self.path}: svformer ONNX version {meta.get('version')!r} is not supported")
        try:
            self.config: Config = from_dict(json.loads(meta["config"]))
            self.data = {"prep": json.loads(meta["prep"]), "class_names": json.loads(meta["class_names"])}
            self.which, self.step = meta["model"], int(meta["step"])
        except (KeyError, ValueError) as err:
            raise UserError(f"{self.path}: corrupt svformer ONNX metadata ({err})") from None

    def trained_weights(self) -> TrainedWeights:
        """What the file records, as `load_trained` gives it for a checkpoint (no tensors: the graph holds them)."""
        return TrainedWeights(self.config, self.step, {self.which: {}}, self.path, self.data)

    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        """Normalised views float (B, C, T, S, S) -> logits float32 (B, K), on the CPU."""
        array = video.detach().to("cpu", torch.float32).contiguous().numpy()
        (logits,) = self.session.run([OUTPUT], {INPUT: array})
        return torch.from_numpy(logits)
