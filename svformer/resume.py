"""Training checkpoints: atomic save, keep-last-K, find the newest complete one, resume.

Layout of a run directory:
    runs/<name>/checkpoints/step-000100/       a complete checkpoint (DeepSpeed tag directory)
        mp_rank_00_model_states.pt, *optim_states.pt   student, optimizer, scheduler (DeepSpeed)
        teacher.pt                               float32 EMA teacher state dict (when SSL started)
        rng-rank{r}.pt                           every RNG this rank draws from
        config.yaml                              the resolved config
    runs/<name>/checkpoints/step-000200.tmp/   being written; never read
A checkpoint is written under `.tmp`, every rank finishes, then rank 0 renames it: a crash while
saving leaves the previous checkpoint the newest complete one.
"""
from __future__ import annotations

import logging
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from svformer.config import Config, save_config
from svformer.errors import UserError

log = logging.getLogger(__name__)
STEP_DIR = re.compile(r"^step-(\d{6,})$")


def checkpoint_root(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint directories of a run, oldest first."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and STEP_DIR.match(p.name) and (p / "state.pt").exists()]
    return sorted(found, key=lambda p: int(STEP_DIR.match(p.name).group(1)))


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    found = complete_checkpoints(run_dir)
    return found[-1] if found else None


def _barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def rng_state(generator: torch.Generator) -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "generator": generator.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    generator.set_state(state["generator"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(engine, teacher, cfg: Config, step: int, generator: torch.Generator, extra: dict) -> Path:
    """Collective: every rank calls it. Returns the final checkpoint directory."""
    root = checkpoint_root(cfg.output_dir)
    tag = f"step-{step:06d}"
    tmp_tag = tag + ".tmp"
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank == 0:
        shutil.rmtree(root / tmp_tag, ignore_errors=True)
    _barrier()
    engine.save_checkpoint(str(root), tag=tmp_tag, save_latest=False)
    tmp = root / tmp_tag
    torch.save(rng_state(generator), tmp / f"rng-rank{rank}.pt")
    if rank == 0:
        if teacher is not None:
            torch.save(teacher.state_dict(), tmp / "teacher.pt")
        save_config(cfg, tmp / "config.yaml")
        torch.save({"step": step, **extra}, tmp / "state.pt")
    _barrier()
    final = root / tag
    if rank == 0:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)  # the commit point
        for old in complete_checkpoints(cfg.output_dir)[:-cfg.train.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return final


def load(engine, ckpt: Path, generator: torch.Generator) -> tuple[dict, dict | None]:
    """Restore engine (student, optimizer, scheduler) and this rank's RNG from `ckpt`.

    Returns (state dict with "step" and extras, teacher state dict or None).
    """
    rank = dist.get_rank() if dist.is_initialized() else 0
    try:
        engine.load_checkpoint(str(ckpt.parent), tag=ckpt.name, load_module_strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise UserError(f"{ckpt}: checkpoint does not fit this model ({first[1].strip() if len(first) > 1 else first[0]}); "
                        "use another train.output_dir or the config it was trained with") from None
    state = torch.load(ckpt / "state.pt", weights_only=False)
    rng_file = ckpt / f"rng-rank{rank}.pt"
    if rng_file.exists():
        set_rng_state(torch.load(rng_file, weights_only=False), generator)
    else:
        log.warning("%s has no RNG state for rank %d (world size changed?); continuing with fresh RNG", ckpt, rank)
    teacher_file = ckpt / "teacher.pt"
    teacher = torch.load(teacher_file, weights_only=True) if teacher_file.exists() else None
    return state, teacher


def clean_partial(run_dir: Path) -> None:
    """Remove `.tmp` checkpoints left by a crash (rank 0 only, before training starts)."""
    root = checkpoint_root(run_dir)
    if root.is_dir():
        for partial in root.glob("*.tmp"):
            log.warning("removing incomplete checkpoint %s", partial)
            shutil.rmtree(partial, ignore_errors=True)
