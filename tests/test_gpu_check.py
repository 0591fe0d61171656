"""The GPU check's CPU dry run: `make gpu-check` on a machine without CUDA runs every step's CPU side,
passes, and names what it skipped (the GPU run itself happens on a lent GPU machine)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from _runs import ROOT, env


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine make gpu-check runs the real check")
def test_gpu_check_dry_run_on_the_cpu_passes_and_names_what_it_skipped(tmp_path):
    result = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--copy-to", str(tmp_path), "--site", str(tmp_path / "site")],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    report = json.loads((tmp_path / "gpu_cpu.json").read_text())
    assert report["gpu"] is None
    assert set(report["status"].values()) == {"passed"}, report["status"]
    assert report["summary"]["train_resumed"] is True  # the second training run resumed from the first's checkpoint
    skipped = " ".join(report["skipped"])
    for part in ("gpu tests skipped", "decode_gpu", "MFU"):
        assert part in skipped, report["skipped"]
