"""write_atomic from several processes at once: what the last parts of a prep array do with manifest.json."""

from __future__ import annotations

import multiprocessing
from pathlib import Path


def _write_many(path: str, text: str, times: int) -> None:
    from svformer.files import write_atomic

    for _ in range(times):
        write_atomic(path, text)


def test_two_processes_writing_one_file_at_once_both_succeed(tmp_path: Path):
    path = tmp_path / "manifest.json"
    text = "{}\n" * 10_000
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(str(path), text, 300)) for _ in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=300)
    assert [proc.exitcode for proc in procs] == [0, 0]
    assert path.read_text() == text
    assert not list(tmp_path.glob("*.tmp"))
