"""Shared helpers for the benchmark scripts: machine info, peak memory, saving one JSON result.

Every bench prints one JSON object as its last stdout line and writes it to
`bench/results/<name>.json` (see DESIGN.md, "Performance targets"). Keep this module stable:
other benches import it.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from svformer.files import write_atomic  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (Linux), else whatever platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: CPU model, usable cores, torch threads, GPU (or None)."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "gpu": None,
    }
    if "torch" in sys.modules or _importable("torch"):
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        info["cpu_native_bf16"] = bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_count"] = torch.cuda.device_count()
    return info


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (never decreases)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is KiB on Linux and bytes on macOS.
    return kb / 1024 / (1024 if sys.platform == "darwin" else 1)


def current_rss_mb() -> float:
    """Current resident set size in MiB (Linux /proc; falls back to the peak elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


class PeakRSS:
    """Context manager sampling this process's RSS in a thread: `.peak_mb` is the highest seen inside.

    Unlike `peak_rss_mb` it gives a per-phase peak (RSS falls back as large buffers are freed).
    Sampled every `interval` seconds, so very short spikes can be missed.
    """

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, current_rss_mb())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.peak_mb = current_rss_mb()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_mb = max(self.peak_mb, current_rss_mb())


def cpu_flags() -> set[str]:
    """The CPU feature flags from /proc/cpuinfo (empty set where unavailable)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def reset_peak_cuda() -> None:
    """Reset the CUDA peak-memory counter (no-op without CUDA)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_cuda_mb() -> float | None:
    """Peak CUDA memory allocated since the last reset, in MiB; None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / 2**20


def save_result(name: str, obj: dict[str, Any], directory: Path = RESULTS_DIR) -> Path:
    """Write `obj` to <directory>/<name>.json (default bench/results) and print it as one JSON line (the last line)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    text = json.dumps(obj, sort_keys=False, default=str)
    write_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()
    print(text, flush=True)
    return path
