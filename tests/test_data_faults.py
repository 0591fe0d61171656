"""svformer.data under bad input: corrupt samples and broken shards are skipped, counted, reported."""

from __future__ import annotations

import itertools
import logging
import tarfile
from pathlib import Path

import pytest
import torch
from _data_shards import Video, videos, write_shards

import svformer.data as data
from svformer.config import Config
from svformer.data.tarread import read_shard

SIZE = 32


def small_config(shards: Path | str, workers: int = 0) -> Config:
    cfg = Config()
    cfg.data.labeled = cfg.data.unlabeled = cfg.data.val = str(shards)
    cfg.data.num_frames, cfg.data.sampling_rate, cfg.data.img_size = 4, 2, SIZE
    cfg.data.short_side_range, cfg.data.test_short_side = [SIZE, SIZE], SIZE
    cfg.data.batch_size, cfg.data.workers, cfg.data.shuffle_buffer = 2, workers, 4
    cfg.model.num_classes = 4
    return cfg


def crop(clip: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
    return clip[..., :SIZE, :SIZE].contiguous()


def one_view(clip: torch.Tensor) -> torch.Tensor:
    return crop(clip)[None]


def truncate(path: Path, fraction: float) -> None:
    blob = path.read_bytes()
    path.write_bytes(blob[: int(len(blob) * fraction)])


@pytest.fixture()
def damaged(tmp_path) -> tuple[Path, list[str]]:
    """4 shards of 3: one truncated mid-way, one sample with broken JPEGs, bad JSON, a missing member."""
    vids = videos(12)
    vids[1] = Video("broken_jpeg", 1, fault="jpeg")
    vids[4] = Video("bad_json", 0, fault="json")
    vids[5] = Video("no_jpgs", 1, fault="no_jpgs")
    paths = write_shards(tmp_path / "shards", vids, per_shard=3)
    truncate(paths[2], 0.5)  # v0006 .. v0008: the first survives at most
    good = [v.key for v in vids if not v.fault and v.key not in ("v0007", "v0008")]
    return tmp_path / "shards", good


def test_truncated_shard_and_broken_samples_are_skipped_and_reported(damaged, caplog):
    shards, good = damaged
    with caplog.at_level(logging.WARNING, logger="svformer.data"):
        stream = data.eval_loader(shards, small_config(shards), batch_size=4, transform=one_view)
        keys = [k for b in stream for k in b["key"]]
    assert set(good) - {"v0006"} <= set(keys) <= set(good)  # nothing corrupt got through; the rest did
    stats = stream.stats()
    events = {(Path(url).name, key): reason for url, key, reason in stats["events"]}
    assert "JPEG" in events[("shard-000000.tar", "broken_jpeg")]
    assert "JSON" in events[("shard-000001.tar", "bad_json")]
    assert "no_jpgs.jpgs" in events[("shard-000001.tar", "no_jpgs")]
    assert "ReadError" in events[("shard-000002.tar", "")]  # the truncated shard, reported once
    assert stats["shards"] == 1 and stats["samples"] >= 3 and stats["skipped"] == stats["shards"] + stats["samples"]
    assert "shard-000002.tar" in caplog.text and "broken_jpeg" in caplog.text


def test_missing_shard_and_gzip_garbage_are_skipped(tmp_path):
    paths = write_shards(tmp_path, videos(4), per_shard=2, manifest=False)
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4)
    urls = [str(paths[0]), str(tmp_path / "gone.tar"), str(garbage), str(paths[1])]
    stream = data.eval_loader(urls, small_config(tmp_path), batch_size=3, transform=one_view)
    assert sorted(k for b in stream for k in b["key"]) == ["v0000", "v0001", "v0002", "v0003"]
    reasons = {Path(url).name: reason for url, key, reason in stream.stats()["events"]}
    assert set(reasons) == {"gone.tar", "garbage.tar"}
    assert "FileNotFoundError" in reasons["gone.tar"]


@pytest.mark.parametrize("workers", [0, 2])
def test_training_stream_continues_past_faults_and_counts_them_across_workers(damaged, workers):
    shards, _ = damaged
    stream = data.labeled_loader(small_config(shards, workers), seed=3, transform=crop)
    batches = list(itertools.islice(stream, 30))  # 60 clips from 12 videos: every shard visited many times
    assert all(b["video"].shape == (2, 3, 4, SIZE, SIZE) for b in batches)
    stats = stream.stats()
    assert stats["shards"] >= 1 and stats["samples"] >= 3
    assert {key for _, key, _ in stats["events"]} >= {"broken_jpeg", "bad_json", "no_jpgs", ""}


def test_labels_outside_the_class_range_are_skipped_in_the_labeled_stream(tmp_path):
    write_shards(tmp_path, videos(3) + [Video("label_9", 9), Video("unknown", -1)], per_shard=5)
    stream = data.labeled_loader(small_config(tmp_path), transform=crop)
    labels = torch.cat([b["label"] for b in itertools.islice(stream, 10)])
    assert labels.min() >= 0 and labels.max() < 4
    assert {"label_9", "unknown"} <= {key for _, key, _ in stream.stats()["events"]}


def test_training_stream_with_only_broken_shards_fails_with_a_message(tmp_path):
    (tmp_path / "a.tar").write_bytes(b"not a tar at all" * 64)
    stream = data.labeled_loader(small_config(str(tmp_path / "a.tar")), transform=crop)
    with pytest.raises(RuntimeError, match="in a row"):
        next(iter(stream))


def test_shard_cut_at_a_member_boundary_is_reported(tmp_path):
    (path,) = write_shards(tmp_path, videos(3), per_shard=3, manifest=False)
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    cut = members[4].offset  # the header of the third video's .json: two whole videos remain
    path.write_bytes(path.read_bytes()[:cut])
    stream = data.eval_loader(str(path), small_config(tmp_path), batch_size=4, transform=one_view)
    assert [k for b in stream for k in b["key"]] == ["v0000", "v0001"]
    ((url, key, reason),) = stream.stats()["events"]
    assert key == "" and "end-of-archive" in reason


def test_read_shard_gives_whole_samples_then_raises_for_a_truncated_shard(tmp_path):
    (path,) = write_shards(tmp_path, videos(3), per_shard=3, manifest=False)
    whole = list(read_shard(path))
    assert [s["__key__"] for s in whole] == ["v0000", "v0001", "v0002"]
    assert all(isinstance(s["jpgs"], bytes) and isinstance(s["json"], bytes) for s in whole)
    with tarfile.open(path) as tar:
        cut = tar.getmembers()[4].offset  # the header of the third video's .json: two whole videos remain
    path.write_bytes(path.read_bytes()[:cut])
    seen = []
    with pytest.raises(tarfile.ReadError, match="end-of-archive"):
        seen.extend(s["__key__"] for s in read_shard(path))
    assert seen == ["v0000", "v0001"]
