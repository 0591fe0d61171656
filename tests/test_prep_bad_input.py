"""prep on bad input: every case is skipped (or kept) with file, line and reason; nothing crashes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from prep.shards import prep_list
from svformer.data.tarread import read_shard
from svformer.errors import UserError
from svformer.lists import read_list
from svformer.video.ffmpeg_bin import ffmpeg_exe

ROOT = Path(__file__).resolve().parent.parent
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args], check=True, capture_output=True
    )


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory: pytest.TempPathFactory, lavfi_video) -> Path:
    """A directory of good, odd and broken inputs plus list.txt naming them (and bad list lines)."""
    d = tmp_path_factory.mktemp("bad_input")
    good = lavfi_video(d / "good.mp4")
    shutil.copy(good, d / "with space.mp4")
    shutil.copy(good, d / "-dash.mp4")
    shutil.copy(good, d / "nolabel.mp4")
    lavfi_video(d / "one.mp4", codec_args=("-frames:v", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p"))
    lavfi_video(d / "odd.mp4", size="97x73", codec_args=("-c:v", "libx264", "-pix_fmt", "yuv444p"))
    _ffmpeg("-display_rotation", "90", "-i", str(good), "-c", "copy", str(d / "rot.mp4"))
    # Variable frame rate: 30 frames over 1.5 s with two pauses (average 20 fps).
    lavfi_video(
        d / "vfr.mp4",
        source="testsrc=size=64x48:rate=30:duration=1,setpts='N/30/TB+if(gte(N,10),0.2/TB,0)+if(gte(N,20),0.3/TB,0)'",
        codec_args=("-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p"),
    )
    (d / "zero.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("this is not a video\n" * 20)
    data = good.read_bytes()  # moov atom at the end: cutting in half loses the index
    (d / "trunc.mp4").write_bytes(data[: len(data) // 2])
    lavfi_video(d / "fs.mp4", codec_args=("-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart"))
    data = (d / "fs.mp4").read_bytes()  # index first: cutting in half loses the frames
    (d / "trunc_faststart.mp4").write_bytes(data[: len(data) // 2])
    lavfi_video(d / "audio.mp4", source="sine=frequency=440:duration=1", codec_args=("-c:a", "aac"))
    (d / "adir.mp4").mkdir()
    (d / "locked.mp4").write_bytes(good.read_bytes())
    (d / "locked.mp4").chmod(0)
    lines = [
        "# good and odd-but-valid inputs",
        "good.mp4 0",
        "with space.mp4 1",
        "-dash.mp4 2",
        "one.mp4 3",
        "odd.mp4 4",
        "rot.mp4 5",
        "vfr.mp4 6",
        "nolabel.mp4",
        "",
        "# broken files",
        "zero.mp4 0",
        "text.mp4 0",
        "trunc.mp4 0",
        "trunc_faststart.mp4 0",
        "audio.mp4 0",
        "missing.mp4 0",
        "adir.mp4 0",
        "locked.mp4 0",
        "# bad lines",
        "other.mp4 cat",
        "fs.mp4 99",
        "fs.mp4 -5",
        "./good.mp4 1",
    ]
    (d / "list.txt").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return d


@pytest.fixture(scope="module")
def prepped(bad_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, dict], dict[str, dict]]:
    """(samples by source, failures by list line) of prepping bad_dir/list.txt with --max-failures 1."""
    out = tmp_path_factory.mktemp("bad_out")
    manifest = prep_list(bad_dir / "list.txt", out, num_classes=10, workers=2, max_failures=1.0, progress=False)
    samples = {}
    for shard in manifest["shards"]:
        for group in read_shard(out / shard["name"]):
            meta = json.loads(group["json"])
            samples[meta["source"]] = meta
    failures = {f["line"]: f for f in manifest["failures"]}
    tsv = (out / "failures.tsv").read_text().splitlines()
    assert tsv[0] == "line\tsource\treason" and len(tsv) == len(failures) + 1
    return samples, failures


BROKEN = [
    ("zero.mp4", 12, "zero-byte file"),
    ("text.mp4", 13, "not a video file"),
    ("trunc.mp4", 14, "truncated or incomplete file"),
    ("trunc_faststart.mp4", 15, "truncated or incomplete file"),
    ("audio.mp4", 16, "no video stream (has: audio)"),
    ("missing.mp4", 17, "file not found"),
    ("adir.mp4", 18, "not a regular file"),
    ("other.mp4", 21, "label 'cat' is not an integer"),
    ("fs.mp4", 22, "label 99 out of range"),
    ("./good.mp4", 24, "duplicate of line 2"),
]


@pytest.mark.parametrize("source, line, reason", BROKEN, ids=[c[2].split(" (")[0].replace(" ", "_") for c in BROKEN])
def test_prep_skips_bad_input_with_its_line_and_reason(prepped, source: str, line: int, reason: str):
    samples, failures = prepped
    assert source not in samples
    assert failures[line]["source"] == source
    assert reason in failures[line]["reason"]


def test_prep_records_negative_label_as_out_of_range(bad_dir: Path):
    parsed = read_list(bad_dir / "list.txt", num_classes=10)
    assert [(f.line, f.reason) for f in parsed.failures if f.line == 23] == [
        (23, "label -5 out of range (valid: [0, 10), or -1 for unknown)")
    ]


@pytest.mark.skipif(IS_ROOT, reason="root reads files whatever their mode")
def test_prep_skips_unreadable_file_with_reason(prepped):
    assert prepped[1][19]["source"] == "locked.mp4" and "Permission denied" in prepped[1][19]["reason"]


def test_prep_keeps_paths_with_spaces_and_leading_dashes_as_files(prepped):
    samples, _ = prepped
    for source in ("with space.mp4", "-dash.mp4"):
        assert samples[source]["num_frames"] == 25 and (samples[source]["height"], samples[source]["width"]) == (48, 64)


def test_prep_keeps_one_frame_video_with_num_frames_1(prepped):
    assert prepped[0]["one.mp4"]["num_frames"] == 1


def test_prep_keeps_odd_sized_video_at_its_size(prepped):
    meta = prepped[0]["odd.mp4"]
    assert (meta["height"], meta["width"], meta["src_height"], meta["src_width"]) == (73, 97, 73, 97)


def test_prep_stores_rotated_video_upright_with_post_rotation_size(prepped):
    meta = prepped[0]["rot.mp4"]
    assert meta["src_rotation"] in (90, 270)
    assert (meta["height"], meta["width"], meta["src_height"], meta["src_width"]) == (64, 48, 64, 48)


def test_prep_keeps_every_frame_of_variable_frame_rate_video_below_the_cap(prepped):
    meta = prepped[0]["vfr.mp4"]
    assert meta["num_frames"] == 30 and meta["fps"] == pytest.approx(20.0)
    assert abs(meta["num_frames"] - meta["src_duration"] * meta["fps"]) <= 1


def test_prep_takes_unlabeled_line_naming_an_existing_file_as_label_minus_1(prepped):
    assert prepped[0]["nolabel.mp4"]["label"] == -1


def test_prep_exits_2_with_one_line_when_failures_exceed_max_failures(bad_dir: Path, tmp_path: Path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "cli.py"),
            "prep",
            "--list",
            str(bad_dir / "list.txt"),
            "--out",
            str(out),
            "--num-classes",
            "10",
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    error_lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(error_lines) == 1 and "failed" in error_lines[0] and "failures.tsv" in error_lines[0]
    # Nothing lost: the good videos are in the shards (locked.mp4 too when root can read it).
    assert json.loads((out / "manifest.json").read_text())["num_samples"] == 8 + IS_ROOT


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "list file not found"),
        (b"\x00\x01\x02binary", "binary file"),
        (b"", "no entries"),
        (b"# only a comment\n\n", "no entries"),
        (b"caf\xe9.mp4 1\n", "not UTF-8"),
    ],
    ids=["missing", "binary", "empty", "comments_only", "not_utf8"],
)
def test_unreadable_list_is_a_one_line_user_error(tmp_path: Path, content: bytes | None, message: str):
    path = tmp_path / "list.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match=message) as err:
        prep_list(path, tmp_path / "out", progress=False)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
