"""The training loop, shared by `train` (Supervised, SVFormer) and `pretrain` (MaskedVideo), on DeepSpeed.

Set-up (process group, model, engine, method, resume, streams), then per optimizer step: micro-steps
of forward + backward, one finite check, the optimizer step, the method's after-step, log, validate,
checkpoint. What a step computes is the method's business (`svformer/methods/`); this file knows no
teacher and no stage.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import torch

from svformer import run_dir as runs
from svformer.config import Config, load_config, save_config
from svformer.data import read_manifest, shard_urls
from svformer.data.sources import is_prep_dir
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
from svformer.methods import Context, Method, build_method
from svformer.monitor import Monitor
from svformer.optim import build_optimizer, lr_factor
from svformer.weight_import import backbone_from_config

log = logging.getLogger(__name__)
ARCH_KEYS = ("variant", "num_classes", "patch_size", "embed_dim", "depth", "num_heads")
EXIT_STOPPED = 75
"""Exit code after SIGTERM/SIGINT: the step finished, a checkpoint was saved; rerun the same command
to resume (75 is EX_TEMPFAIL, "try again later")."""


class TrainingStopped(Exception):
    """Raised after a signal-requested stop has saved its checkpoint; the CLI exits with EXIT_STOPPED."""


def method_for(cfg: Config) -> str:
    """The method `train` runs: svformer, or supervised when `ssl.enabled` is false."""
    return "svformer" if cfg.ssl.enabled else "supervised"


def check_shards(cfg: Config, method: str) -> int:
    """Fail at start, in one line, when the shards cannot serve this config. Returns #labeled videos."""
    if method == "masked_video":
        from svformer.methods.masked_video import pretrain_urls

        pretrain_urls(cfg)  # every pretraining spec names shards, or one line naming its config key
        return 0
    num_labeled = 0
    roles = {"svformer": ("labeled", "unlabeled"), "supervised": ("labeled",)}[method]
    for role in roles:
        spec = getattr(cfg.data, role)
        if "://" in str(spec):
            shard_urls(spec)  # remote: probed now, so an unreachable store is one line before the engine starts
        if not is_prep_dir(spec):
            continue  # a pattern or URLs: checked when the stream opens
        manifest = read_manifest(spec)
        labels = [int(k) for k in manifest.get("classes", {}) if int(k) >= 0]
        if labels and max(labels) >= cfg.model.num_classes:
            raise UserError(
                f"{spec}: shards hold label {max(labels)} but model.num_classes is "
                f"{cfg.model.num_classes}; set model.num_classes to the dataset's class count"
            )
        if manifest.get("num_classes") and manifest["num_classes"] != cfg.model.num_classes:
            raise UserError(
                f"{spec}: prepped with --num-classes {manifest['num_classes']} but model.num_classes "
                f"is {cfg.model.num_classes}"
            )
        if role == "labeled":
            num_labeled = int(manifest.get("num_samples", 0))
    return num_labeled


def make_model(cfg: Config, method: str = "svformer") -> torch.nn.Module:
    """The trained network, initialised from the configured weights (a resumed run overwrites them)."""
    if method == "masked_video":
        from svformer.methods.masked_video import build_pretrain_model

        return build_pretrain_model(cfg)
    return backbone_from_config(cfg)


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
    cfg: Config, kind: str, rank: int, world: int, device: torch.device, load_universal: bool = False
) -> tuple:
    """The student in its DeepSpeed engine (optimizer, LR schedule) and the training method around it.

    Returns (engine, scheduler, method, ds_config). Weights come from the global torch RNG and the
    configured initialisation; a resumed run then loads its checkpoint into both (`run_dir.load`).
    """
    model = make_model(cfg, kind).to(device)
    if cfg.train.compile:
        model.compile()  # in place: the engine, the EMA copy and checkpoints keep the same parameter names
    optimizer = build_optimizer(model, cfg.optim, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg))
    ds = engine_config(cfg, world, load_universal=load_universal)
    engine, scheduler = initialize(model, optimizer, scheduler, ds)
    method = build_method(kind, Context(cfg, engine, engine.module, device, rank, world, autocast_context(ds, device)))
    return engine, scheduler, method, ds


def train(cfg: Config, method: str | None = None) -> Path:
    """Run (or resume) training with `method` (default `method_for(cfg)`); returns the run directory.

    Raises TrainingStopped after SIGTERM/SIGINT (the checkpoint is saved first).
    """
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    kind = method or method_for(cfg)
    rank, world, device = init_distributed()
    run_dir = cfg.output_dir
    num_labeled = check_shards(cfg, kind)
    if rank == 0:
        runs.clean_partial(run_dir)
        save_config(cfg, run_dir / "config.yaml")
    ckpt = runs.latest_checkpoint(run_dir)
    if ckpt is not None:
        check_same_model(ckpt, cfg)
    universal = runs.prepare_resume(ckpt, world) if ckpt is not None else False

    torch.manual_seed(cfg.train.seed)  # same initial weights on every rank
    engine, scheduler, method_, ds = build_engine_and_method(cfg, kind, rank, world, device, universal)
    model = engine.module

    step = 0
    if ckpt is not None:
        step = runs.load(engine, method_, ckpt).step
        log.info("resumed from %s at step %d", ckpt, step)
    streams = method_.open_streams(step)
    batches = {name: iter(stream) for name, stream in streams.items()}
    data = runs.data_info(cfg)
    monitor = Monitor(run_dir, step, cfg.train.max_steps, enabled=rank == 0, desc=kind)
    monitor.message(
        f"svformer {kind}: {world} process(es) on {device}, {precision_name(ds)}, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, run dir {run_dir}"
        + (f", resumed at step {step}" if step else "")
    )
    labeled_per_step = cfg.data.batch_size * cfg.train.grad_accum * world
    stop = StopRequest()
    bad_in_a_row = 0
    try:
        while step < cfg.train.max_steps:
            non_finite = torch.zeros((), device=device)
            step_logs, clips = [], 0
            for _ in range(cfg.train.grad_accum):  # micro-steps: forward and backward only
                batch = {name: _to_device(next(batches[name]), device) for name in method_.wants(step)}
                loss, logs = method_.loss(batch, step)
                engine.backward(loss)
                non_finite += (~torch.isfinite(loss.detach())).float()  # stays on the device
                step_logs.append(logs)
                clips += sum(len(b["label"]) for b in batch.values())
            # One all-reduce and one host read per optimizer step: a non-finite loss on any rank skips
            # the step on every rank (else the gradient all-reduce would hang), and a stop signal on
            # any rank stops every rank after this step.
            bad, stopping = all_sum(
                torch.stack([non_finite, torch.tensor(float(stop.signal is not None), device=device)]), device
            )
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
            method_.after_step(step)
            step += 1
            monitor.add(step_logs, clips * world)
            monitor.advance()
            if _due(step, cfg.train.log_every, cfg.train.max_steps):
                extra = {
                    "lr": scheduler.get_last_lr()[0],
                    "skipped_samples": float(sum(s.stats()["skipped"] for s in streams.values())),
                }
                if num_labeled:  # an epoch is a pass over the labeled set (the paper's unit)
                    extra["epoch"] = step * labeled_per_step / num_labeled
                monitor.flush(step, extra)
            if cfg.train.val_every and _due(step, cfg.train.val_every, cfg.train.max_steps):
                _validate(cfg, method_, rank, world, device, monitor, step)
            if _due(step, cfg.train.checkpoint_every, cfg.train.max_steps) or stopping:
                saved = runs.save(
                    engine, method_, cfg, step, {"epoch": step * labeled_per_step / max(num_labeled, 1)}, data
                )  # epoch 0 for pretraining: no labeled set
                if stopping:
                    raise TrainingStopped(
                        f"stopped by a signal after step {step}; checkpoint {saved} saved: "
                        "run the same command to resume"
                    )
    finally:
        stop.restore()
        monitor.close()
    return run_dir


def _validate(cfg: Config, method: Method, rank: int, world: int, device, monitor: Monitor, step: int) -> None:
    """Single-view top-1 on the first `train.val_max_videos` validation videos of every model the method scores."""
    models = method.eval_models()
    if not cfg.data.val or not models:
        return
    scores = {f"{name}_top1": quick_accuracy(model, cfg, rank, world, device) for name, model in models.items()}
    monitor.write(step, scores, prefix="val")
    monitor.message(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
