"""svformer.lists and prep.split: list parsing basics and the stratified labeled/unlabeled/val split."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from prep.split import split_list, stratified_split
from svformer.errors import UserError
from svformer.lists import Entry, read_list, sample_key

ROOT = Path(__file__).resolve().parent.parent


def _entries(sizes: dict[int, int]) -> list[Entry]:
    """Interleaved entries: class c has sizes[c] videos; sources carry spaces to check they survive."""
    out, line = [], 0
    for i in range(max(sizes.values())):
        for label, n in sizes.items():
            if i < n:
                line += 1
                out.append(Entry(line, f"class {label}/video {i}.mp4", f"/d/class {label}/video {i}.mp4", label))
    return out


def test_split_is_stratified_with_val_first_and_at_least_one_labeled_per_class():
    sizes = {0: 40, 1: 20, 2: 10, 3: 3, 4: 1}
    parts = stratified_split(_entries(sizes), labeled=0.1, val=0.2, seed=0)
    counts = {name: Counter(e.label for e in part) for name, part in parts.items()}
    for label, n in sizes.items():
        n_val = min(n - 1, int(0.2 * n + 0.5))
        n_lab = max(1, int(0.1 * (n - n_val) + 0.5))
        assert counts["val"][label] == n_val
        assert counts["labeled"][label] == n_lab >= 1
        assert counts["unlabeled"][label] == n - n_val - n_lab


def test_split_parts_do_not_overlap_and_cover_the_list():
    entries = _entries({0: 17, 1: 9, 2: 30})
    parts = stratified_split(entries, labeled=0.25, val=0.1, seed=3)
    lines = [e.line for part in parts.values() for e in part]
    assert len(lines) == len(set(lines)) == len(entries)
    assert set(lines) == {e.line for e in entries}
    for part in parts.values():
        assert [e.line for e in part] == sorted(e.line for e in part)  # list order kept


def test_split_is_deterministic_for_a_seed_and_changes_with_it():
    entries = _entries({0: 30, 1: 30})
    first = stratified_split(entries, 0.2, 0.2, seed=11)
    assert first == stratified_split(entries, 0.2, 0.2, seed=11)
    assert first != stratified_split(entries, 0.2, 0.2, seed=12)


def test_split_list_writes_the_three_lists_with_paths_as_in_the_input(tmp_path: Path):
    lines = [f"clips/a video {i}.mp4 {i % 3}" for i in range(30)]
    (tmp_path / "all.txt").write_text("# header comment\n\n" + "\r\n".join(lines) + "\r\n")
    written = split_list(tmp_path / "all.txt", tmp_path / "lists", labeled=0.2, val=0.2, seed=0)
    assert sorted(written) == ["labeled", "unlabeled", "val"]
    out_lines = [ln for name in written for ln in written[name].read_text().splitlines()]
    assert sorted(out_lines) == sorted(lines)


def test_split_without_val_writes_no_val_list(tmp_path: Path):
    (tmp_path / "all.txt").write_text("".join(f"v{i}.mp4 {i % 2}\n" for i in range(10)))
    written = split_list(tmp_path / "all.txt", tmp_path / "out", labeled=0.5, val=0.0, seed=0)
    assert sorted(written) == ["labeled", "unlabeled"]
    assert not (tmp_path / "out" / "val.txt").exists()


@pytest.mark.parametrize("labeled, val", [(0.0, 0.2), (1.5, 0.2), (0.1, 1.0), (0.1, -0.1)])
def test_split_rejects_fractions_outside_their_range(tmp_path: Path, labeled: float, val: float):
    (tmp_path / "all.txt").write_text("a.mp4 0\n")
    with pytest.raises(UserError, match="must be a fraction"):
        split_list(tmp_path / "all.txt", tmp_path / "out", labeled=labeled, val=val, seed=0)


def test_split_names_the_first_bad_line_of_the_list(tmp_path: Path):
    (tmp_path / "all.txt").write_text("a.mp4 0\nb.mp4 zero\nc.mp4 1\n")
    with pytest.raises(UserError, match=r"all\.txt:2: label 'zero' is not an integer"):
        split_list(tmp_path / "all.txt", tmp_path / "out", labeled=0.5, val=0.0, seed=0)


def test_read_list_takes_the_last_token_as_label_and_skips_comments_and_blanks(tmp_path: Path):
    (tmp_path / "l.txt").write_bytes(b"\xef\xbb\xbf# comment\r\n\r\n  my clip (1).mp4   7 \r\n/abs/x.mp4 0\n")
    parsed = read_list(tmp_path / "l.txt", data_root=tmp_path)
    assert [(e.line, e.source, e.label) for e in parsed.entries] == [(3, "my clip (1).mp4", 7), (4, "/abs/x.mp4", 0)]
    assert parsed.entries[0].path == str(tmp_path / "my clip (1).mp4")
    assert parsed.entries[1].path == "/abs/x.mp4"
    assert parsed.failures == []


def test_relative_paths_default_to_the_list_directory(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "l.txt").write_text("v.mp4 1\n")
    assert read_list(tmp_path / "sub" / "l.txt").entries[0].path == str(tmp_path / "sub" / "v.mp4")


def test_sample_keys_are_safe_unique_and_at_most_64_characters():
    keys = [
        sample_key(1, "a/b/c.d.mp4"),
        sample_key(2, "../../x y?.avi"),
        sample_key(3, "z" * 200 + ".mp4"),
        sample_key(4, "..."),
    ]
    assert keys[:2] == ["0000001_c_d", "0000002_x_y"]
    assert all(len(k) <= 64 and all(ch.isalnum() or ch in "_-" for ch in k) for k in keys)
    assert len(set(keys)) == len(keys)


def test_cli_split_writes_lists_and_reports_counts(tmp_path: Path):
    (tmp_path / "all.txt").write_text("".join(f"v{i}.mp4 {i % 4}\n" for i in range(40)))
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "cli.py"),
            "split",
            "--list",
            str(tmp_path / "all.txt"),
            "--labeled",
            "0.1",
            "--val",
            "0.2",
            "--seed",
            "0",
            "--out",
            str(tmp_path / "lists"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "labeled=4 unlabeled=28 val=8" in proc.stdout
    assert (tmp_path / "lists" / "val.txt").read_text().count("\n") == 8
