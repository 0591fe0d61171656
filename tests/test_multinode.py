"""Multi-node training without ssh (`deepspeed --hostfile H --no_ssh --node_rank i`, one launcher per node, as
srun starts them), run as two launchers on this machine; its checkpoint resumes on 1 node x 2 processes,
then on 1 process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from _runs import ROOT, VENV_BIN, _free_port, cli, env, launcher, tiny_config


def node_launchers(hostfile: Path, *args: str) -> list[list[str]]:
    """The command each node runs: the same hostfile, master and port everywhere, its own --node_rank."""
    port = str(_free_port())
    nodes = len(hostfile.read_text().splitlines())
    return [
        [str(VENV_BIN / "deepspeed"), "--hostfile", str(hostfile), "--no_ssh", "--node_rank", str(rank)]
        + ["--master_addr", "127.0.0.1", "--master_port", port, "cli.py", *args]
        for rank in range(nodes)
    ]


@pytest.mark.timeout(1500)  # 2 launchers, then 1x2, then 1 process: minutes on a loaded 2-core machine
def test_two_nodes_train_and_checkpoint_then_resume_on_one_node_then_one_process(demo_shards, tmp_path):
    run = tmp_path / "run"
    config = tiny_config(
        demo_shards,
        run,
        tmp_path / "c.yaml",
        train={"max_steps": 2, "warmup_steps": 1, "checkpoint_every": 2, "val_every": 0},
    )
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node0 slots=1\nnode1 slots=1\n")  # names only: --no_ssh never contacts them
    nodes = [
        subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
        for cmd in node_launchers(hostfile, "train", "--config", str(config))
    ]  # fmt: skip
    try:
        outputs = [node.communicate(timeout=500)[0] for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
                node.communicate()
    for node, stderr in zip(nodes, outputs):
        assert node.returncode == 0, stderr[-3000:]
    assert "2 process(es)" in outputs[0]  # node 0 holds global rank 0, which logs
    ckpt = run / "checkpoints" / "step-000002"
    assert (ckpt / "index.json").exists()
    assert len(list(ckpt.glob("zero_pp_rank_*_optim_states.pt"))) == 2  # one optimizer partition per node
    assert {p.name for p in ckpt.glob("rng-rank*.pt")} == {"rng-rank0.pt", "rng-rank1.pt"}

    one_node = subprocess.run(
        launcher("train", "--config", str(config), "--set", "train.max_steps=4", "--set", "train.checkpoint_every=4"),
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert one_node.returncode == 0, one_node.stderr[-3000:]
    assert "resumed at step 2" in one_node.stdout + one_node.stderr

    one = cli("train", "--config", str(config), "--set", "train.max_steps=5", "--set", "train.checkpoint_every=5")
    assert one.returncode == 0, one.stderr[-3000:]
    assert "resumed at step 4" in one.stdout + one.stderr
    assert len(list((run / "checkpoints" / "step-000005").glob("zero_pp_rank_*_optim_states.pt"))) == 1
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]
