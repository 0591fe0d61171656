"""The training loop, shared by `train` and `pretrain`, on DeepSpeed: it runs the method `train.method` names.

Set-up (process group, the method's data checks, run directory, model, engine, method, resume, streams),
then per optimizer step: micro-steps of forward + backward, one finite check, the optimizer step, the
method's after-step, log, validate, checkpoint. What a step computes, which streams feed it, what a model
is made of and what is logged and scored are the method's business (`svformer/methods/`); this file
names no method.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import torch

from svformer import run_dir
from svformer.config import Config, load_config, save_config
from svformer.data import data_info
from svformer.deepspeed_setup import (
    all_sum,
    autocast_context,
    engine_config,
    init_distributed,
    initialize,
    precision_name,
)
from svformer.errors import UserError
from svformer.evaluate import quick_accuracy
from svformer.methods import Context, Method, build_method, method_class
from svformer.monitor import Monitor
from svformer.optim import build_optimizer, lr_factor

log = logging.getLogger(__name__)
ARCH_KEYS = ("variant", "num_classes", "patch_size", "embed_dim", "depth", "num_heads")
EXIT_STOPPED = 75
"""Exit code after SIGTERM/SIGINT: the step finished, a checkpoint was saved; rerun the same command
to resume (75 is EX_TEMPFAIL, "try again later")."""


class TrainingStopped(Exception):
    """Raised after a signal-requested stop has saved its checkpoint; the CLI exits with EXIT_STOPPED."""


def check_same_model(ckpt: Path, cfg: Config) -> None:
    """A checkpoint of another architecture fails before DeepSpeed tries to load it."""
    saved = load_config(ckpt / "config.yaml")
    for key in ARCH_KEYS:
        if getattr(saved.model, key) != getattr(cfg.model, key):
            raise UserError(
                f"{ckpt}: written for model.{key}={getattr(saved.model, key)!r}, the config says "
                f"{getattr(cfg.model, key)!r}; use another train.output_dir or the same model"
            )


class StopRequest:
    """SIGTERM/SIGINT set a flag that the loop reads once per step (all ranks agree through the step's
    all-reduce): the step finishes, a checkpoint is saved, the run stops. A second signal stops at once."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        # A file-size limit (ulimit -f) then fails a checkpoint write with EFBIG, which `run_dir.save`
        # reports in one line, instead of killing the process mid-write.
        self.previous[signal.SIGXFSZ] = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def _handle(self, signum: int, frame) -> None:
        if self.signal is not None:  # asked twice: give up the clean stop
            self.restore()
            signal.raise_signal(signum)
        self.signal = signum

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _due(step: int, every: int, last: int) -> bool:
    return step == last or (every > 0 and step % every == 0)


def build_engine_and_method(
    cfg: Config, rank: int, world: int, device: torch.device, load_universal: bool = False
) -> tuple:
    """The student (the method's network) in its DeepSpeed engine (optimizer, LR schedule) and the
    method `train.method` names around it.

    Returns (engine, scheduler, method, ds_config). Weights come from the global torch RNG and the
    configured initialisation; a resumed run then loads its checkpoint into both (`run_dir.load`).
    """
    model = method_class(cfg.train.method).build_model(cfg).to(device)
    if cfg.train.compile:
        model.compile()  # in place: the engine, the EMA copy and checkpoints keep the same parameter names
    optimizer = build_optimizer(model, cfg.optim, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg))
    ds = engine_config(cfg, world, load_universal=load_universal)
    engine, scheduler = initialize(model, optimizer, scheduler, ds)
    method = build_method(Context(cfg, engine, engine.module, device, rank, world, autocast_context(ds, device)))
    return engine, scheduler, method, ds


def prepare_run_dir(cfg: Config, rank: int, world: int) -> tuple[Path | None, bool]:
    """Rank 0 clears a half-written checkpoint and records the config; returns (the checkpoint to resume
    from or None, whether it is loaded through DeepSpeed's universal format: another process count)."""
    if rank == 0:
        run_dir.clean_partial(cfg.output_dir)
        save_config(cfg, cfg.output_dir / "config.yaml")
    ckpt = run_dir.latest_checkpoint(cfg.output_dir)
    if ckpt is None:
        return None, False
    check_same_model(ckpt, cfg)
    return ckpt, run_dir.prepare_resume(ckpt, world)


def train(cfg: Config) -> Path:
    """Run (or resume) the method `train.method` names; returns the run directory.

    Raises TrainingStopped after SIGTERM/SIGINT (the checkpoint is saved first).
    """
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    rank, world, device = init_distributed()
    epoch_size = method_class(cfg.train.method).check_data(cfg)  # clips in an epoch; 0: no epochs
    ckpt, universal = prepare_run_dir(cfg, rank, world)
    torch.manual_seed(cfg.train.seed)  # same initial weights on every rank
    engine, scheduler, method, ds = build_engine_and_method(cfg, rank, world, device, universal)
    step = run_dir.load(engine, method, ckpt).step if ckpt is not None else 0
    streams = method.open_streams(step)
    batches = {name: iter(stream) for name, stream in streams.items()}
    provenance = data_info(cfg)
    monitor = Monitor(cfg.output_dir, step, cfg.train.max_steps, rank == 0, method.name, _bar_keys(method))
    monitor.message(_banner(cfg, method, world, device, ds, step))
    clips_per_step = cfg.data.batch_size * cfg.train.grad_accum * world  # of the first stream: the epoch's unit
    stop, bad_in_a_row = StopRequest(), 0
    try:
        while step < cfg.train.max_steps:
            step_logs, clips, bad, stopping = _accumulate(cfg, engine, method, batches, step, device, stop)
            if bad:
                engine.zero_grad()  # drop this step's gradients; the optimizer does not step
                bad_in_a_row += 1
                monitor.message(f"step {step}: non-finite loss, step skipped ({bad_in_a_row} in a row)")
                if bad_in_a_row >= cfg.train.max_bad_steps:
                    raise UserError(
                        f"{bad_in_a_row} non-finite losses in a row at step {step}: lower optim.lr, "
                        "use train.precision=bf16/fp32, or check the data; the last checkpoint is intact"
                    )
                continue
            bad_in_a_row = 0
            engine.step()
            method.after_step(step)
            step += 1
            monitor.add(step_logs, clips * world)
            monitor.advance()
            epoch = step * clips_per_step / epoch_size if epoch_size else 0.0
            if _due(step, cfg.train.log_every, cfg.train.max_steps):
                extra = {
                    "lr": scheduler.get_last_lr()[0],
                    "skipped_samples": float(sum(s.stats()["skipped"] for s in streams.values())),
                }
                monitor.flush(step, extra | ({"epoch": epoch} if epoch_size else {}))
            if cfg.train.val_every and _due(step, cfg.train.val_every, cfg.train.max_steps):
                _validate(cfg, method, rank, world, device, monitor, step)
            if _due(step, cfg.train.checkpoint_every, cfg.train.max_steps) or stopping:
                saved = run_dir.save(engine, method, cfg, step, {"epoch": epoch}, provenance)
                if stopping:
                    raise TrainingStopped(
                        f"stopped by a signal after step {step}; checkpoint {saved} saved: "
                        "run the same command to resume"
                    )
    finally:
        stop.restore()
        monitor.close()
    return cfg.output_dir


def _accumulate(cfg: Config, engine, method: Method, batches: dict, step: int, device, stop: StopRequest) -> tuple:
    """One optimizer step's micro-steps (forward and backward only). Returns (their logs, clips seen,
    whether any rank had a non-finite loss, whether any rank was asked to stop)."""
    non_finite = torch.zeros((), device=device)
    step_logs, clips = [], 0
    for _ in range(cfg.train.grad_accum):
        batch = {name: _to_device(next(batches[name]), device) for name in method.wants(step)}
        loss, logs = method.loss(batch, step)
        engine.backward(loss)
        non_finite += (~torch.isfinite(loss.detach())).float()  # stays on the device
        step_logs.append(logs)
        clips += sum(len(b["label"]) for b in batch.values())
    # One all-reduce and one host read per optimizer step: a non-finite loss on any rank skips the step
    # on every rank (else the gradient all-reduce would hang), and a stop signal on any rank stops every
    # rank after this step.
    bad, stopping = all_sum(
        torch.stack([non_finite, torch.tensor(float(stop.signal is not None), device=device)]), device
    )
    return step_logs, clips, bad, stopping


def _bar_keys(method: Method) -> tuple[str, ...]:
    """The progress bar's scalars: the method's log keys, the learning rate and the throughput."""
    return (*dict.fromkeys(k for keys in method.log_keys.values() for k in keys), "lr", "clips_s")


def _banner(cfg: Config, method: Method, world: int, device, ds: dict, step: int) -> str:
    params = sum(p.numel() for p in method.ctx.student_module.parameters()) / 1e6
    return (
        f"svformer {method.name}: {world} process(es) on {device}, {precision_name(ds)}, "
        f"{params:.2f}M parameters, run dir {cfg.output_dir}" + (f", resumed at step {step}" if step else "")
    )


def _validate(cfg: Config, method: Method, rank: int, world: int, device, monitor: Monitor, step: int) -> None:
    """Single-view top-1 on the first `train.val_max_videos` validation videos of every model the method scores."""
    models = method.eval_models()
    if not cfg.data.val or not models:
        return
    scores = {f"{name}_top1": quick_accuracy(model, cfg, rank, world, device) for name, model in models.items()}
    monitor.write(step, scores, prefix="val")
    monitor.message(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
