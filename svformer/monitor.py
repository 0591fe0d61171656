"""Rank-0 training logs: a progress bar, TensorBoard scalars and `metrics.jsonl`.

Other ranks get a monitor that does nothing, so the loop never branches on the rank to log.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from tqdm import tqdm

BAR_KEYS = ("loss", "loss_sup", "loss_unlabeled", "loss_mix", "mask_rate", "pseudo_acc", "lr", "clips_s")


class Monitor:
    """Collects per-step scalars, averages them over `log_every` steps and writes them out."""

    def __init__(self, run_dir: Path, start_step: int, max_steps: int, enabled: bool) -> None:
        self.enabled = enabled
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.clips = 0
        self.tick = time.perf_counter()
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.jsonl = Path(run_dir) / "metrics.jsonl"
        self._drop_lines_after(start_step)
        self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=start_step + 1)
        self.bar = tqdm(total=max_steps, initial=start_step, desc="train", dynamic_ncols=True, unit="step")

    def _drop_lines_after(self, step: int) -> None:
        """A resumed run rewrites the steps after its checkpoint; keep the log free of duplicates."""
        if not self.jsonl.exists():
            return
        kept = [line for line in self.jsonl.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        self.jsonl.write_text("".join(line + "\n" for line in kept))

    def add(self, logs: dict[str, float], clips: int) -> None:
        """Accumulate one optimizer step's scalars and the number of clips it consumed."""
        self.clips += clips
        for key, value in logs.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
            self.counts[key] = self.counts.get(key, 0) + 1

    def flush(self, step: int, extra: dict[str, float] | None = None) -> dict[str, float]:
        """Average what was added since the last flush and write it at `step`."""
        now = time.perf_counter()
        means = {k: self.sums[k] / self.counts[k] for k in self.sums}
        means["clips_s"] = self.clips / max(now - self.tick, 1e-9)
        means.update(extra or {})
        self.sums, self.counts, self.clips, self.tick = {}, {}, 0, now
        if self.enabled:
            self.write(step, means)
            shown = {k: f"{means[k]:.3g}" for k in BAR_KEYS if k in means}
            self.bar.set_postfix(shown, refresh=False)
        return means

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
