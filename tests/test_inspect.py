"""`cli.py inspect`: one JSON line per sample, a summary, and --verify catching broken shards."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from click.testing import CliRunner

import cli

ROOT = Path(__file__).resolve().parent.parent


def _invoke(*args: str):
    return CliRunner().invoke(cli.cli, ["inspect", *args])


def _records(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_inspect_prints_one_json_line_per_sample_then_a_summary(demo_shards: Path):
    result = _invoke(str(demo_shards / "unlabeled"))
    assert result.exit_code == 0, result.output
    records = _records(result.output)
    samples, summary = records[:-1], records[-1]["summary"]
    assert len(samples) == summary["samples"] == 16
    assert set(samples[0]) == {"shard", "key", "label", "num_frames", "height", "width", "fps", "source"}
    assert summary["frames"] == sum(s["num_frames"] for s in samples)
    assert summary["classes"] == {str(c): 2 for c in range(8)}


def test_inspect_reads_a_single_shard_file(demo_shards: Path):
    shard = sorted((demo_shards / "unlabeled").glob("shard-*.tar"))[0]
    result = _invoke(str(shard))
    assert result.exit_code == 0
    records = _records(result.output)
    assert records[-1]["summary"]["shards"] == 1
    assert {r["shard"] for r in records[:-1]} == {shard.name}


def test_inspect_verify_decodes_every_frame_of_good_shards(demo_shards: Path):
    result = _invoke(str(demo_shards / "val"), "--verify")
    assert result.exit_code == 0, result.output
    summary = _records(result.output)[-1]["summary"]
    assert summary["problems"] == 0 and summary["samples"] == 8


def test_inspect_verify_reports_a_corrupt_frame_and_checksum_and_exits_2(demo_shards: Path, tmp_path: Path):
    broken = tmp_path / "val"
    shutil.copytree(demo_shards / "val", broken)
    shard = broken / json.loads((broken / "manifest.json").read_text())["shards"][0]["name"]
    with tarfile.open(shard) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".jpgs"))
    data = bytearray(shard.read_bytes())
    data[member.offset_data : member.offset_data + 4] = b"\x00\x00\x00\x00"  # first frame loses its SOI marker
    shard.write_bytes(bytes(data))
    result = _invoke(str(broken), "--verify")
    assert result.exit_code == 2
    problems = [r for r in _records(result.output) if "problem" in r]
    key = member.name.split(".")[0]
    assert any(p["key"] == key and p["problem"].startswith("frame 0: JPEG does not decode") for p in problems)
    assert any(p["key"] is None and "SHA-256" in p["problem"] for p in problems)


def test_inspect_of_a_missing_path_prints_one_line_and_exits_2(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "inspect", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and proc.stderr.strip().count("\n") == 0
