"""Models in and out of the formats other tools read: Hugging Face `transformers` and ONNX.

    hf.py    transformers TimeSformer directories: `model.hf_init=DIR` in, `export --format hf` out
             (a parameter-name map onto svformer's TimeSformer; the forward is the same network)
    onnx.py  `export --format onnx` (prep settings and class names in the metadata) and
             `OnnxModel`, the onnxruntime session `predict --ckpt model.onnx` scores with

transformers and onnxruntime are imported only when these are used.
"""
