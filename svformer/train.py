"""The training loop: supervised warm-up, then the SVFormer step with an EMA teacher, on DeepSpeed.

Reads top to bottom: set-up (process group, model, engine, resume, streams), then per optimizer
step: batches -> loss -> backward -> step -> EMA update -> log -> validate -> checkpoint.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from svformer import build_model, load_imagenet_vit, load_official
from svformer.augment import normalize
from svformer.config import Config, load_config, save_config
from svformer.data import labeled_loader, read_manifest, unlabeled_loader
from svformer.engine import all_true, engine_config, init_distributed, initialize, precision_name
from svformer.errors import UserError
from svformer.evaluate import quick_accuracy
from svformer.monitor import Monitor
from svformer.optim import build_optimizer, lr_factor
from svformer import resume
from svformer.ssl import EMATeacher, ema_decay_at, supervised_step, svformer_step

log = logging.getLogger(__name__)
ARCH_KEYS = ("variant", "num_classes", "patch_size", "embed_dim", "depth", "num_heads")


def check_shards(cfg: Config) -> int:
    """Fail at start, in one line, when the shards cannot serve this config. Returns #labeled videos."""
    num_labeled = 0
    for role in ("labeled", "unlabeled") if cfg.ssl.enabled else ("labeled",):
        spec = getattr(cfg.data, role)
        if not Path(spec).is_dir():
            continue  # a pattern or URLs: checked when the stream opens
        manifest = read_manifest(spec)
        labels = [int(k) for k in manifest.get("classes", {}) if int(k) >= 0]
        if labels and max(labels) >= cfg.model.num_classes:
            raise UserError(f"{spec}: shards hold label {max(labels)} but model.num_classes is "
                            f"{cfg.model.num_classes}; set model.num_classes to the dataset's class count")
        if manifest.get("num_classes") and manifest["num_classes"] != cfg.model.num_classes:
            raise UserError(f"{spec}: prepped with --num-classes {manifest['num_classes']} but model.num_classes "
                            f"is {cfg.model.num_classes}")
        if role == "labeled":
            num_labeled = int(manifest.get("num_samples", 0))
    return num_labeled


def make_model(cfg: Config) -> torch.nn.Module:
    """The student, initialised from the configured weights (a resumed run overwrites them)."""
    model = build_model(cfg.model.variant, cfg.model.num_classes, num_frames=cfg.data.num_frames,
                        img_size=cfg.data.img_size, grad_checkpointing=cfg.model.grad_checkpointing,
                        **cfg.model.overrides())
    if cfg.model.official_init:
        load_official(model, cfg.model.official_init)
    elif cfg.model.imagenet_init:
        load_imagenet_vit(model, cfg.model.imagenet_init)
    return model


def check_same_model(ckpt: Path, cfg: Config) -> None:
    """A checkpoint of another architecture fails before DeepSpeed tries to load it."""
    saved = load_config(ckpt / "config.yaml")
    for key in ARCH_KEYS:
        if getattr(saved.model, key) != getattr(cfg.model, key):
            raise UserError(f"{ckpt}: written for model.{key}={getattr(saved.model, key)!r}, the config says "
                            f"{getattr(cfg.model, key)!r}; use another train.output_dir or the same model")


def train(cfg: Config) -> Path:
    """Run (or resume) training as configured; returns the run directory."""
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    rank, world, device = init_distributed()
    run_dir = cfg.output_dir
    num_labeled = check_shards(cfg)
    torch.manual_seed(cfg.train.seed)  # same initial student on every rank
    model = make_model(cfg).to(device)
    optimizer = build_optimizer(model, cfg.optim, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg))
    ds = engine_config(cfg, world)
    engine, scheduler = initialize(model, optimizer, scheduler, ds)
    generator = torch.Generator().manual_seed(cfg.train.seed * 1000 + rank)

    step, teacher = 0, None
    if rank == 0:
        resume.clean_partial(run_dir)
        save_config(cfg, run_dir / "config.yaml")
    ckpt = resume.latest_checkpoint(run_dir)
    if ckpt is not None:
        check_same_model(ckpt, cfg)
        state, teacher_state = resume.load(engine, ckpt, generator)
        step = int(state["step"])
        if teacher_state is not None:
            teacher = EMATeacher(engine.module)
            teacher.load_state_dict(teacher_state)
        log.info("resumed from %s at step %d", ckpt, step)

    labeled_stream = labeled_loader(cfg, rank, world, seed=cfg.train.seed, start_step=step)
    labeled = iter(labeled_stream)
    unlabeled_stream = unlabeled_loader(cfg, rank, world, seed=cfg.train.seed, start_step=step) if cfg.ssl.enabled else None
    unlabeled = iter(unlabeled_stream) if unlabeled_stream is not None else None
    monitor = Monitor(run_dir, step, cfg.train.max_steps, enabled=rank == 0)
    monitor.message(f"svformer: {world} process(es) on {device}, {precision_name(ds)}, "
                    f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, run dir {run_dir}"
                    + (f", resumed at step {step}" if step else ""))
    mean, std = cfg.data.mean, cfg.data.std
    labeled_per_step = cfg.data.batch_size * cfg.train.grad_accum * world
    bad_in_a_row = 0

    while step < cfg.train.max_steps:
        ssl_stage = cfg.ssl.enabled and step >= cfg.train.warmup_steps
        if ssl_stage and cfg.ssl.teacher == "ema" and teacher is None:
            teacher = EMATeacher(engine.module)  # stage 2 starts: the teacher is an exact copy
        micro, step_logs, clips = 0, [], 0
        while micro < cfg.train.grad_accum:
            batch = next(labeled)
            x_l = normalize(batch["video"].to(device, non_blocking=True), mean, std)
            y_l = batch["label"].to(device)
            if ssl_stage:
                batch_u = next(unlabeled)
                weak = normalize(batch_u["weak"].to(device, non_blocking=True), mean, std)
                strong = normalize(batch_u["strong"].to(device, non_blocking=True), mean, std)
                loss, logs = svformer_step(engine, teacher, (x_l, y_l), (weak, strong), cfg.ssl, generator,
                                           cfg.model.num_classes, unlabeled_labels=batch_u["label"].to(device))
                clips += x_l.shape[0] + weak.shape[0]
            else:
                loss, logs = supervised_step(engine, (x_l, y_l))
                clips += x_l.shape[0]
            if not all_true(bool(torch.isfinite(loss)), device):
                bad_in_a_row += 1  # every rank skips together, or the gradient all-reduce would hang
                monitor.message(f"step {step}: non-finite loss, batch skipped ({bad_in_a_row} in a row)")
                if bad_in_a_row >= cfg.train.max_bad_steps:
                    raise UserError(f"{bad_in_a_row} non-finite losses in a row at step {step}: lower optim.lr, "
                                    "use train.precision=bf16/fp32, or check the data; the last checkpoint is intact")
                continue
            bad_in_a_row = 0
            engine.backward(loss)
            engine.step()
            micro += 1
            step_logs.append(logs)

        if teacher is not None and ssl_stage:
            teacher.update(engine.module, ema_decay_at(step - cfg.train.warmup_steps, cfg.ssl))
        step += 1
        monitor.add(_mean(step_logs), clips * world)
        monitor.advance()
        if step % cfg.train.log_every == 0 or step == cfg.train.max_steps:
            extra = {"lr": scheduler.get_last_lr()[0], "epoch": step * labeled_per_step / max(num_labeled, 1),
                     "stage": 2.0 if ssl_stage else 1.0}
            streams = [labeled_stream] + ([unlabeled_stream] if unlabeled_stream is not None else [])
            extra["skipped_samples"] = float(sum(s.stats().get("skipped", 0) for s in streams))
            monitor.flush(step, extra)
        if cfg.train.val_every and (step % cfg.train.val_every == 0 or step == cfg.train.max_steps):
            _validate(cfg, engine.module, teacher, rank, world, device, monitor, step)
        if step % cfg.train.checkpoint_every == 0 or step == cfg.train.max_steps:
            resume.save(engine, teacher, cfg, step, generator, {"epoch": step * labeled_per_step / max(num_labeled, 1)})
    monitor.close()
    return run_dir


def _mean(logs: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for entry in logs for k in entry}
    return {k: sum(e[k] for e in logs if k in e) / sum(k in e for e in logs) for k in keys}


def _validate(cfg: Config, student, teacher, rank: int, world: int, device, monitor: Monitor, step: int) -> None:
    """Single-view top-1 on the first `train.val_max_videos` validation videos, student and teacher."""
    if not cfg.data.val:
        return
    scores = {"student_top1": quick_accuracy(student, cfg, rank, world, device)}
    if teacher is not None:
        scores["teacher_top1"] = quick_accuracy(teacher.module, cfg, rank, world, device)
    monitor.write(step, scores, prefix="val")
    monitor.message(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
