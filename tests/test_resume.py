"""Resume anywhere: another process count (2 -> 1 -> 2, real launcher), a damaged newest checkpoint,
SIGTERM mid-run, a full disk while saving."""

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


def _run(cmd: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout)


def _consolidated_moments(ckpt: Path) -> dict[int, dict[str, torch.Tensor]]:
    """Every ZeRO partition file of a checkpoint, concatenated per parameter group: the full flat moments."""
    files = sorted(ckpt.glob("zero_pp_rank_*_mp_rank_00_optim_states.pt"))
    states = [torch.load(f, weights_only=False)["optimizer_state_dict"]["base_optimizer_state"]["state"] for f in files]
    return {
        g: {k: torch.cat([s[g][k].flatten() for s in states]) for k in ("exp_avg", "exp_avg_sq")} for g in states[0]
    }


def _load_in_one_process(cfg, ckpt: Path):
    """Build the engine and method as a 1-process `train` would and load `ckpt` through the same calls."""
    from svformer import run_dir
    from svformer.deepspeed_setup import init_distributed
    from svformer.train import build_engine_and_method

    init_distributed()
    universal = run_dir.prepare_resume(ckpt, 1)
    torch.manual_seed(123)  # other initial weights: everything must come from the checkpoint
    engine, scheduler, method, _ = build_engine_and_method(cfg, 0, 1, torch.device("cpu"), universal)
    resumed = run_dir.load(engine, method, ckpt)
    return universal, engine, scheduler, method, resumed


def test_resume_two_to_one_to_two_processes_restores_the_whole_state(demo_shards, tmp_path):
    from svformer.config import load_config

    run = tmp_path / "run"
    config = tiny_config(
        demo_shards,
        run,
        tmp_path / "c.yaml",
        train={"max_steps": 3, "warmup_steps": 1, "checkpoint_every": 3, "val_every": 0},
    )
    two = _run(launcher("train", "--config", str(config)))
    assert two.returncode == 0, two.stderr[-3000:]
    ckpt = run / "checkpoints" / "step-000003"
    assert len(list(ckpt.glob("zero_pp_rank_*_optim_states.pt"))) == 2  # optimizer state split over 2 ranks

    cfg = load_config(config)
    universal, engine, scheduler, method, resumed = _load_in_one_process(cfg, ckpt)
    assert universal and resumed.step == 3 and resumed.world_size == 2
    saved_student = torch.load(ckpt / "mp_rank_00_model_states.pt", weights_only=False)["module"]
    assert all(torch.equal(v, saved_student[k]) for k, v in engine.module.state_dict().items())
    saved_teacher = torch.load(ckpt / "method.pt", weights_only=True)["models"]["teacher"]
    assert all(torch.equal(v, saved_teacher[k]) for k, v in method.teacher.state_dict().items())
    assert scheduler.last_epoch == 3
    expected_lr = cfg.optim.lr * scheduler.lr_lambdas[0](3)
    assert scheduler.get_last_lr()[0] == pytest.approx(expected_lr)
    saved = _consolidated_moments(ckpt)
    loaded = engine.optimizer.state_dict()["base_optimizer_state"]["state"]
    for group, moments in saved.items():
        numel = sum(p.numel() for p in engine.optimizer.bit16_groups[group])
        for name, value in moments.items():
            assert torch.equal(loaded[group][name].flatten()[:numel], value[:numel]), (group, name)

    one = cli("train", "--config", str(config), "--set", "train.max_steps=5", "--set", "train.checkpoint_every=5")
    assert one.returncode == 0, one.stderr[-3000:]
    assert "resumed at step 3" in one.stdout + one.stderr
    assert len(list((run / "checkpoints" / "step-000005").glob("zero_pp_rank_*_optim_states.pt"))) == 1

    again = _run(
        launcher("train", "--config", str(config), "--set", "train.max_steps=7", "--set", "train.checkpoint_every=7")
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed at step 5" in again.stdout + again.stderr
    final = run / "checkpoints" / "step-000007"
    assert {p.name for p in final.glob("rng-rank*.pt")} == {"rng-rank0.pt", "rng-rank1.pt"}
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 7


@pytest.fixture()
def two_checkpoints(demo_shards, tmp_path):
    """A 1-process run with checkpoints at steps 2 and 4."""
    config = tiny_config(
        demo_shards,
        tmp_path / "run",
        tmp_path / "c.yaml",
        train={"max_steps": 4, "warmup_steps": 1, "checkpoint_every": 2, "val_every": 0},
    )
    result = cli("train", "--config", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    return config, tmp_path / "run"


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    return errors[0]


def test_a_truncated_newest_checkpoint_falls_back_to_the_intact_one(two_checkpoints, tmp_path):
    config, run = two_checkpoints
    newest = run / "checkpoints" / "step-000004"
    model_file = newest / "mp_rank_00_model_states.pt"
    model_file.write_bytes(model_file.read_bytes()[:1000])

    line = _one_error_line(cli("eval", "--ckpt", str(newest), "--views", "1x1"))
    assert "step-000004" in line and "mp_rank_00_model_states.pt" in line
    line = _one_error_line(cli("export", "--ckpt", str(newest), "--out", str(tmp_path / "x.safetensors")))
    assert "truncated" in line

    scored = cli("eval", "--ckpt", str(run), "--views", "1x1", "--out", str(tmp_path / "report"))
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert "step-000004" in scored.stderr  # the warning names the damaged one
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["teacher"]["step"] == 2

    resumed = cli("train", "--config", str(config), "--set", "train.max_steps=6")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed at step 2" in resumed.stdout + resumed.stderr and "skipping damaged checkpoint" in resumed.stderr


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(two_checkpoints):
    config, run = two_checkpoints
    # 100 KiB per file: logs fit, the next checkpoint's model file (~180 KiB) does not
    cmd = " ".join(
        [
            str(Path(os.sys.executable)),
            "cli.py",
            "train",
            "--config",
            str(config),
            "--set",
            "train.max_steps=6",
            "--set",
            "train.checkpoint_every=2",
        ]
    )
    result = subprocess.run(
        ["bash", "-c", f"ulimit -f 100; exec {cmd}"], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600
    )
    line = _one_error_line(result)
    assert "could not write checkpoint step-000006" in line and "step-000004 is intact" in line
    names = sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir())
    assert names == ["step-000002", "step-000004"]  # no partial checkpoint left behind
    from svformer.run_dir import latest_checkpoint

    assert latest_checkpoint(run).name == "step-000004"


def _wait_for_step(run: Path, step: int, proc: subprocess.Popen, deadline_s: float = 400) -> None:
    deadline = time.time() + deadline_s
    jsonl = run / "metrics.jsonl"
    while not (
        jsonl.exists()
        and any(json.loads(line)["step"] >= step for line in jsonl.read_text().splitlines() if line.strip())
    ):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "training did not reach the step in time"
        time.sleep(0.2)


def test_sigterm_finishes_the_step_saves_and_the_same_command_resumes(demo_shards, tmp_path):
    import sys

    run = tmp_path / "run"
    config = tiny_config(
        demo_shards,
        run,
        tmp_path / "c.yaml",
        train={"max_steps": 500, "warmup_steps": 1, "checkpoint_every": 1000, "val_every": 0},
    )
    # one process: its exit code is ours
    proc = subprocess.Popen(
        [sys.executable, "cli.py", "train", "--config", str(config)],
        cwd=ROOT,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_step(run, 2, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 75, stderr[-3000:]
    stopped = [line for line in stderr.splitlines() if "stopped by a signal after step" in line]
    assert stopped, stderr[-3000:]
    step = int(stopped[-1].split("after step ")[1].split(";")[0])
    assert (run / "checkpoints" / f"step-{step:06d}" / "index.json").exists()

    # (a signal to every process of a launcher job, once or twice: tests/test_preemption.py)
    result = cli("train", "--config", str(config), "--set", f"train.max_steps={step + 1}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed at step {step}" in result.stdout + result.stderr
