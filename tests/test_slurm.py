"""The job scripts of configs/slurm/ on a real one-node Slurm (slurm-wlm, munge) started on 127.0.0.1:
the prep array gives the samples of one prep; a cancelled training job leaves a checkpoint and the
resubmitted job resumes from it; the time-limit warning checkpoints, requeues, and the job resumes."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
from _runs import ROOT, VENV_BIN, _free_port, env, tiny_config
from _slurm import LocalSlurm, install

PREP_ARRAY = ROOT / "configs" / "slurm" / "prep_array.sbatch"
TRAIN = ROOT / "configs" / "slurm" / "train.sbatch"
# Processes per node in the signalled training jobs: 2 runs the DeepSpeed launcher form (hostfile,
# --no_ssh, --node_rank), where a scancel reaches every rank twice (Slurm, then the launcher).
PROCS = 2
ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL")


@pytest.fixture(scope="session")
def slurm():
    """A running one-node cluster; skips only when slurm-wlm and munge cannot be installed."""
    reason = install()
    if reason:
        pytest.skip(reason)
    # not under pytest's 0700 temp dirs: munged wants its socket's directories reachable by all
    root = Path(tempfile.mkdtemp(prefix="svformer-slurm-"))
    cluster = LocalSlurm(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def _job_env() -> dict:
    """What the jobs inherit (sbatch passes the submitter's environment): the venv first on PATH."""
    out = env()
    out["PATH"] = f"{VENV_BIN}:{out['PATH']}"
    # DeepSpeed compiles its CPU comm op on first use into a cache shared by every checkout on the
    # machine, rebuilt (minutes, under a lock) whenever another interpreter path asks: keep one per venv.
    venv = hashlib.sha256(str(VENV_BIN).encode()).hexdigest()[:12]
    out["TORCH_EXTENSIONS_DIR"] = str(Path.home() / ".cache" / "torch_extensions" / f"venv-{venv}")
    return out


def _ended(records: list[dict]) -> bool:
    return all(r["JobState"] in ENDED for r in records)


def _samples(directory: Path) -> dict[str, dict[str, bytes]]:
    """Every sample of a prep directory's shards (as the manifest lists them): key -> member suffix -> bytes."""
    from svformer.data import read_manifest

    samples: dict[str, dict[str, bytes]] = {}
    for shard in read_manifest(directory)["shards"]:
        with tarfile.open(directory / shard["name"]) as tar:
            for member in tar.getmembers():
                key, suffix = member.name.split(".", 1)
                samples.setdefault(key, {})[suffix] = tar.extractfile(member).read()
    return samples


def test_the_prep_array_gives_the_samples_of_one_prep(slurm, demo_videos, tmp_path):
    from prep.shards import prep_list
    from svformer.data import read_manifest
    from svformer.video.decode import DecodeSettings

    options = ["--data-root", str(demo_videos), "--num-classes", "8", "--short-side", "64", "--fps", "15"]
    options += ["--shard-size", "200KB"]
    whole = prep_list(
        demo_videos / "all.txt",
        tmp_path / "whole",
        DecodeSettings(short_side=64, fps=15),
        data_root=demo_videos,
        num_classes=8,
        shard_size=200_000,
        workers=1,
        progress=False,
    )
    out = tmp_path / "parts"
    job = slurm.sbatch(
        "--array=1-3",
        "--cpus-per-task=1",
        f"--output={tmp_path}/prep-%A_%a.out",
        str(PREP_ARRAY),
        str(demo_videos / "all.txt"),
        str(out),
        *options,
        env=_job_env(),
        cwd=ROOT,
    )
    records = slurm.wait_for(job, _ended, 600, "every array task ended")
    logs = "\n".join(p.read_text() for p in sorted(tmp_path.glob("prep-*.out")))
    assert [r["JobState"] for r in records] == ["COMPLETED"] * 3, logs[-3000:]
    assert sorted(p.name for p in out.glob("manifest*.json")) == [
        "manifest-p01of03.json",
        "manifest-p02of03.json",
        "manifest-p03of03.json",
        "manifest.json",
    ]
    merged = read_manifest(out)
    assert merged["complete"] and merged["num_samples"] == whole["num_samples"] == 32
    assert merged["classes"] == whole["classes"]
    assert {s["name"][:13] for s in merged["shards"]} == {"shard-p01of03", "shard-p02of03", "shard-p03of03"}
    assert _samples(out) == _samples(tmp_path / "whole")


def _metrics_step(run: Path) -> int:
    jsonl = run / "metrics.jsonl"
    if not jsonl.exists():
        return -1
    steps = [json.loads(line)["step"] for line in jsonl.read_text().splitlines() if line.strip()]
    return max(steps, default=-1)


def _wait_for_step(slurm: LocalSlurm, job: str, run: Path, step: int, log: Path, timeout: float = 900) -> None:
    deadline = time.time() + timeout
    while _metrics_step(run) < step:
        state = slurm.state(job)
        text = log.read_text() if log.exists() else ""
        assert state in ("", "PENDING", "RUNNING", "CONFIGURING"), f"job {job} {state}:\n{text[-3000:]}"
        assert time.time() < deadline, f"training did not reach step {step}:\n{text[-3000:]}"
        time.sleep(0.5)


def _stopped_step(text: str) -> int:
    """The step of the last 'stopped by a signal after step N' line; fails when there is none."""
    steps = re.findall(r"stopped by a signal after step (\d+)", text)
    assert steps, text[-4000:]
    return int(steps[-1])


def _train_job(
    slurm: LocalSlurm,
    config: Path,
    log: Path,
    sbatch_args: tuple[str, ...] = (),
    train_args: tuple[str, ...] = (),
    procs: int = PROCS,
) -> str:
    """Submit configs/slurm/train.sbatch CONFIG TRAIN_ARGS from the checkout, as the README says."""
    return slurm.sbatch(
        "--cpus-per-task=2",
        f"--output={log}",
        f"--export=ALL,PROCS_PER_NODE={procs}",
        *sbatch_args,
        str(TRAIN),
        str(config),
        *train_args,
        env={**_job_env(), "MASTER_PORT": str(_free_port())},
        cwd=ROOT,
    )


def _long_config(demo_shards: Path, tmp_path: Path) -> tuple[Path, Path]:
    run = tmp_path / "run"
    train = {"max_steps": 500, "warmup_steps": 1, "checkpoint_every": 1000, "val_every": 0}
    return run, tiny_config(demo_shards, run, tmp_path / "c.yaml", train=train)


@pytest.mark.timeout(1200)  # the first job may compile DeepSpeed's CPU comm op (minutes on a busy machine)
def test_scancel_leaves_a_checkpoint_and_the_resubmitted_job_resumes_from_it(slurm, demo_shards, tmp_path):
    run, config = _long_config(demo_shards, tmp_path)
    log = tmp_path / "train-1.out"
    job = _train_job(slurm, config, log)
    _wait_for_step(slurm, job, run, 2, log)
    slurm.run("scancel", job)  # SIGTERM to every process of the job, SIGKILL after KillWait
    slurm.wait_for(job, _ended, 120, "cancelled")
    step = _stopped_step(log.read_text())
    assert (run / "checkpoints" / f"step-{step:06d}" / "index.json").exists()
    saved = {p.name for p in (run / "checkpoints" / f"step-{step:06d}").glob("rng-rank*.pt")}
    assert saved == {f"rng-rank{rank}.pt" for rank in range(PROCS)}

    # resubmitted with 1 process (`cli.py train`, no launcher): it resumes the 2-process checkpoint
    log = tmp_path / "train-2.out"
    job = _train_job(slurm, config, log, train_args=("--set", f"train.max_steps={step + 2}"), procs=1)
    records = slurm.wait_for(job, _ended, 600, "ended")
    text = log.read_text()
    assert records[0]["JobState"] == "COMPLETED", text[-3000:]
    assert f"resumed at step {step}" in text and "1 process(es)" in text
    assert _metrics_step(run) == step + 2
    final = run / "checkpoints" / f"step-{step + 2:06d}"
    assert {p.name for p in final.glob("rng-rank*.pt")} == {"rng-rank0.pt"}


@pytest.mark.timeout(1200)
def test_the_time_limit_warning_checkpoints_requeues_and_the_job_resumes(slurm, demo_shards, tmp_path):
    run, config = _long_config(demo_shards, tmp_path)
    log = tmp_path / "train.out"
    job = _train_job(slurm, config, log)
    _wait_for_step(slurm, job, run, 2, log)
    # What `#SBATCH --signal=B:USR1@300` makes slurmctld send near the time limit (USR1 to the batch
    # script only), sent now instead of at a time-limit check (every 30 s, up to a minute early).
    slurm.run("scancel", "--batch", "--signal=USR1", job)
    slurm.wait_for(job, lambda r: int(r[0].get("Restarts", "0")) >= 1, 300, "requeued")
    record = slurm.wait_for(job, lambda r: r[0]["JobState"] != "COMPLETING", 120, "requeue settled")[0]
    if record["JobState"] == "PENDING" and record.get("Reason") == "BeginTime":
        # slurmctld holds a requeued job back for about 2 minutes (EligibleTime); start it now instead
        slurm.run("scontrol", "update", f"JobId={job}", "StartTime=now")
    text = log.read_text()
    assert "time limit near" in text and "requeueing job" in text, text[-3000:]
    step = _stopped_step(text)
    assert (run / "checkpoints" / f"step-{step:06d}" / "index.json").exists()
    deadline = time.time() + 600  # --open-mode=append: the requeued run writes to the same log
    while f"resumed at step {step}" not in log.read_text():
        assert slurm.state(job) in ("", "PENDING", "RUNNING", "CONFIGURING", "REQUEUED"), log.read_text()
        assert time.time() < deadline, log.read_text()[-3000:]
        time.sleep(1)
    assert "(restart 1)" in log.read_text()
    slurm.run("scancel", job)
    slurm.wait_for(job, _ended, 120, "cancelled")
