"""Rank-0 training logs: a progress bar, TensorBoard scalars and `metrics.jsonl`.

Other ranks get a monitor that does nothing, so the loop never branches on the rank to log. Step logs
arrive as device tensors (`StepLogs`) and are read back to the host together, once per flush: the
hot path never waits for the device to print a number.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

from svformer.methods.base import StepLogs


class Monitor:
    """Collects per-step scalars, averages them over `log_every` steps and writes them out."""

    def __init__(
        self,
        run_dir: Path,
        start_step: int,
        max_steps: int,
        enabled: bool,
        desc: str = "train",
        bar_keys: tuple[str, ...] = ("loss", "lr", "clips_s"),
    ) -> None:
        """`bar_keys`: the scalars the progress bar shows (the method's log keys; every one is logged)."""
        self.enabled = enabled
        self.bar_keys = bar_keys
        self.window: list[StepLogs] = []
        self.clips = 0
        self.tick = time.perf_counter()
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.jsonl = Path(run_dir) / "metrics.jsonl"
        self._drop_lines_after(start_step)
        self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=start_step + 1)
        self.bar = tqdm(total=max_steps, initial=start_step, desc=desc, dynamic_ncols=True, unit="step")

    def _drop_lines_after(self, step: int) -> None:
        """A resumed run rewrites the steps after its checkpoint; keep the log free of duplicates."""
        if not self.jsonl.exists():
            return
        kept = [
            line
            for line in self.jsonl.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step
        ]
        self.jsonl.write_text("".join(line + "\n" for line in kept))

    def add(self, logs: list[StepLogs], clips: int) -> None:
        """Keep one optimizer step's micro-step logs (device tensors, not read yet) and count its clips."""
        self.clips += clips
        if self.enabled:
            self.window.extend(logs)

    def flush(self, step: int, extra: dict[str, float] | None = None) -> dict[str, float]:
        """Average what was added since the last flush (one read from the device) and write it at `step`."""
        now = time.perf_counter()
        means = self._read_window() if self.enabled else {}
        means["clips_s"] = self.clips / max(now - self.tick, 1e-9)
        means.update(extra or {})
        self.window, self.clips, self.tick = [], 0, now
        if self.enabled:
            self.write(step, means)
            shown = {k: f"{means[k]:.3g}" for k in self.bar_keys if k in means}
            self.bar.set_postfix(shown, refresh=False)
        return means

    def _read_window(self) -> dict[str, float]:
        """Means of `means` entries and sum(numerator) / sum(denominator) of `ratios`, over the window."""
        sums: dict[str, list[torch.Tensor]] = {}
        ratios: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        for logs in self.window:
            for key, value in logs.means.items():
                sums.setdefault(key, []).append(value)
            for key, (num, den) in logs.ratios.items():
                ratios.setdefault(key, ([], []))[0].append(num)
                ratios[key][1].append(den)
        flat = [torch.stack(v).sum().float() for v in sums.values()]
        flat += [torch.stack(t).sum().float() for num, den in ratios.values() for t in (num, den)]
        if not flat:
            return {}
        values = torch.stack([t.to(flat[0].device) for t in flat]).tolist()  # the one host read
        out = {key: values[i] / len(sums[key]) for i, key in enumerate(sums)}
        offset = len(sums)
        for j, key in enumerate(ratios):
            num, den = values[offset + 2 * j], values[offset + 2 * j + 1]
            if den:
                out[key] = num / den
        return out

    def write(self, step: int, scalars: dict[str, float], prefix: str = "train") -> None:
        """Write scalars to TensorBoard (under `prefix/`) and one JSON line."""
        if not self.enabled:
            return
        for key, value in scalars.items():
            self.writer.add_scalar(f"{prefix}/{key}", value, step)
        with self.jsonl.open("a") as fh:
            fh.write(json.dumps({"step": step, "split": prefix, **scalars}) + "\n")

    def advance(self, steps: int = 1) -> None:
        if self.enabled:
            self.bar.update(steps)

    def message(self, text: str) -> None:
        if self.enabled:
            self.bar.write(text)

    def close(self) -> None:
        if self.enabled:
            self.writer.close()
            self.bar.close()
