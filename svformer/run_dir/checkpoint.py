"""Saving and resuming a training run: the collective save, the load, resuming on another process count.

A checkpoint is written under `.tmp` by every rank; rank 0 writes the index last and renames it: a
crash or a full disk while saving leaves the previous checkpoint the newest complete one. Files:
    mp_rank_00_model_states.pt, *optim_states.pt   student, optimizer, scheduler (DeepSpeed's own files)
    method.pt        the training method's shared state (e.g. the EMA teacher)
    rng-rank{r}.pt   every RNG rank r draws from (the method's generator too)
    state.pt         step, world size, epoch
    data.json        the shards' prep settings and class names (predict decodes raw videos with them)
    config.yaml      the resolved config
    index.json       every file above with its size and sha256, written last
A checkpoint saved by N processes resumes with M through DeepSpeed's universal checkpoint format,
converted once into a sibling `step-NNNNNN.universal/` directory.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from svformer.config import Config, save_config
from svformer.deepspeed_setup import load_engine_checkpoint, universal_dir
from svformer.errors import UserError, load_error_detail
from svformer.files import write_atomic
from svformer.run_dir.layout import INDEX, checkpoint_root, complete_checkpoints, latest_checkpoint, write_index

log = logging.getLogger("svformer.run_dir")


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def _barrier() -> None:
    if _world() > 1:
        dist.barrier()


def _all_ok(ok: bool) -> bool:
    """True when `ok` holds on every rank (CPU all-reduce: this runs only when saving)."""
    flag = torch.tensor([0.0 if ok else 1.0])
    if _world() > 1:
        dist.all_reduce(flag.to(_collective_device()))
    return float(flag.sum()) == 0.0


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def rng_state(generator: torch.Generator | None) -> dict:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "generator": generator.get_state() if generator is not None else None,
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict, generator: torch.Generator | None) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if generator is not None and state.get("generator") is not None:
        generator.set_state(state["generator"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(engine, method, cfg: Config, step: int, extra: dict, data_info: dict) -> Path:
    """Collective: every rank calls it. Returns the final checkpoint directory.

    Raises UserError (on every rank) when a rank could not write its files (a full disk, a file-size
    limit): the partial checkpoint is removed and the previous one stays the newest.
    """
    root = checkpoint_root(cfg.output_dir)
    tag = f"step-{step:06d}"
    tmp = root / (tag + ".tmp")
    rank = _rank()
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    _barrier()
    error = None
    try:
        engine.save_checkpoint(str(root), tag=tmp.name, save_latest=False)
        torch.save(rng_state(method.generator), tmp / f"rng-rank{rank}.pt")
        if rank == 0:
            torch.save(method.state_dict(), tmp / "method.pt")
            save_config(cfg, tmp / "config.yaml")
            write_atomic(tmp / "data.json", json.dumps(data_info, indent=1) + "\n")
            torch.save({"step": step, "world_size": _world(), **extra}, tmp / "state.pt")
    except (OSError, RuntimeError) as err:  # ENOSPC, EFBIG (ulimit -f), EDQUOT; torch.save's zip writer
        error = err  # reports a short write as RuntimeError. Every rank learns of it below.
    if _all_ok(error is None) and rank == 0:
        try:
            write_index(tmp)
        except OSError as err:
            error = err
    if not _all_ok(error is None):
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        previous = latest_checkpoint(cfg.output_dir)
        why = f" ({_first_line(error)})" if error is not None else " (on another rank)"
        raise UserError(
            f"could not write checkpoint {tag}{why}; no space left or a file-size limit? "
            f"The previous checkpoint {previous or '(none)'} is intact: free space and rerun to resume"
        )
    final = root / tag
    if rank == 0:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)  # the commit point
        for old in complete_checkpoints(cfg.output_dir)[: -cfg.train.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
            shutil.rmtree(universal_dir(old), ignore_errors=True)
    _barrier()
    return final


def _first_line(err: Exception) -> str:
    """A short reason: an OSError's strerror, else the last line of the message, else the type's name."""
    lines = str(err).strip().splitlines()
    return (getattr(err, "strerror", None) or (lines[-1] if lines else type(err).__name__))[:160]


@dataclass
class Resumed:
    """What `load` restored beside the engine: the step, the saved world size and extras."""

    step: int
    world_size: int
    extra: dict = field(default_factory=dict)


def saved_world_size(ckpt: Path) -> int:
    """The number of processes a checkpoint was written by."""
    return int(torch.load(ckpt / "state.pt", weights_only=True)["world_size"])


def load(engine, method, ckpt: Path) -> Resumed:
    """Restore engine (student, optimizer, scheduler), the method's state and this rank's RNG from `ckpt`."""
    rank = _rank()
    saved_world = saved_world_size(ckpt)
    try:
        load_engine_checkpoint(engine, ckpt, saved_world)
    except RuntimeError as err:
        raise UserError(
            f"{ckpt}: checkpoint does not fit this model ({load_error_detail(err)}); "
            "use another train.output_dir or the config it was trained with"
        ) from None
    state = torch.load(ckpt / "state.pt", weights_only=True)
    method_file = ckpt / "method.pt"
    if method_file.exists():
        method.load_state_dict(torch.load(method_file, map_location="cpu", weights_only=True))
    rng_file = ckpt / f"rng-rank{rank}.pt"
    if rng_file.exists() and saved_world == _world():
        set_rng_state(torch.load(rng_file, weights_only=False), method.generator)
    elif rank == 0:
        log.warning(
            "%s was written by %d process(es), this run has %d: every rank starts fresh random draws "
            "(model, optimizer and schedule state are restored exactly)",
            ckpt,
            saved_world,
            _world(),
        )
    step = int(state["step"])
    return Resumed(step, saved_world, {k: v for k, v in state.items() if k not in ("step", "world_size")})


def prepare_resume(ckpt: Path, world_size: int) -> bool:
    """Collective. True when `ckpt` was written by another number of processes: then rank 0 converts it
    once into DeepSpeed's universal checkpoint format (`deepspeed_setup.universal_dir`, beside it),
    every rank waits, and the engine must be built with `load_universal`."""
    saved = saved_world_size(ckpt)
    if saved == world_size:
        return False
    target = universal_dir(ckpt)
    if _rank() == 0 and not (target / INDEX).exists():
        log.warning(
            "%s was saved by %d process(es), this run has %d: converting it to a universal checkpoint in %s",
            ckpt,
            saved,
            world_size,
            target,
        )
        _convert_to_universal(ckpt, target)
    _barrier()
    return True


def _convert_to_universal(ckpt: Path, target: Path) -> None:
    """DeepSpeed's ds_to_universal on one checkpoint, written under .tmp and renamed when complete."""
    # deepspeed imports in seconds: only a resume on another process count needs its converter.
    from deepspeed.checkpoint import ds_to_universal

    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    args = argparse.Namespace(
        input_folder=str(ckpt),
        output_folder=str(tmp),
        num_extract_workers=1,
        num_merge_workers=1,
        keep_temp_folder=False,
        strict=True,
        inject_missing_state=True,
    )
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints every step
        ds_to_universal.main(args)
    (ckpt.parent / "latest_universal").unlink(missing_ok=True)  # its pointer to the .tmp name; we load by tag
    write_index(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
