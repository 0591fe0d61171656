"""prep: demo videos -> shards (content, format, determinism, kill + resume, parts), JPEG splitting, CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch
import webdataset as wds
from torchvision.io import decode_jpeg, encode_jpeg

from prep.shards import parse_part, parse_size, prep_list
from svformer.data.tarread import read_shard
from svformer.errors import UserError
from svformer.lists import read_list
from svformer.video.decode import DecodeSettings, jpeg_qscale
from svformer.video.jpeg import JpegError, jpeg_size, split_jpeg_stream

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, str(ROOT / "cli.py")]
SMALL = DecodeSettings(short_side=64, fps=15)


def _samples(shard_dir: Path) -> dict[str, tuple[dict, bytes]]:
    """key -> (JSON record, .jpgs blob) over the shards that shard_dir's manifest lists."""
    manifest = json.loads((shard_dir / "manifest.json").read_text())
    out = {}
    for shard in manifest["shards"]:
        for group in read_shard(shard_dir / shard["name"]):
            out[group["__key__"]] = (json.loads(group["json"]), group["jpgs"])
    return out


@pytest.mark.parametrize("part", ["labeled", "unlabeled", "val"])
def test_prep_stores_each_listed_video_with_label_frame_count_and_short_side(demo_shards: Path, part: str):
    entries = read_list(demo_shards / "lists" / f"{part}.txt").entries
    samples = _samples(demo_shards / part)
    assert sorted(samples) == sorted(e.key for e in entries)
    for entry in entries:
        meta, blob = samples[entry.key]
        assert (meta["label"], meta["source"], meta["line"]) == (entry.label, entry.source, entry.line)
        assert meta["fps"] == min(meta["src_fps"], 15.0)
        assert abs(meta["num_frames"] - meta["src_duration"] * meta["fps"]) <= 1.0
        assert min(meta["height"], meta["width"]) == 64  # demo sources have short sides 72..128
        src_aspect = max(meta["src_height"], meta["src_width"]) / min(meta["src_height"], meta["src_width"])
        assert max(meta["height"], meta["width"]) / 64 == pytest.approx(src_aspect, abs=0.03)
        assert len(meta["frame_sizes"]) == meta["num_frames"] and sum(meta["frame_sizes"]) == len(blob)
        last = decode_jpeg(torch.frombuffer(bytearray(blob[-meta["frame_sizes"][-1] :]), dtype=torch.uint8))
        assert tuple(last.shape) == (3, meta["height"], meta["width"])


def test_manifest_counts_shards_samples_frames_and_classes(demo_shards: Path):
    manifest = json.loads((demo_shards / "unlabeled" / "manifest.json").read_text())
    samples = _samples(demo_shards / "unlabeled")
    assert manifest["complete"] is True and manifest["version"] == 1
    assert len(manifest["shards"]) > 1  # 200 kB shards: the rollover happened
    assert manifest["num_samples"] == len(samples) == sum(s["samples"] for s in manifest["shards"])
    assert manifest["num_frames"] == sum(m["num_frames"] for m, _ in samples.values())
    assert manifest["classes"] == {str(c): 2 for c in range(8)}
    for shard in manifest["shards"]:
        assert (demo_shards / "unlabeled" / shard["name"]).stat().st_size == shard["bytes"]
        assert shard["bytes"] <= 200_000 or shard["samples"] == 1  # rolled over before passing --shard-size
    assert (demo_shards / "unlabeled" / "failures.tsv").read_text() == "line\tsource\treason\n"


def test_shards_have_fixed_tar_headers_and_members_in_list_order(demo_shards: Path):
    names = []
    for shard in sorted((demo_shards / "unlabeled").glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            for info in tar.getmembers():
                assert (info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode) == (0, 0, 0, "", "", 0o644)
                names.append(info.name)
    keys = [n.split(".")[0] for n in names[::2]]
    assert names == [f"{k}.{ext}" for k in keys for ext in ("json", "jpgs")]
    assert keys == sorted(keys)  # keys start with the zero-padded list line


def test_webdataset_reads_prep_shards_as_key_json_jpgs_samples(demo_shards: Path):
    manifest = json.loads((demo_shards / "val" / "manifest.json").read_text())
    urls = [str(demo_shards / "val" / s["name"]) for s in manifest["shards"]]
    samples = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    assert len(samples) == 8
    for sample in samples:
        meta = json.loads(sample["json"])
        assert sample["__key__"] == meta["key"] and len(sample["jpgs"]) == sum(meta["frame_sizes"])


def test_prep_caps_the_frame_rate_only_when_the_source_is_faster(tmp_path: Path, lavfi_video):
    lavfi_video(tmp_path / "fast.mp4", rate=30, duration=1.0)
    lavfi_video(tmp_path / "slow.mp4", rate=8, duration=1.0)
    (tmp_path / "l.txt").write_text("fast.mp4 0\nslow.mp4 1\n")
    prep_list(tmp_path / "l.txt", tmp_path / "out", DecodeSettings(short_side=48, fps=10), workers=2, progress=False)
    samples = {m["source"]: m for m, _ in _samples(tmp_path / "out").values()}
    fast = samples["fast.mp4"]
    assert (fast["fps"], fast["num_frames"], fast["src_fps"]) == (10.0, 10, 30.0)
    assert (samples["slow.mp4"]["fps"], samples["slow.mp4"]["num_frames"]) == (8.0, 8)


def test_prep_resizes_the_short_side_keeping_aspect_and_never_upscales(tmp_path: Path, lavfi_video):
    lavfi_video(tmp_path / "v.mp4", size="64x48")
    (tmp_path / "l.txt").write_text("v.mp4 0\n")
    for short, expected in [(32, (32, 43)), (256, (48, 64))]:
        prep_list(tmp_path / "l.txt", tmp_path / f"s{short}", DecodeSettings(short_side=short), progress=False)
        ((meta, blob),) = _samples(tmp_path / f"s{short}").values()
        assert (meta["height"], meta["width"]) == expected == jpeg_size(blob[: meta["frame_sizes"][0]])


def _shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("shard-*.tar"))}


def test_prep_killed_mid_run_then_rerun_gives_the_bytes_of_an_uninterrupted_run(tmp_path: Path, demo_videos: Path):
    args = [
        "--list",
        str(demo_videos / "all.txt"),
        "--short-side",
        "64",
        "--fps",
        "15",
        "--shard-size",
        "120KB",
        "--workers",
        "2",
    ]
    reference = tmp_path / "reference"
    prep_list(demo_videos / "all.txt", reference, SMALL, shard_size=120_000, workers=2, progress=False)
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [*CLI, "prep", *args, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    # The sidecar is written right after the first shard's rename: the shard is then finished.
    while not (out / "shard-000000.tar.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert (out / "shard-000000.tar").exists() and not (out / "manifest.json").exists()
    finished_before = set(_shard_bytes(out))
    assert finished_before < set(_shard_bytes(reference))

    rerun = subprocess.run([*CLI, "prep", *args, "--out", str(out)], capture_output=True, text=True, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert "finished shard(s) kept" in rerun.stderr
    assert _shard_bytes(out) == _shard_bytes(reference)
    assert not list(out.glob("*.tmp"))
    manifests = [json.loads((d / "manifest.json").read_text()) for d in (out, reference)]
    assert manifests[0]["shards"] == manifests[1]["shards"] and len(manifests[0]["shards"]) > 3


def test_prep_rerun_keeps_a_finished_directory_and_refuses_other_settings(tmp_path: Path, lavfi_video):
    lavfi_video(tmp_path / "v.mp4")
    (tmp_path / "l.txt").write_text("v.mp4 0\n")
    first = prep_list(tmp_path / "l.txt", tmp_path / "out", SMALL, progress=False)
    before = _shard_bytes(tmp_path / "out")
    assert prep_list(tmp_path / "l.txt", tmp_path / "out", SMALL, progress=False)["shards"] == first["shards"]
    assert _shard_bytes(tmp_path / "out") == before and len(before) == 1
    with pytest.raises(UserError, match="other prep settings"):
        prep_list(
            tmp_path / "l.txt", tmp_path / "out", DecodeSettings(short_side=64, fps=15, quality=50), progress=False
        )


def test_prep_parts_cover_the_list_exactly_once_and_merge_into_one_manifest(tmp_path: Path, demo_videos: Path):
    lines = (demo_videos / "all.txt").read_text().splitlines()[:10] + ["videos/missing.mp4 3", "videos/v0000.mp4 x"]
    (tmp_path / "l.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    for i in (2, 3, 1):  # any order: the last part to finish writes manifest.json
        assert not (out / "manifest.json").exists()
        prep_list(
            tmp_path / "l.txt",
            out,
            SMALL,
            data_root=demo_videos,
            workers=2,
            part=(i, 3),
            max_failures=1,
            progress=False,
        )
    part_keys = [[m["key"] for m, _ in _samples_of(out, f"manifest-p0{i}of03.json")] for i in (1, 2, 3)]
    all_keys = [k for keys in part_keys for k in keys]
    assert sorted(all_keys) == sorted(
        e.key for e in read_list(tmp_path / "l.txt", data_root=demo_videos).entries if "missing" not in e.source
    )
    assert all(len(keys) >= 3 for keys in part_keys) and len(all_keys) == len(set(all_keys)) == 10
    merged = json.loads((out / "manifest.json").read_text())
    assert [s["name"] for s in merged["shards"]][0] == "shard-p01of03-000000.tar"
    assert merged["num_samples"] == 10
    assert [(f["line"], f["reason"][:12]) for f in merged["failures"]] == [(11, "file not fou"), (12, "label 'x' is")]
    assert (out / "failures.tsv").read_text().count("\n") == 3


def _samples_of(out: Path, manifest_name: str) -> list[tuple[dict, bytes]]:
    manifest = json.loads((out / manifest_name).read_text())
    return [(json.loads(g["json"]), g["jpgs"]) for s in manifest["shards"] for g in read_shard(out / s["name"])]


def _jpeg(value: int, comment: bytes = b"") -> bytes:
    data = encode_jpeg(torch.full((3, 16, 24), value, dtype=torch.uint8), quality=90).numpy().tobytes()
    if comment:  # a COM segment right after SOI, with bytes that look like EOI/SOI markers
        data = data[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + data[2:]
    return data


def test_jpeg_stream_split_follows_segment_lengths_not_marker_lookalikes():
    frames = [_jpeg(10), _jpeg(200, comment=b"\xff\xd9\xff\xd8 fake markers \xff\xd9"), _jpeg(90)]
    assert split_jpeg_stream(b"".join(frames)) == frames
    assert jpeg_size(frames[1]) == (16, 24)
    with pytest.raises(JpegError):
        split_jpeg_stream(b"".join(frames)[:-40])


def test_quality_maps_linearly_onto_mjpeg_qscale():
    assert [jpeg_qscale(q) for q in (100, 90, 75, 1)] == [2, 5, 9, 31]


def test_size_and_part_flags_parse_units_and_one_based_parts():
    sizes = [parse_size(s) for s in ("1GB", "500MB", "10MB", "64KiB", "12345")]
    assert sizes == [10**9, 5 * 10**8, 10**7, 65536, 12345]
    assert parse_part("3/8") == (3, 8)
    for bad in ("0/8", "9/8", "x"):
        with pytest.raises(UserError):
            parse_part(bad)
    with pytest.raises(UserError):
        parse_size("1 parsec")


def test_cli_prep_help_describes_the_flags():
    proc = subprocess.run([*CLI, "prep", "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    for flag in (
        "--list",
        "--data-root",
        "--num-classes",
        "--short-side",
        "--fps",
        "--quality",
        "--workers",
        "--shard-size",
        "--part",
        "--max-failures",
    ):
        assert flag in proc.stdout


def test_cli_prep_with_a_missing_list_prints_one_line_and_exits_2(tmp_path: Path):
    proc = subprocess.run(
        [*CLI, "prep", "--list", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "nope.txt" in proc.stderr and "not found" in proc.stderr
    assert "Traceback" not in proc.stderr
