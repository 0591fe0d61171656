"""The wheel `pip wheel .` builds, installed into a fresh virtual environment, runs from outside the checkout.

How the environment is made, and why:
- The wheel is built from a copy of the checkout in a temp dir (setuptools writes build/ and
  *.egg-info beside the sources; a stale build/ could also carry deleted modules into the wheel), with
  `--no-build-isolation`: the project venv's setuptools, nothing downloaded.
- The fresh venv is `python -m venv --without-pip`; the project's pip installs the wheel into it
  (`pip --python FRESH install --no-deps --no-index WHEEL`), so svformer comes only from the wheel.
  Its third-party dependencies (torch, deepspeed, ...: GBs, and no network in CI) come from the project
  venv through a .pth file that runs `site.addsitedir(<project site-packages>)`. A .pth entry is added
  after the venv's own site-packages, so the wheel's svformer is found first; the checkout's sources are
  never on sys.path (every command runs in a temp dir, PYTHONPATH unset), and the tests assert that
  `svformer.__file__` lies in the fresh venv.
- The DeepSpeed launcher runs as `python -m deepspeed.launcher.runner` (what the `deepspeed` script
  runs; the fresh venv has no scripts of its dependencies), with `--module svformer.cli`, the form the
  README gives.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml
from _runs import ROOT, env, tiny_config

# top-level entries of the checkout that are not sources (data, runs, environments, build outputs)
NOT_SOURCES = {
    ".git",
    ".venv",
    "data",
    "runs",
    "shards",
    "weights",
    ".whl",
    "build",
    "dist",
    ".pytest_cache",
    ".ruff_cache",
}


def _copy_ignore(directory: str, names: list[str]) -> set[str]:
    top = NOT_SOURCES if Path(directory).resolve() == ROOT else set()
    return {n for n in names if n in top or n == "__pycache__" or n.endswith(".egg-info")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of this checkout."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=_copy_ignore, symlinks=True)
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q"]
    cmd += ["--disable-pip-version-check", "-w", str(tmp / "dist")]
    subprocess.run(cmd, check=True, cwd=tmp, env=env(), capture_output=True, timeout=300)
    (built,) = (tmp / "dist").glob("svformer-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh(wheel, tmp_path_factory) -> Path:
    """A fresh venv with svformer installed from the wheel only; returns its bin/ directory."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    deps = sysconfig.get_paths()["purelib"]  # the project venv's, as this interpreter spells it
    Path(purelib, "_project_deps.pth").write_text(f"import site; site.addsitedir({deps!r})\n")
    cmd = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q"]
    subprocess.run([*cmd, "--disable-pip-version-check", str(wheel)], check=True, timeout=300, env=env())
    return venv / "bin"


def run(fresh: Path, cwd: Path, *cmd: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run a command of the fresh venv (`svformer`, `python`) in `cwd`, its bin/ first on PATH."""
    environ = env()
    environ.pop("PYTHONPATH", None)
    environ["PATH"] = f"{fresh}{os.pathsep}{environ.get('PATH', '')}"
    return subprocess.run(
        [str(fresh / cmd[0]), *cmd[1:]], cwd=cwd, env=environ, capture_output=True, text=True, timeout=timeout
    )


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"{result.args}: rc {result.returncode}\n{result.stdout}\n{result.stderr[-3000:]}"
    return result


def test_the_wheel_holds_every_module_the_configs_and_ds_config(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(ROOT).as_posix() for pkg in ("svformer", "prep") for p in (ROOT / pkg).rglob("*.py")}
    assert sources - names == set()  # every module of both packages (the old wheel missed 5 subpackages)
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").rglob("*") if p.is_file()}
    assert {f"svformer/package_data/{name}" for name in shipped | {"ds_config.json"}} <= names
    assert not any(n.startswith(("bench/", "tests/", "configs/")) or n == "cli.py" for n in names)
    entry_points = zipfile.ZipFile(wheel).read("svformer-0.1.0.dist-info/entry_points.txt").decode()
    assert "svformer = svformer.cli:main" in entry_points


@pytest.fixture(scope="module")
def outside(fresh, tmp_path_factory) -> Path:
    """A working directory outside the checkout with demo videos and shards made by the installed command."""
    work = tmp_path_factory.mktemp("outside")
    ok(run(fresh, work, "svformer", "synth", "--out", "data", "--videos-per-class", "2", "--workers", "2"))
    prep = ["svformer", "prep", "--list", "data/all.txt", "--classes", "data/classes.txt", "--out", "shards"]
    ok(run(fresh, work, *prep, "--short-side", "64", "--fps", "15", "--workers", "2"))
    return work


def _tiny(work: Path, name: str, steps: int) -> Path:
    shards = str(work / "shards")
    return tiny_config(
        work / "unused",
        work / name,
        work / f"{name}.yaml",
        data={"labeled": shards, "unlabeled": shards, "val": shards},
        train={"max_steps": steps, "warmup_steps": 1, "checkpoint_every": steps, "val_every": 0},
    )


def test_installed_package_imports_from_the_venv_not_the_checkout(fresh, tmp_path):
    code = (
        "import svformer, svformer.train, svformer.cli; from svformer import Predictor; "
        "from svformer.resources import checkout_root, config_names; "
        "print(svformer.__file__); print(checkout_root()); print(len(config_names()))"
    )
    where, root, names = ok(run(fresh, tmp_path, "python", "-c", code)).stdout.split()
    assert Path(where).is_relative_to(fresh.parent) and root == "None"
    assert int(names) == len(list((ROOT / "configs").glob("*.yaml")))
    for cmd in (["svformer", "--help"], ["python", "-m", "svformer", "--help"]):
        shown = ok(run(fresh, tmp_path, *cmd)).stdout
        for command in ("synth", "split", "prep", "inspect", "train", "pretrain", "eval", "predict", "export", "bench"):
            assert f"  {command} " in shown
    bench = run(fresh, tmp_path, "svformer", "bench", "prep")
    assert bench.returncode == 2 and bench.stderr.strip().count("\n") == 0 and "needs a source checkout" in bench.stderr


def test_a_shipped_config_loads_by_name(fresh, tmp_path):
    code = (
        "from svformer.config import load_config; from svformer.resources import resolve_config; "
        "c = load_config(resolve_config('svformer_b_ucf101_1pct')); print(c.name, c.model.num_classes)"
    )
    assert ok(run(fresh, tmp_path, "python", "-c", code)).stdout.split() == ["svformer_b_ucf101_1pct", "101"]
    # the CLI resolves the name and reads the file: its bad override fails only after the YAML loaded
    cmd = ["svformer", "train", "--config", "svformer_b_ucf101_1pct", "--set", "model.variant=huge"]
    result = run(fresh, tmp_path, *cmd)
    assert result.returncode == 2 and "model.variant must be tiny, small or base" in result.stderr
    code = (
        "from svformer.errors import UserError; from svformer.resources import resolve_config\n"
        "try: resolve_config('configs/demo.yaml')\nexcept UserError as err: print(err)"
    )
    missing = ok(run(fresh, tmp_path, "python", "-c", code)).stdout  # no configs/ here: the line names the shipped
    assert missing.startswith("--config configs/demo.yaml: no such file") and "svformer_b_ucf101_1pct" in missing


def test_installed_command_trains_and_predicts_outside_the_checkout(fresh, outside):
    config = _tiny(outside, "run", steps=3)
    result = ok(run(fresh, outside, "svformer", "train", "--config", str(config)))
    assert "package_data/ds_config.json" in result.stderr  # no ds_config.json here: the shipped one
    assert (outside / "run" / "checkpoints" / "step-000003").is_dir()
    video = next(line.split()[0] for line in (outside / "data" / "all.txt").read_text().splitlines())
    cmd = ["svformer", "predict", "--ckpt", "run", f"data/{video}", "--views", "1x1", "--out", "rows.jsonl"]
    ok(run(fresh, outside, *cmd))
    (row,) = [json.loads(line) for line in (outside / "rows.jsonl").read_text().splitlines()]
    names = (outside / "data" / "classes.txt").read_text().split()
    assert row["error"] is None and row["name"] in names and row["source"] == f"data/{video}"


def test_deepspeed_launcher_runs_the_module_form(fresh, outside):
    import socket

    config = _tiny(outside, "launched", steps=2)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    cmd = ["python", "-m", "deepspeed.launcher.runner", "--num_gpus", "1", "--master_port", port]
    result = ok(run(fresh, outside, *cmd, "--module", "svformer.cli", "train", "--config", str(config), timeout=600))
    (spawned,) = [line for line in (result.stdout + result.stderr).splitlines() if "spawned with command" in line]
    assert "'-m', 'svformer.cli', '--local_rank=0', 'train'" in spawned  # python -m, the launcher's --local_rank
    saved = yaml.safe_load((outside / "launched" / "config.yaml").read_text())
    assert saved["train"]["max_steps"] == 2 and (outside / "launched" / "checkpoints" / "step-000002").is_dir()
