"""bench/ssl_vs_supervised.py on your own config: every arm trains and is scored, results go where asked."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from _runs import ROOT, env, tiny_config


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "bench/ssl_vs_supervised.py", *args],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=1400,
    )


@pytest.mark.timeout(1500)  # 4 arms, each trained and scored in a fresh process; may build DeepSpeed's op
def test_bench_compares_arms_on_a_given_config_with_overrides(demo_shards, tmp_path):
    config = tiny_config(demo_shards, tmp_path / "unused", tmp_path / "c.yaml", train={"warmup_steps": 1})
    results = tmp_path / "results"
    done = _bench(
        "--config",
        str(config),
        "--set",
        "ssl.threshold=0.0",
        "--seeds",
        "0",
        "1",
        "--no-ablations",
        "--steps",
        "2",
        "--jobs",
        "2",
        "--views",
        "1x1",
        "--work",
        str(tmp_path / "work"),
        "--results",
        str(results),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads((results / "ssl.json").read_text())
    assert json.loads(done.stdout.strip().splitlines()[-1]) == json.loads(json.dumps(saved))
    assert sorted((r["arm"], r["seed"]) for r in saved["runs"]) == [
        ("supervised", 0),
        ("supervised", 1),
        ("svformer", 0),
        ("svformer", 1),
    ]
    assert all("teacher_top1" in r for r in saved["runs"] if r["arm"] == "svformer")
    assert not any("teacher_top1" in r for r in saved["runs"] if r["arm"] == "supervised")
    assert saved["table"]["svformer"]["runs"] == 2
    by_arm = {(r["arm"], r["seed"]): r for r in saved["runs"]}
    assert saved["paired_gain"]["per_seed"] == [
        by_arm["svformer", s]["best_top1"] - by_arm["supervised", s]["student_top1"] for s in (0, 1)
    ]
    assert "ssl.threshold=0.0" in saved["setting"] and "2 steps" in saved["setting"]
    # Every arm really got the shared override and its own: the run's saved config says so.
    run_cfg = (tmp_path / "work" / "svformer-seed1" / "config.yaml").read_text()
    assert "threshold: 0.0" in run_cfg and "seed: 1" in run_cfg
    assert "method: supervised" in (tmp_path / "work" / "supervised-seed0" / "config.yaml").read_text()
    # The svformer arms run first (longest first), yet the tables list supervised first.
    assert list(saved["table"]) == ["supervised", "svformer"]
    sup, ssl = saved["table"]["supervised"]["best_top1"], saved["table"]["svformer"]["best_top1"]
    spread = sup["std"] + ssl["std"]
    expected = (ssl["mean"] - sup["mean"]) / spread if spread > 0 else None
    assert saved["margin_over_spread"] == (pytest.approx(expected) if expected is not None else None)
    table = (results / "ssl.md").read_text()
    assert (results / "ssl_bars.png").stat().st_size > 0 and "| svformer | 2 |" in table
    per_seed = ", ".join(f"{100 * by_arm['svformer', s]['best_top1']:.1f}" for s in (0, 1))
    assert f"| {per_seed} |" in table
    assert "SVFormer minus supervised, seed by seed" in table


def test_bench_gives_the_demo_arms_the_global_batch_of_make_demo():
    # make demo trains configs/demo.yaml on 2 processes; each one-process arm gets their batch per step.
    sys.path.insert(0, str(ROOT / "bench"))
    from ssl_vs_supervised import BUILT_IN, DEMO_CONFIG

    from svformer.config import load_config

    demo = load_config(str(DEMO_CONFIG))
    arms = load_config(str(DEMO_CONFIG), BUILT_IN[DEMO_CONFIG][2])
    assert arms.data.batch_size == 2 * demo.data.batch_size
    assert arms.data.unlabeled_ratio == demo.data.unlabeled_ratio and arms.train == demo.train


def test_bench_refuses_a_config_whose_shards_are_missing(tmp_path):
    config = tiny_config(tmp_path / "nowhere", tmp_path / "run", tmp_path / "c.yaml")
    done = _bench("--config", str(config), "--seeds", "0", "--no-ablations", "--results", str(tmp_path / "r"))
    assert done.returncode != 0
    assert "no shards at" in done.stderr and "nowhere" in done.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--set", "ssl.thresold=0.5"], "unknown key ssl.thresold"),  # refused before any arm starts
        (["--steps", "1"], "seed 0 failed to train: error: train.warmup_steps"),  # whichever arm runs first
    ],
)
def test_bench_reports_a_bad_setting_or_failing_arm_in_one_line(demo_shards, tmp_path, extra, needle):
    config = tiny_config(demo_shards, tmp_path / "unused", tmp_path / "c.yaml")
    done = _bench(
        "--config",
        str(config),
        *extra,
        "--seeds",
        "0",
        "--no-ablations",
        "--jobs",
        "1",
        "--work",
        str(tmp_path / "work"),
        "--results",
        str(tmp_path / "r"),
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and needle in last
    assert "Traceback" not in done.stderr and not (tmp_path / "r").exists()
