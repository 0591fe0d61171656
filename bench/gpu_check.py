#!/usr/bin/env python
"""The GPU check: one command, at most 8 minutes on one GPU machine, every figure in bench/results/gpu.json.

    python bench/gpu_check.py                  # make gpu-check (on the GPU machine, or a CPU dry run)
    python bench/gpu_check.py --fetch-wheels   # make gpu-wheels (here, where PyPI answers): fills .whl/

The GPU image has Python 3.12, torch 2.11 and timm, no internet, and none of DeepSpeed, webdataset,
ffmpeg-python, imageio-ffmpeg or PyAV. Steps, in this order, each with its own time limit, all within
--total-s:
  install  the wheels in .whl/ that this Python lacks (or has older) -> --site, on PYTHONPATH; never torch
  pytest   pytest -m gpu tests/test_gpu.py
  data     the demo shards: shards/demo as carried, else built as `make demo-data` does when ffmpeg and
           PyAV are here (their wheels, 68 MB and 36 MB, do not fit the 64 MiB a device call carries)
  train    deepspeed --num_gpus 1 cli.py train --config configs/demo.yaml in bf16: 25 steps (10 of warm-up)
           with a checkpoint, then the same command to 50 steps, which must resume from step 25
  loader   bench/loader.py --gpu-decode-only: nvJPEG against the CPU decoder on 256-px frames
  model    bench/model.py --gpu-only: supervised and whole-SVFormer steps of base and small at 8x224 in bf16,
           eager then compiled, within the time left (the bench names the parts it had no time for)
Without CUDA the same command runs each step's CPU side (the gpu tests are collected and skipped, fp32
training, the CPU decoder, the steps' code on a tiny model, eager only) and lists what it skipped.
Output: bench/results/gpu.json (gpu_cpu.json without a GPU), with the bench results it ran beside it
(gpu_model.json, gpu_loader.json) and the whole log in runs/gpu_check/gpu_check.log.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import RESULTS_DIR, machine_info, save_result  # noqa: E402

WHEEL_DIR = ROOT / ".whl"
RUN_DIR = ROOT / "runs" / "gpu_check"
DEMO = ROOT / "shards" / "demo"
CARRY_LIMIT_MB = 64.0
# The wheels the GPU image lacks: DeepSpeed (built here from its sdist; pure Python without prebuilt ops),
# webdataset, ffmpeg-python and the dependencies of the three that the image does not hold.
GPU_WHEELS = (
    "deepspeed",
    "webdataset",
    "braceexpand",
    "ffmpeg-python",
    "future",
    "hjson",
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "typing-extensions",
)
LEFT_OUT = {"imageio-ffmpeg": "68 MB (a static ffmpeg)", "av": "36 MB (FFmpeg's libraries)"}
NEVER = ("torch", "torchvision", "torchaudio", "triton", "nvidia")
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
# Each step's own limit in seconds on a GPU machine (the model bench gets what is left).
LIMITS = {"install": 60, "pytest": 150, "data": 150, "train_first": 120, "train_resume": 120, "loader": 60}


# ---------------------------------------------------------------------------------------- wheels


def pinned_version(name: str) -> str:
    """requirements.txt's pin, else the version this environment runs (the one the CPU tests passed with)."""
    key = name.lower().replace("_", "-")
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.split("==")[0].strip().lower().replace("_", "-") == key and "==" in line:
            return line.split("==")[1].split()[0]
    return importlib.metadata.version(name)


def tree_mb() -> float:
    """MiB of what a device call sends besides carried paths: tracked and untracked, not ignored, files."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    return sum((ROOT / f).stat().st_size for f in files if f and (ROOT / f).is_file()) / 2**20


def dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20 if path.exists() else 0.0


def fetch_wheels(wheels: Path) -> None:
    """Fill `wheels` (.whl/) with a wheel per GPU_WHEELS entry for CPython 3.12 manylinux x86_64; check the size."""
    wheels.mkdir(exist_ok=True)
    wanted = {name: pinned_version(name) for name in GPU_WHEELS}
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    plain = [f"{n}=={v}" for n, v in wanted.items() if n != "deepspeed"]
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    subprocess.run(
        pip
        + [
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.12",
            "--implementation",
            "cp",
            *platforms,
            "-d",
            str(wheels),
            *plain,
        ],
        check=True,
    )
    version = wanted["deepspeed"]
    if not list(wheels.glob(f"deepspeed-{version}-*.whl")):
        # PyPI has only DeepSpeed's sdist; without DS_BUILD_OPS it builds a pure-Python wheel (ops JIT-built
        # on first use, and this project uses none). --no-build-isolation: its setup.py imports torch.
        subprocess.run(
            pip + ["wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), f"deepspeed=={version}"],
            check=True,
            env={**os.environ, "DS_BUILD_OPS": "0"},
        )
    keep = {f"{n.replace('-', '_').lower()}-{v}" for n, v in wanted.items()}
    for whl in wheels.glob("*.whl"):  # one version of each: two stop the whole install
        if "-".join(whl.name.split("-")[:2]).lower() not in keep:
            whl.unlink()
            print(f"removed {whl.name} (not one of the wanted versions)")
    sizes = {w.name: round(w.stat().st_size / 2**20, 2) for w in sorted(wheels.glob("*.whl"))}
    total, shards, tree = sum(sizes.values()), dir_mb(DEMO), tree_mb()
    for name, size in sizes.items():
        print(f"{size:8.2f} MiB  {name}")
    print(
        f"{total:8.2f} MiB  .whl/ ({len(sizes)} wheels); left out: "
        + "; ".join(f"{k} {v}" for k, v in LEFT_OUT.items())
        + " - the demo shards travel prebuilt instead"
    )
    print(
        f"a device call carrying .whl and shards/demo sends {total + shards + tree:.1f} MiB "
        f"(wheels {total:.1f} + shards/demo {shards:.1f} + working tree {tree:.1f}) of {CARRY_LIMIT_MB:.0f} MiB"
    )
    if total > CARRY_LIMIT_MB or total + shards + tree > CARRY_LIMIT_MB:
        raise SystemExit(f"over the {CARRY_LIMIT_MB:.0f} MiB a device call carries")
    if not (DEMO / "labeled" / "manifest.json").exists():
        print("shards/demo is missing: run `make demo-data` too (the GPU image has no ffmpeg or PyAV to build it)")


def missing_wheels(wheels: Path) -> list[Path]:
    """The wheels in `wheels` (.whl/) whose distribution this Python lacks or holds in an older version."""
    from packaging.version import Version

    out = []
    for whl in sorted(wheels.glob("*.whl")):
        name, version = whl.name.split("-")[:2]
        if name.lower().startswith(NEVER):
            raise SystemExit(f"{whl}: the check never replaces the image's {name}; remove it from .whl/")
        try:
            if Version(importlib.metadata.version(name)) >= Version(version):
                continue
        except importlib.metadata.PackageNotFoundError:
            pass
        out.append(whl)
    return out


# ---------------------------------------------------------------------------------------- running steps


class Check:
    """Runs the steps' commands with their limits, logs everything, and records each step's outcome."""

    def __init__(self, total_s: float, gpu: bool) -> None:
        self.start, self.total, self.gpu = time.perf_counter(), total_s, gpu
        self.steps: dict[str, dict] = {}
        self.skipped: list[str] = []
        self.output = ""  # the last command's whole output
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        self.log = (RUN_DIR / "gpu_check.log").open("w")

    def left(self) -> float:
        return self.total - (time.perf_counter() - self.start)

    def say(self, text: str) -> None:
        print(f"[gpu-check {time.perf_counter() - self.start:6.1f}s] {text}", file=sys.stderr, flush=True)
        self.log.write(text + "\n")
        self.log.flush()

    def skip(self, step: str, reason: str) -> None:
        self.steps[step] = {"status": "skipped", "reason": reason}
        self.skipped.append(f"{step}: {reason}")
        self.say(f"{step}: skipped ({reason})")

    def run(self, step: str, cmd: list[str], limit: float) -> dict:
        """Run `cmd` in its own process group, killed at min(limit, time left); returns the step record."""
        limit = min(limit, self.left() - 5)
        if limit < 10:
            self.skip(step, f"no time left ({self.left():.0f} s of --total-s {self.total:g})")
            return self.steps[step]
        self.say(f"{step}: {' '.join(cmd)}  (limit {limit:.0f} s)")
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            output, _ = proc.communicate(timeout=limit)
            status = "passed" if proc.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher's ranks too
            output, _ = proc.communicate()
            status = "timeout"
        self.log.write(output)
        self.output = output
        record = {
            "status": status,
            "returncode": proc.returncode,
            "wall_s": round(time.perf_counter() - start, 1),
            "limit_s": round(limit),
            "command": " ".join(cmd),
            "tail": [line[-300:] for line in output.splitlines()[-25:]],
        }
        self.steps[step] = record
        self.say(f"{step}: {status} in {record['wall_s']} s")
        return record


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_result(name: str) -> dict | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


# ---------------------------------------------------------------------------------------- the steps


def step_install(check: Check, wheel_dir: Path, site: Path) -> None:
    wheels = missing_wheels(wheel_dir) if wheel_dir.exists() else []
    if wheels:
        check.run(
            "install",
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-index",
                "--no-deps",
                "--no-compile",
                "--no-cache-dir",
                "--upgrade",
                "--target",
                str(site),
                *map(str, wheels),
            ],
            LIMITS["install"],
        )
        check.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), check.env.get("PYTHONPATH")]))
        check.steps["install"]["wheels"] = [w.name for w in wheels]
    else:
        check.steps["install"] = {"status": "passed", "wheels": [], "note": "nothing missing from this Python"}
    probe = (
        "import json, torch, deepspeed, webdataset, pydantic; print(json.dumps({m.__name__: m.__version__ "
        "for m in (torch, deepspeed, webdataset, pydantic)} | {'torch_file': torch.__file__}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=check.env, capture_output=True, text=True)
    if out.returncode == 0:
        check.steps["install"]["versions"] = json.loads(out.stdout.strip().splitlines()[-1])
    else:
        check.steps["install"].update(status="failed", error=out.stderr.strip().splitlines()[-1:])
    check.say(f"install: {check.steps['install'].get('versions') or check.steps['install'].get('error')}")


def step_pytest(check: Check) -> None:
    xml = RUN_DIR / "pytest.xml"
    record = check.run(
        "pytest",
        [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "gpu",
            "tests/test_gpu.py",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            f"--junitxml={xml}",
        ],
        LIMITS["pytest"],
    )
    if not xml.exists() or record.get("status") == "skipped":
        return
    suite = ET.parse(xml).getroot()
    suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    reasons = sorted({s.get("message", "") for s in suite.iter("skipped")})
    problems = [
        (c.get("name"), c.find("failure") if c.find("failure") is not None else c.find("error"))
        for c in suite.iter("testcase")
    ]
    record.update(counts=counts, failed=[f"{name}: {p.get('message')}" for name, p in problems if p is not None])
    if counts["skipped"]:
        check.skipped.append(
            f"pytest: {counts['skipped']} of {counts['tests']} gpu tests skipped: " + "; ".join(reasons)
        )


def demo_ready() -> bool:
    return all((DEMO / part / "manifest.json").exists() for part in ("labeled", "unlabeled", "val"))


def step_data(check: Check) -> bool:
    """True when the demo shards are there (carried, or built here as `make demo-data` builds them)."""
    if demo_ready():
        check.steps["data"] = {"status": "passed", "note": "shards/demo present (carried or built before)"}
        return True
    probe = subprocess.run(
        [sys.executable, "-c", "import av; from svformer.video.ffmpeg_bin import ffmpeg_exe; ffmpeg_exe()"],
        cwd=ROOT,
        env=check.env,
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        check.skip(
            "data",
            "no shards/demo and no ffmpeg/PyAV to build it: run `make demo-data` where they are and carry shards/demo",
        )
        return False
    workers = str(min(8, os.cpu_count() or 2))
    script = (
        f"set -e; P={sys.executable}; $P cli.py synth --kind events --out data/demo --videos-per-class 64; "
        "$P cli.py split --list data/demo/all.txt --labeled 0.1 --val 0.5 --seed 0 --out data/demo/lists; "
        "for part in labeled unlabeled val; do $P cli.py prep --list data/demo/lists/$part.txt "
        "--data-root data/demo --num-classes 8 --classes data/demo/classes.txt --short-side 64 --fps 15 "
        f"--workers {workers} --out shards/demo/$part; done"
    )
    check.run("data", ["bash", "-c", script], LIMITS["data"])
    return demo_ready()


def step_train(check: Check, extra_sets: list[str]) -> None:
    out_dir = RUN_DIR / "train"
    shutil.rmtree(out_dir, ignore_errors=True)
    base = [
        sys.executable,
        "-m",
        "deepspeed.launcher.runner",
        "--num_gpus",
        "1",
        "--master_port",
        str(free_port()),
        "cli.py",
        "train",
        "--config",
        "configs/demo.yaml",
        "--set",
        f"train.output_dir={out_dir}",
        "--set",
        f"train.precision={'bf16' if check.gpu else 'fp32'}",
        "--set",
        "train.warmup_steps=10",
        "--set",
        "train.checkpoint_every=25",
        "--set",
        "train.val_every=25",
        "--set",
        "train.val_max_videos=32",
        "--set",
        "train.log_every=5",
    ] + [a for kv in extra_sets for a in ("--set", kv)]
    ckpt = out_dir / "checkpoints"
    first = check.run("train_first", base + ["--set", "train.max_steps=25"], LIMITS["train_first"])
    first["checkpoint_25"] = (ckpt / "step-000025").is_dir()
    if first.get("status") != "passed" or not first["checkpoint_25"]:
        check.skip("train_resume", "the first 25 steps did not end with checkpoint step-000025")
        return
    base[base.index("--master_port") + 1] = str(free_port())
    second = check.run("train_resume", base + ["--set", "train.max_steps=50"], LIMITS["train_resume"])
    metrics = (
        [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
        if (out_dir / "metrics.jsonl").exists()
        else []
    )
    train_rows = [m for m in metrics if m.get("split") == "train"]
    second.update(
        checkpoint_50=(ckpt / "step-000050").is_dir(),
        resumed_at_25="resumed" in check.output and "step 25" in check.output,
        last_train_metrics=train_rows[-1] if train_rows else None,
        val=[m for m in metrics if m.get("split") == "val"],
    )
    if second.get("status") == "passed" and not (
        second["checkpoint_50"] and train_rows and train_rows[-1].get("step") == 50
    ):
        second["status"] = "failed"
        second["reason"] = "no step-000050 checkpoint or no step-50 metrics after the resume"


def step_loader(check: Check, prefix: str) -> None:
    name = f"{prefix}_loader"
    record = check.run(
        "loader",
        [
            sys.executable,
            "bench/loader.py",
            "--shards",
            str(DEMO / "labeled"),
            "--gpu-decode-only",
            "--decode-short-side",
            "256",
            "--rounds",
            "1",
            "--seconds",
            "4" if check.gpu else "2",
            "--name",
            name,
        ],
        LIMITS["loader"],
    )
    result = read_result(name)
    if result is not None and record.get("status") == "passed":
        record["result"] = result
        check.skipped += [f"loader: {k}: {v}" for k, v in result.get("skipped", {}).items()]


def step_model(check: Check, prefix: str) -> None:
    name = f"{prefix}_model"
    cmd = [sys.executable, "bench/model.py", "--gpu-only", "--name", name]
    if check.gpu:
        budget = check.left() - 40  # the bench's start-up and its last part's overrun
        cmd += ["--budget-s", f"{max(budget, 30):.0f}"]
    else:
        cmd += [
            "--device",
            "cpu",
            "--variants",
            "tiny",
            "--depth",
            "2",
            "--img-size",
            "32",
            "--frames",
            "4",
            "--batch",
            "2",
            "--iters",
            "2",
            "--modes",
            "eager",
        ]
        check.skipped += [
            "model: small and base at 8x224 and MFU (GPU only; a tiny 2-block model at 4x32 runs the steps' code here)",
            "model: compiled parts (inductor's CPU build takes about 50 s a step on 2 cores; "
            "bench/model.py --device cpu --modes compile runs them)",
        ]
    (RESULTS_DIR / f"{name}.json").unlink(missing_ok=True)
    record = check.run("model", cmd, check.left() - 5)
    result = read_result(name)  # written after every part, so a timeout still leaves the finished ones
    if result is not None:
        record["result"] = result
        steps = result.get("steps", {})
        check.skipped += [f"model: {s}" for s in steps.get("skipped", [])]
        if steps.get("errors"):
            record["status"] = "failed" if record.get("status") == "passed" else record.get("status")


def gpu_facts(env: dict) -> dict:
    """The GPU as torch (in a child process, so this one holds no CUDA context) and nvidia-smi see it."""
    probe = (
        "import json, torch; c = torch.cuda.is_available(); print(json.dumps({'cuda': c, 'torch': "
        "torch.__version__, 'name': torch.cuda.get_device_name(0) if c else None, 'capability': "
        "torch.cuda.get_device_capability(0) if c else None, 'memory_gib': round(torch.cuda."
        "get_device_properties(0).total_memory / 2**30, 1) if c else None}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    if facts["cuda"] and shutil.which("nvidia-smi"):
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,power.limit", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        )
        facts["nvidia_smi"] = smi.stdout.strip()
    return facts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fetch-wheels", action="store_true", help="fill .whl/ (make gpu-wheels) and stop")
    parser.add_argument("--total-s", type=float, default=470, help="the whole check's time limit in seconds")
    parser.add_argument("--wheels", type=Path, default=WHEEL_DIR, help="the wheel folder (default .whl/)")
    parser.add_argument("--site", type=Path, default=Path("/tmp/site"), help="where missing wheels are installed")
    parser.add_argument(
        "--train-set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="another override for both training runs, e.g. train.compile=true (repeatable)",
    )
    parser.add_argument("--copy-to", type=Path, help="also copy the results and the log into this directory")
    args = parser.parse_args()
    if args.fetch_wheels:
        fetch_wheels(args.wheels)
        return

    facts = gpu_facts({**os.environ})
    check = Check(args.total_s, gpu=facts["cuda"])
    prefix = "gpu" if check.gpu else "gpu_cpu"
    check.say(f"{facts['name'] or 'no CUDA GPU'}; torch {facts['torch']}; {prefix}.json; limit {args.total_s:g} s")
    step_install(check, args.wheels, args.site)
    if check.steps["install"]["status"] != "passed":
        check.skip("pytest", "install failed")
    else:
        step_pytest(check)
        if step_data(check):
            step_train(check, args.train_set)
            step_loader(check, prefix)
        else:
            check.skip("train_first", "no demo shards")
            check.skip("loader", "no demo shards")
        step_model(check, prefix)

    model = check.steps.get("model", {}).get("result", {}).get("steps", {})
    base = {n: p["mfu"] for n, p in model.get("parts", {}).items() if n.startswith("base/svformer/") and p.get("mfu")}
    if base and not model.get("svformer_base"):  # the bench was stopped before its own summary
        best = max(base, key=base.get)
        model["svformer_base"] = {"mfu": base[best], "part": best, "target_mfu": 0.45, "met": base[best] >= 0.45}
    loader = check.steps.get("loader", {}).get("result", {})
    resume = check.steps.get("train_resume", {})
    result = {
        "gpu": facts["name"],
        "gpu_facts": facts,
        "status": {step: record["status"] for step, record in check.steps.items()},
        "wall_s": {step: record.get("wall_s") for step, record in check.steps.items()},
        "total_wall_s": round(time.perf_counter() - check.start, 1),
        "summary": {
            "svformer_base": model.get("svformer_base"),
            "parts": {
                n: {k: p.get(k) for k in ("clips_per_s", "step_ms", "peak_mb", "mfu")}
                for n, p in model.get("parts", {}).items()
            },
            "gpu_decode_over_cpu_decode": loader.get("ratios", {}).get("gpu_decode_over_cpu_decode"),
            "pytest": check.steps.get("pytest", {}).get("counts"),
            "train_last": resume.get("last_train_metrics"),
            "train_resumed": resume.get("resumed_at_25"),
        },
        "skipped": check.skipped,
        "steps": check.steps,
        "machine": machine_info(),
    }
    check.log.close()
    save_result(prefix, result)
    if args.copy_to:
        args.copy_to.mkdir(parents=True, exist_ok=True)
        for path in [RESULTS_DIR / f"{prefix}{s}.json" for s in ("", "_model", "_loader")] + [check.log.name]:
            if Path(path).exists():
                shutil.copy(path, args.copy_to)
    failed = [s for s, r in check.steps.items() if r["status"] in ("failed", "timeout")]
    print(
        f"gpu-check: {'FAILED ' + ', '.join(failed) if failed else 'passed'}; skipped: "
        + ("; ".join(check.skipped) or "nothing"),
        file=sys.stderr,
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
