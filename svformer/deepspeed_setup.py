"""DeepSpeed set-up: process group, the engine config, the engine, its checkpoint loading, collectives.

`ds_config.json` owns precision, ZeRO and clipping; batch sizes come from the YAML config and are
injected here, in one place. A batch size written in the JSON that disagrees is an error. The loop
owns the accumulation boundary (`managed_gradient_accumulation: false`): micro-steps only run
backward, and one `engine.step()` reduces the gradients and updates the weights.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist

from svformer.config import Config
from svformer.errors import UserError
from svformer.resources import resolve_ds_config

log = logging.getLogger(__name__)

BATCH_KEYS = ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def init_distributed() -> tuple[int, int, torch.device]:
    """Join (or, for a plain `python cli.py train`, create) the process group.

    Returns (rank, world_size, device). Under the deepspeed launcher RANK/WORLD_SIZE/MASTER_* are
    set; without it we make a one-process group so the same code path runs.
    """
    import deepspeed

    if "RANK" not in os.environ:
        os.environ.update(
            RANK="0",
            LOCAL_RANK="0",
            WORLD_SIZE="1",
            LOCAL_WORLD_SIZE="1",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(_free_port()),
        )
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        deepspeed.init_distributed(dist_backend=backend, verbose=False)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    return dist.get_rank(), dist.get_world_size(), device


def engine_config(cfg: Config, world_size: int, load_universal: bool = False) -> dict:
    """Read `train.ds_config`, apply `train.precision`, inject the batch sizes.

    load_universal: the run resumes from a universal checkpoint (saved with another process count).
    """
    path = resolve_ds_config(cfg.train.ds_config)
    try:
        ds = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"DeepSpeed config {path} does not exist (train.ds_config)") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
    wanted = {
        "train_micro_batch_size_per_gpu": cfg.data.batch_size,
        "gradient_accumulation_steps": cfg.train.grad_accum,
        "train_batch_size": cfg.data.batch_size * cfg.train.grad_accum * world_size,
    }
    for key in BATCH_KEYS:
        if key in ds and ds[key] != "auto" and ds[key] != wanted[key]:
            raise UserError(
                f"{path}: {key}={ds[key]} disagrees with the YAML config ({wanted[key]}); "
                f"remove it from {path.name}, batch sizes come from data.batch_size and train.grad_accum"
            )
    ds.update(wanted)
    precision = cfg.train.precision
    if precision:
        ds["torch_autocast"] = {"enabled": precision == "bf16", "dtype": "bfloat16"}
        ds["bf16"] = {"enabled": False}
        ds.setdefault("fp16", {})["enabled"] = precision == "fp16"
    if ds.get("fp16", {}).get("enabled") and not torch.cuda.is_available():
        raise UserError(f"{path}: fp16 needs a GPU; use bf16 or fp32 on CPU (--set train.precision=bf16)")
    if not precision and not torch.cuda.is_available() and not cpu_has_native_bf16() and _wants_bf16(ds):
        # emulated bf16 matmuls run ~10x slower than float32 on such CPUs (bench/model.py)
        log.warning(
            "this CPU has no native bf16 (avx512_bf16/amx): training in float32 (--set train.precision=bf16 forces it)"
        )
        ds["torch_autocast"] = {"enabled": False}
        ds["bf16"] = {"enabled": False}
    ds.setdefault("zero_allow_untested_optimizer", True)
    ds.setdefault("steps_per_print", 10**9)
    # The loop calls engine.step() once per optimizer step, after its micro-steps' backward passes.
    ds["managed_gradient_accumulation"] = False
    if load_universal:
        ds.setdefault("checkpoint", {})["load_universal"] = True
    return ds


def cpu_has_native_bf16() -> bool:
    """True when /proc/cpuinfo lists avx512_bf16 or amx_bf16 (bf16 matmuls in hardware)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in text or "amx_bf16" in text


def _wants_bf16(ds: dict) -> bool:
    autocast = ds.get("torch_autocast", {})
    return bool(ds.get("bf16", {}).get("enabled")) or (
        bool(autocast.get("enabled")) and autocast.get("dtype", "bfloat16") in ("bfloat16", "bf16")
    )


def precision_name(ds: dict) -> str:
    """The precision an engine config selects, for logs."""
    if ds.get("fp16", {}).get("enabled"):
        return "fp16"
    if ds.get("bf16", {}).get("enabled"):
        return "bf16 (weights)"
    if ds.get("torch_autocast", {}).get("enabled"):
        return f"autocast {ds['torch_autocast'].get('dtype', 'bfloat16')}"
    return "fp32"


def initialize(model: torch.nn.Module, optimizer, scheduler, ds: dict):
    """Wrap model/optimizer/scheduler in a DeepSpeed engine; returns (engine, scheduler)."""
    import deepspeed

    engine, _, _, engine_scheduler = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds
    )
    return engine, engine_scheduler


def autocast_context(ds: dict, device: torch.device) -> Callable[[], ContextManager]:
    """A factory of the engine's autocast context (bf16 when ds_config's torch_autocast is on, else none),
    for forwards that run outside the engine, such as the EMA teacher's."""
    autocast = ds.get("torch_autocast", {})
    if not autocast.get("enabled"):
        return nullcontext
    dtype = torch.float16 if autocast.get("dtype") in ("float16", "fp16") else torch.bfloat16
    return lambda: torch.autocast(device.type, dtype=dtype)


def all_sum(values: list[float] | torch.Tensor, device: torch.device) -> list[float]:
    """Element-wise sum over ranks of a list of floats (or a 1-D tensor already on `device`): one
    all-reduce and one read back to the host."""
    tensor = values if isinstance(values, torch.Tensor) else torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor)
    return tensor.tolist()


def load_engine_checkpoint(engine, ckpt: Path, saved_world_size: int) -> None:
    """Restore student, optimizer and scheduler from a checkpoint directory written by `save_checkpoint`.

    A checkpoint written by another number of processes holds ZeRO optimizer partitions of another
    shape; it is loaded through DeepSpeed's universal checkpoint (see `universal_dir`).
    """
    if saved_world_size == _world_size():
        engine.load_checkpoint(str(ckpt.parent), tag=ckpt.name, load_module_strict=True)
        return
    universal = universal_dir(ckpt)
    engine.load_checkpoint(str(universal.parent), tag=universal.name, load_module_strict=True)


def _world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def universal_dir(ckpt: Path) -> Path:
    """Where the universal (world-size free) form of `ckpt` lives: a sibling `<tag>.universal` directory."""
    return ckpt.with_name(ckpt.name + ".universal")
