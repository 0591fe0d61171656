"""The run directory: the one package that writes, finds, verifies, loads and exports checkpoints.

    runs/<name>/config.yaml, metrics.jsonl, tensorboard/, checkpoints/step-NNNNNN/
Modules: `layout` (finding, the index, verifying), `checkpoint` (the collective save, resume, another
process count), `trained` (weights for eval/export/predict, the safetensors export). Nothing outside
this package reads checkpoint files by name.
"""

from svformer.run_dir.checkpoint import Resumed, load, prepare_resume, rng_state, save, saved_world_size, set_rng_state
from svformer.run_dir.layout import (
    INDEX,
    MODEL_FILE,
    STEP_DIR,
    CorruptCheckpoint,
    checkpoint_root,
    clean_partial,
    complete_checkpoints,
    latest_checkpoint,
    step_of,
    verify,
    write_index,
)
from svformer.run_dir.trained import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    TrainedWeights,
    build_trained_model,
    export,
    load_exported,
    load_trained,
    pick_models,
    resolve_checkpoint,
    save_exported,
)

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "INDEX",
    "MODEL_FILE",
    "STEP_DIR",
    "CorruptCheckpoint",
    "Resumed",
    "TrainedWeights",
    "build_trained_model",
    "checkpoint_root",
    "clean_partial",
    "complete_checkpoints",
    "export",
    "latest_checkpoint",
    "load",
    "load_exported",
    "load_trained",
    "pick_models",
    "prepare_resume",
    "resolve_checkpoint",
    "rng_state",
    "save",
    "save_exported",
    "saved_world_size",
    "set_rng_state",
    "step_of",
    "verify",
    "write_index",
]
