"""Preemption as clusters deliver it: SIGTERM/SIGINT to every process of the job (the process group, as
`kill -TERM -- -PGID` or Slurm do), once or twice, under the real deepspeed launcher with DataLoader
workers; the same for pretrain and prep. Every process is real; the signals are real."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _runs import ROOT, cli, env, launcher, tiny_config

STOPPED = "stopped by a signal after step "


class Job:
    """A command started in its own session (its own process group), like a Slurm job step."""

    def __init__(self, cmd: list[str]) -> None:
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # one text: the ranks' progress messages and their stop lines
            text=True,
            start_new_session=True,
        )

    def signal_group(self, signum: int, times: int = 1) -> None:
        for i in range(times):
            if i:
                time.sleep(0.3)  # the second delivery lands while the ranks are finishing the step
            os.killpg(self.proc.pid, signum)

    def finish(self, timeout: float = 240) -> str:
        """Wait until every process of the job closed its output (the ranks and workers hold it too): the text."""
        return self.proc.communicate(timeout=timeout)[0]

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.communicate(timeout=60)


@pytest.fixture()
def jobs():
    started: list[Job] = []

    def start(cmd: list[str]) -> Job:
        started.append(Job(cmd))
        return started[-1]

    yield start
    for job in started:
        job.kill()


def wait_for_step(run: Path, step: int, job: Job, deadline_s: float = 600) -> None:
    deadline = time.time() + deadline_s
    jsonl = run / "metrics.jsonl"
    while not (jsonl.exists() and any(json.loads(line)["step"] >= step for line in jsonl.read_text().splitlines())):
        assert job.proc.poll() is None, job.proc.communicate()[0][-3000:]
        assert time.time() < deadline, "training did not reach the step in time"
        time.sleep(0.2)


def stopped_steps(stderr: str) -> list[int]:
    """The step each stopped process reported, from its 'stopped by a signal after step N; ...' line."""
    return [int(line.split(STOPPED)[1].split(";")[0]) for line in stderr.splitlines() if STOPPED in line]


def _config(demo_shards: Path, tmp_path: Path, **sections) -> tuple[Path, Path]:
    run = tmp_path / "run"
    data = {"workers": 1, **sections.pop("data", {})}  # DataLoader worker processes in the group too
    train = {"max_steps": 400, "warmup_steps": 1, "checkpoint_every": 1000, "val_every": 0}
    return run, tiny_config(demo_shards, run, tmp_path / "c.yaml", data=data, train=train, **sections)


def _stop_by_group_signal(job: Job, run: Path, after: int, signum: int, times: int) -> tuple[int, str]:
    """Signal the whole job once `after` + 2 steps are logged; (the step every rank stopped after, stderr)."""
    wait_for_step(run, after + 2, job)
    job.signal_group(signum, times)
    stderr = job.finish()
    assert "DataLoader worker" not in stderr and "ChildFailedError" not in stderr, stderr[-3000:]
    steps = stopped_steps(stderr)
    assert len(steps) == 2 and steps[0] == steps[1] > after, stderr[-3000:]  # both ranks, after the same step
    # one node: the deepspeed command has no handler of its own and dies of the signal at once (143 / 130
    # in a shell); each rank exits 75 once saved, and deepspeed.launcher.launch 1 once its ranks are gone
    assert job.proc.returncode == -signum
    return steps[0], stderr


@pytest.mark.timeout(1500)  # three launcher starts of 2 ranks each: minutes on a loaded 2-core machine
def test_group_signals_to_a_launcher_job_save_once_each_and_the_same_command_resumes(demo_shards, tmp_path, jobs):
    run, config = _config(demo_shards, tmp_path)
    command = launcher("train", "--config", str(config))

    first, stderr = _stop_by_group_signal(jobs(command), run, 0, signal.SIGTERM, times=1)
    assert "Traceback" not in stderr, stderr[-3000:]
    assert _checkpoints(run) == [first]

    # the same command resumes there; a double delivery (a second scancel) stops it just as cleanly
    second, stderr = _stop_by_group_signal(jobs(command), run, first, signal.SIGTERM, times=2)
    assert f"resumed at step {first}" in stderr and "Traceback" not in stderr, stderr[-3000:]
    assert _checkpoints(run) == [first, second]  # one checkpoint per stop

    # Ctrl-C in a terminal: SIGINT to the foreground group (the deepspeed command's own traceback aside)
    third, stderr = _stop_by_group_signal(jobs(command), run, second, signal.SIGINT, times=1)
    assert f"resumed at step {second}" in stderr
    assert _checkpoints(run) == [first, second, third]
    newest = run / "checkpoints" / f"step-{third:06d}"
    assert (newest / "index.json").exists()
    assert {p.name for p in newest.glob("rng-rank*.pt")} == {"rng-rank0.pt", "rng-rank1.pt"}


def _checkpoints(run: Path) -> list[int]:
    return [int(p.name.split("-")[1]) for p in sorted((run / "checkpoints").glob("step-??????"))]


def test_a_group_sigterm_to_pretrain_saves_and_exits_75(demo_shards, tmp_path, jobs):
    run, config = _config(
        demo_shards,
        tmp_path,
        pretrain={"mask_ratio": 0.75, "decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2, "recon_every": 0},
    )
    job = jobs([sys.executable, "cli.py", "pretrain", "--config", str(config)])
    wait_for_step(run, 2, job)
    job.signal_group(signal.SIGTERM, times=2)
    stderr = job.finish()
    assert job.proc.returncode == 75, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    (step,) = stopped_steps(stderr)
    assert (run / "checkpoints" / f"step-{step:06d}" / "index.json").exists()

    result = cli("pretrain", "--config", str(config), "--set", f"train.max_steps={step + 1}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed at step {step}" in result.stdout + result.stderr


def _prep_list(demo_videos: Path, tmp_path: Path, copies: int) -> Path:
    """The demo list `copies` times over (symlinked videos): enough one-worker decoding to stop in the middle."""
    videos = tmp_path / "videos"
    videos.mkdir()
    lines = []
    for k in range(copies):
        for line in (demo_videos / "all.txt").read_text().splitlines():
            source, label = line.rsplit(" ", 1)
            link = videos / f"c{k}_{Path(source).name}"
            link.symlink_to(demo_videos / source)
            lines.append(f"{link.name} {label}")
    listing = videos / "list.txt"
    listing.write_text("\n".join(lines) + "\n")
    return listing


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_a_group_sigterm_stops_prep_cleanly_and_the_rerun_is_byte_identical(demo_videos, tmp_path, jobs):
    listing = _prep_list(demo_videos, tmp_path, copies=3)
    args = ["--list", str(listing), "--short-side", "32", "--fps", "15", "--shard-size", "40KB", "--workers", "1"]
    reference = tmp_path / "reference"
    result = cli("prep", *args, "--out", str(reference), "--num-classes", "8")
    assert result.returncode == 0, result.stderr[-3000:]

    out = tmp_path / "stopped"
    job = jobs([sys.executable, "cli.py", "prep", *args, "--out", str(out), "--num-classes", "8"])
    deadline = time.time() + 120
    while not (out / "shard-000002.tar.json").exists():  # a few shards finished, ffmpeg busy with the next
        assert job.proc.poll() is None and time.time() < deadline, job.proc.communicate()[0][-3000:]
        time.sleep(0.01)
    job.signal_group(signal.SIGTERM, times=2)
    stderr = job.finish(timeout=60)
    assert job.proc.returncode == 75, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("prep stopped") and "rerun the same command" in last, stderr[-3000:]
    assert "Traceback" not in stderr and not (out / "manifest.json").exists()
    kept = {name for name in _files(out) if name.endswith(".tar") and (out / f"{name}.json").exists()}
    assert 3 <= len(kept) < len([n for n in _files(reference) if n.endswith(".tar")])
    assert all(_files(out)[name] == _files(reference)[name] for name in kept)  # finished shards are final

    rerun = cli("prep", *args, "--out", str(out), "--num-classes", "8")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{len(kept)} finished shard(s) kept" in rerun.stderr
    assert _files(out) == _files(reference)  # shards, sidecars, manifest.json, failures.tsv: byte for byte
    assert json.loads((out / "manifest.json").read_text())["failures"] == []
