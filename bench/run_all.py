"""Run every benchmark and write bench/results/summary.md (the README's Results tables come from it).

    python bench/run_all.py [prep loader model ssl e2e]     # default: all, in that order

Each benchmark is its own script that prints one JSON object and saves bench/results/<name>.json;
this runner only sequences them (they must not share the 2 cores) and tabulates their ratios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SCRIPTS = {
    "prep": ["bench/prep.py"],
    "loader": ["bench/loader.py"],
    "model": ["bench/model.py"],
    "ssl": ["bench/ssl_vs_supervised.py"],
    "e2e": ["bench/e2e.py"],
}
RESULT_FILES = {
    "prep": "prep.json",
    "loader": "loader.json",
    "model": "model.json",
    "ssl": "ssl.json",
    "e2e": "e2e.json",
}
TARGETS = {
    "prep_over_ffmpeg": ("<=", 1.25),
    "shards_over_on_the_fly": (">=", 5.0),
    "shards_over_jpeg_bound": (">=", 0.6),
    "fused_over_unfused": (">=", 2.0),
}


def run(names: list[str]) -> dict[str, float]:
    """Run the named benchmarks one after another; returns wall seconds per benchmark."""
    walls = {}
    for name in names:
        start = time.perf_counter()
        print(f"== bench {name}", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, *SCRIPTS[name]], cwd=ROOT, check=True)
        walls[name] = round(time.perf_counter() - start, 1)
    return walls


def summary() -> str:
    """A Markdown table of every ratio found in bench/results/*.json, with its target."""
    lines = ["| benchmark | ratio | measured | target | machine |", "|---|---|---|---|---|"]
    for name, filename in RESULT_FILES.items():
        path = RESULTS / filename
        if not path.exists():
            continue
        result = json.loads(path.read_text())
        machine = result.get("machine", {})
        where = f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores" + (
            f", {machine['gpu']}" if machine.get("gpu") else ""
        )
        for ratio, value in result.get("ratios", {}).items():
            op, target = TARGETS.get(ratio, ("", None))
            shown = f"{value:.3f}" if isinstance(value, float) else str(value)
            lines.append(f"| {name} | {ratio} | {shown} | {op} {target if target is not None else '-'} | {where} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="Run benchmarks in sequence and write bench/results/summary.md.")
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {', '.join(SCRIPTS)})")
    names = parser.parse_args().names or list(SCRIPTS)
    unknown = [n for n in names if n not in SCRIPTS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]}; choose from {', '.join(SCRIPTS)}")
    walls = run(names)
    (RESULTS / "summary.md").write_text(summary())
    print(json.dumps({"benchmarks": names, "wall_s": walls, "summary": str(RESULTS / "summary.md")}))


if __name__ == "__main__":
    main()
