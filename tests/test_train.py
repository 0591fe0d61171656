"""Training: the real deepspeed launcher, checkpoints, SIGKILL + resume, logs, modes, bad configs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from _runs import ROOT, cli, env, launcher, tiny_config


def _steps(run: Path) -> list[int]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if r["split"] == "train"]


def test_launcher_with_two_processes_trains_saves_and_resumes_after_sigkill(demo_shards, tmp_path):
    run = tmp_path / "run"
    config = tiny_config(
        demo_shards, run, tmp_path / "c.yaml", train={"max_steps": 30, "checkpoint_every": 3, "val_every": 0}
    )
    proc = subprocess.Popen(
        launcher("train", "--config", str(config)),
        cwd=ROOT,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 400
    while not (run / "checkpoints" / "step-000003").exists():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline, "no checkpoint in time"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks, mid-run
    proc.wait()
    saved = sorted(p.name for p in (run / "checkpoints").glob("step-??????"))
    resumed_at = int(saved[-1].split("-")[1])
    assert resumed_at < 30
    # each rank wrote its own RNG state: the checkpoint is a 2-process one
    assert {p.name for p in (run / "checkpoints" / saved[-1]).glob("rng-rank*.pt")} == {"rng-rank0.pt", "rng-rank1.pt"}

    result = subprocess.run(
        launcher("train", "--config", str(config)), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed at step {resumed_at}" in result.stderr + result.stdout
    assert (run / "checkpoints" / "step-000030").is_dir()
    assert not list((run / "checkpoints").glob("*.tmp"))
    steps = _steps(run)
    assert steps == sorted(set(steps)) and steps[-1] == 30  # no step logged twice across the restart
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))


def _fresh_engine_and_method(cfg):
    """A new engine and SVFormer method with other initial weights, as a restarted process builds them."""
    from svformer.train import build_engine_and_method

    torch.manual_seed(123)
    engine, scheduler, method, _ = build_engine_and_method(cfg, 0, 1, torch.device("cpu"))
    return engine, scheduler, method


def test_resume_restores_identical_student_teacher_optimizer_and_rng(demo_shards, tmp_path):
    from svformer import run_dir
    from svformer.config import load_config
    from svformer.train import train

    config = tiny_config(
        demo_shards,
        tmp_path / "run",
        tmp_path / "c.yaml",
        train={"max_steps": 4, "warmup_steps": 2, "checkpoint_every": 4, "val_every": 0},
    )
    cfg = load_config(config)
    train(cfg)
    ckpt = run_dir.latest_checkpoint(cfg.output_dir)
    assert ckpt.name == "step-000004" and (ckpt / "method.pt").exists() and (ckpt / "index.json").exists()

    # a fresh engine with other initial weights, then load: everything must come back bit-exact
    engine, scheduler, method = _fresh_engine_and_method(cfg)
    resumed = run_dir.load(engine, method, ckpt)

    saved_student = torch.load(ckpt / "mp_rank_00_model_states.pt", weights_only=False)["module"]
    for name, value in engine.module.state_dict().items():
        assert torch.equal(value, saved_student[name]), name
    saved_teacher = torch.load(ckpt / "method.pt", weights_only=True)["models"]["teacher"]
    teacher = method.teacher.state_dict()
    assert all(torch.equal(teacher[k], saved_teacher[k]) for k in saved_teacher)
    assert any(not torch.equal(teacher[k], saved_student[k]) for k in saved_teacher)  # the teacher lags
    assert resumed.step == 4 and resumed.world_size == 1
    assert scheduler.last_epoch == 4
    saved_rng = torch.load(ckpt / "rng-rank0.pt", weights_only=False)
    assert torch.equal(method.generator.get_state(), saved_rng["generator"])
    saved_optim = torch.load(ckpt / "zero_pp_rank_0_mp_rank_00_optim_states.pt", weights_only=False)[
        "optimizer_state_dict"
    ]["base_optimizer_state"]["state"]
    loaded_optim = engine.optimizer.state_dict()["base_optimizer_state"]["state"]
    assert saved_optim and set(saved_optim) == set(loaded_optim)
    for index, slots in saved_optim.items():  # AdamW moments, step count
        for name, value in slots.items():
            assert torch.equal(torch.as_tensor(loaded_optim[index][name]), torch.as_tensor(value)), (index, name)


def test_supervised_only_mode_trains_without_a_teacher(demo_shards, tmp_path):
    config = tiny_config(
        demo_shards,
        tmp_path / "run",
        tmp_path / "c.yaml",
        train={"method": "supervised", "max_steps": 3, "warmup_steps": 0, "val_every": 3},
    )
    result = cli("train", "--config", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = tmp_path / "run" / "checkpoints" / "step-000003"
    assert ckpt.is_dir() and not (ckpt / "teacher.pt").exists()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("loss_unlabeled" not in r for r in rows if r["split"] == "train")
    assert any("student_top1" in r for r in rows if r["split"] == "val")


def test_ssl_mode_logs_every_loss_term_and_pseudo_label_stats(demo_shards, tmp_path):
    config = tiny_config(demo_shards, tmp_path / "run", tmp_path / "c.yaml", train={"max_steps": 4, "warmup_steps": 1})
    result = cli("train", "--config", str(config), "--set", "train.checkpoint_every=4")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    ssl_rows = [r for r in rows if r["split"] == "train" and r["step"] > 1]
    assert ssl_rows and all(k in ssl_rows[-1] for k in ("loss_unlabeled", "loss_mix", "mask_rate", "pseudo_acc", "lr"))
    assert (tmp_path / "run" / "config.yaml").exists()


@pytest.mark.parametrize(
    "override,needle",
    [
        ("ssl.thresold=0.5", "unknown key ssl.thresold"),
        ("model.num_classes=3", "model.num_classes"),
        ("data.labeled=/nonexistent/shards", "/nonexistent/shards"),
    ],
)
def test_bad_config_fails_at_start_with_one_line(demo_shards, tmp_path, override, needle):
    config = tiny_config(demo_shards, tmp_path / "run", tmp_path / "c.yaml")
    result = cli("train", "--config", str(config), "--set", override)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_checkpoint_of_another_model_shape_fails_clearly(demo_shards, tmp_path):
    config = tiny_config(
        demo_shards,
        tmp_path / "run",
        tmp_path / "c.yaml",
        train={"max_steps": 2, "warmup_steps": 2, "checkpoint_every": 2, "val_every": 0},
    )
    assert cli("train", "--config", str(config)).returncode == 0
    result = cli("train", "--config", str(config), "--set", "model.embed_dim=64", "--set", "train.max_steps=4")
    assert result.returncode == 2
    assert "model.embed_dim" in result.stderr and "Traceback" not in result.stderr


def test_repeated_non_finite_losses_stop_the_run_with_a_message(demo_shards, tmp_path, monkeypatch):
    from svformer.config import load_config
    from svformer.errors import UserError
    from svformer.methods import Supervised
    from svformer.train import train

    def nan_loss(self, batch, step):
        loss, logs = original(self, batch, step)
        return loss * float("nan"), logs

    original = Supervised.loss
    monkeypatch.setattr(Supervised, "loss", nan_loss)
    config = tiny_config(
        demo_shards,
        tmp_path / "run",
        tmp_path / "c.yaml",
        train={"method": "supervised", "max_steps": 3, "warmup_steps": 0, "max_bad_steps": 3, "val_every": 0},
    )
    with pytest.raises(UserError, match="3 non-finite losses in a row"):
        train(load_config(config))
    assert not (tmp_path / "run" / "checkpoints" / "step-000001").exists()  # nothing was stepped or saved
