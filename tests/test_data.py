"""svformer.data: clip index math, sources, decoding only what a clip needs, the three streams."""

from __future__ import annotations

import itertools
import pickle
from pathlib import Path

import pytest
import torch
from _data_shards import Video, frame_ids, frame_value, videos, write_shards
from torchvision.io import encode_jpeg

import svformer.data as data
import svformer.data.clips as clips_module
from svformer.config import Config, SSLConfig
from svformer.errors import UserError

T, STRIDE, SIZE = 4, 2, 32


def small_config(shards: Path, workers: int = 0) -> Config:
    cfg = Config()
    cfg.data.labeled = cfg.data.unlabeled = cfg.data.val = str(shards)
    cfg.data.num_frames, cfg.data.sampling_rate, cfg.data.img_size = T, STRIDE, SIZE
    cfg.data.short_side_range, cfg.data.test_short_side = [SIZE, SIZE + 8], SIZE
    cfg.data.batch_size, cfg.data.unlabeled_ratio, cfg.data.workers, cfg.data.shuffle_buffer = 2, 2, workers, 8
    cfg.model.num_classes = 4
    return cfg


def centre_crop(clip: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A deterministic stand-in for augment.train_view: (C, T, H, W) -> (C, T, SIZE, SIZE)."""
    return clip[..., :SIZE, :SIZE].contiguous()


def one_view(clip: torch.Tensor) -> torch.Tensor:
    """A stand-in for augment.test_views: (C, T, H, W) -> (1, C, T, SIZE, SIZE)."""
    return clip[None, ..., :SIZE, :SIZE].contiguous()


def same_crop_twice(clip: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return centre_crop(clip, g), centre_crop(clip, g)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards") / "labeled"
    write_shards(out, videos(10) + [Video("short", 1, num_frames=3)], per_shard=3)
    return out


# ------------------------------------------------------------------------------------ index math


def test_random_clip_start_is_uniform_over_starts_that_fit():
    g = torch.Generator().manual_seed(0)
    starts = {data.random_clip_start(20, T, STRIDE, g) for _ in range(400)}
    assert starts == set(range(20 - (T - 1) * STRIDE))  # every valid start, nothing past the end


def test_short_video_repeats_its_last_frame():
    assert data.clip_indices(3, T, STRIDE, 0).tolist() == [0, 2, 2, 2]
    g = torch.Generator().manual_seed(0)
    assert data.random_clip_start(3, T, STRIDE, g) == 0


def test_uniform_clip_starts_spread_from_first_to_last_valid_start():
    assert data.uniform_clip_starts(20, T, STRIDE, 5).tolist() == [0, 3, 6, 9, 13]
    assert data.uniform_clip_starts(20, T, STRIDE, 1).tolist() == [6]
    assert data.uniform_clip_starts(3, T, STRIDE, 3).tolist() == [0, 0, 0]


# ------------------------------------------------------------------------------------ sources


def test_shard_urls_accepts_directory_brace_pattern_and_lists(shards):
    expected = [str(shards / f"shard-{i:06d}.tar") for i in range(4)]
    assert data.shard_urls(shards) == expected
    assert data.shard_urls(f"{shards}/shard-{{000000..000003}}.tar") == expected
    assert data.shard_urls(f"{expected[0]}, {expected[1]} {expected[2]}") == expected[:3]
    assert data.shard_urls(["pipe:cat a.tar", "pipe:cat b.tar"]) == ["pipe:cat a.tar", "pipe:cat b.tar"]
    assert data.read_manifest(shards)["num_samples"] == 11


def test_shard_urls_without_manifest_lists_the_tar_files(tmp_path):
    write_shards(tmp_path, videos(4), per_shard=2, manifest=False)
    assert [Path(u).name for u in data.shard_urls(tmp_path)] == ["shard-000000.tar", "shard-000001.tar"]


def test_missing_shard_directory_is_a_one_line_user_error(tmp_path):
    with pytest.raises(UserError, match="nowhere") as err:
        data.shard_urls(tmp_path / "nowhere")
    assert "\n" not in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="empty"):
        data.shard_urls(tmp_path / "empty")


# ------------------------------------------------------------------------------------ decoding


def test_only_the_needed_frames_are_decoded_each_once(monkeypatch, shards):
    decoded = []
    real = clips_module.decode_jpeg

    def counting(images, **kw):
        decoded.append(len(images))
        return real(images, **kw)

    monkeypatch.setattr(clips_module, "decode_jpeg", counting)
    sample = next(iter(data.eval_loader(shards, small_config(shards), views=(1, 1), batch_size=1)))
    assert sample["video"].shape == (1, 1, 3, T, SIZE, SIZE)
    assert decoded == [T]  # T of the 20 stored frames
    decoded.clear()
    # 5 clips of a 20-frame video overlap: 20 frames wanted, 16 distinct, each decoded once.
    stream = data.eval_loader(
        shards, small_config(shards), views=(5, 1), batch_size=1, max_videos=1, transform=one_view
    )
    (batch,) = list(stream)
    assert decoded == [16]
    starts = data.uniform_clip_starts(20, T, STRIDE, 5).tolist()
    assert [frame_ids(v) for v in batch["video"][0]] == [[s + STRIDE * i for i in range(T)] for s in starts]


def test_decode_frames_returns_the_requested_frames_in_order():
    frames = [
        encode_jpeg(torch.full((3, 16, 24), frame_value(i), dtype=torch.uint8)).numpy().tobytes() for i in range(8)
    ]
    clip = data.decode_frames(b"".join(frames), [len(f) for f in frames], torch.tensor([5, 1, 5, 7]))
    assert clip.shape == (3, 4, 16, 24) and clip.dtype == torch.uint8
    assert frame_ids(clip) == [5, 1, 5, 7]


# ------------------------------------------------------------------------------------ streams


@pytest.mark.parametrize("workers", [0, 2])
def test_labeled_batches_have_shapes_dtypes_labels_and_strided_frames(shards, workers):
    cfg = small_config(shards, workers)
    stream = data.labeled_loader(cfg, transform=centre_crop)
    batches = list(itertools.islice(stream, 6))
    for batch in batches:
        assert set(batch) == {"video", "label"}
        assert batch["video"].shape == (2, 3, T, SIZE, SIZE) and batch["video"].dtype == torch.uint8
        assert batch["label"].dtype == torch.long and batch["label"].shape == (2,)
        for clip in batch["video"]:
            ids = frame_ids(clip)
            assert ids == [min(ids[0] + STRIDE * i, ids[-1]) for i in range(T)]
    assert all(0 <= int(y) < 4 for b in batches for y in b["label"])
    assert len(batches) == 6 and stream.stats()["skipped"] == 0


def test_labels_follow_their_videos(shards):
    # "short" (label 1) is the only 3-frame video: its clips are frames [0, 2, 2, 2].
    stream = data.eval_loader(shards, small_config(shards), batch_size=11, transform=one_view)
    (batch,) = list(stream)
    assert batch["label"].tolist() == [i % 4 for i in range(10)] + [1]
    assert frame_ids(batch["video"][-1, 0]) == [0, 2, 2, 2]


def test_labeled_stream_uses_augment_train_view_by_default(shards):
    batch = next(iter(data.labeled_loader(small_config(shards))))
    assert batch["video"].shape == (2, 3, T, SIZE, SIZE)


def test_unlabeled_weak_and_strong_views_share_frames(shards):
    cfg = small_config(shards)
    cfg.ssl = SSLConfig(temporal_warp=False, strong_ops="none")
    batch = next(iter(data.unlabeled_loader(cfg)))  # the real augment.weak_strong_views
    assert batch["weak"].shape == batch["strong"].shape == (4, 3, T, SIZE, SIZE)
    assert torch.equal(batch["weak"], batch["strong"])
    cfg.ssl = SSLConfig(temporal_warp=True, strong_ops="dropout")
    batch = next(iter(data.unlabeled_loader(cfg)))
    for weak, strong in zip(batch["weak"], batch["strong"]):  # warping reorders the same frames
        assert set(frame_ids(strong)) <= set(frame_ids(weak))


def test_unlabeled_batch_is_mu_times_the_labeled_batch(shards):
    batch = next(iter(data.unlabeled_loader(small_config(shards), transform=same_crop_twice)))
    assert batch["weak"].shape[0] == 2 * 2 and batch["label"].dtype == torch.long


def test_eval_views_are_clips_times_crops(shards):
    stream = data.eval_loader(shards, small_config(shards), views="2x3", batch_size=4)
    batches = list(stream)
    assert [b["video"].shape for b in batches] == [(4, 6, 3, T, SIZE, SIZE)] * 2 + [(3, 6, 3, T, SIZE, SIZE)]
    assert sum(len(b["key"]) for b in batches) == 11  # last partial batch kept


@pytest.mark.parametrize("num_shards,workers", [(3, 2), (8, 2), (8, 0)])
def test_eval_sees_every_video_exactly_once_across_two_ranks(tmp_path, num_shards, workers):
    # 3 shards < 2 ranks x 2 workers: split by sample index; 8 shards: split by shard.
    all_videos = videos(2 * num_shards + 1)
    write_shards(tmp_path, all_videos, per_shard=-(-len(all_videos) // num_shards))
    cfg = small_config(tmp_path, workers)
    seen = []
    for rank in range(2):
        stream = data.eval_loader(tmp_path, cfg, rank=rank, world_size=2, batch_size=2, transform=one_view)
        keys = [k for b in stream for k in b["key"]]
        assert keys, f"rank {rank} got nothing"
        seen += keys
    assert sorted(seen) == [v.key for v in all_videos]


def test_eval_max_videos_takes_the_first_videos_once_across_ranks(shards):
    cfg = small_config(shards)
    seen = [
        k
        for rank in range(2)
        for b in data.eval_loader(shards, cfg, rank=rank, world_size=2, max_videos=5)
        for k in b["key"]
    ]
    assert sorted(seen) == [f"v{i:04d}" for i in range(5)]


def _first_keys(cfg: Config, **kw) -> list[str]:
    stream = data.labeled_loader(cfg, transform=centre_crop, **kw)
    return [
        str(frame_ids(c)) + str(int(y)) for b in itertools.islice(stream, 4) for c, y in zip(b["video"], b["label"])
    ]


def test_ranks_and_resumed_runs_draw_different_orders_and_a_rerun_repeats(shards):
    cfg = small_config(shards)
    base = _first_keys(cfg, rank=0, seed=1)
    assert _first_keys(cfg, rank=0, seed=1) == base  # deterministic
    assert _first_keys(cfg, rank=1, seed=1) != base
    assert _first_keys(cfg, rank=0, seed=1, start_step=100) != base


def test_stream_pipeline_is_picklable_for_spawned_workers(shards):
    stream = data.labeled_loader(small_config(shards), transform=centre_crop)
    pickle.dumps(stream.loader.pipeline[0].dataset)


def test_local_shards_read_only_the_bytes_of_the_needed_frames(monkeypatch, shards):
    import svformer.data.tarread as tarread

    read = []
    real = tarread.ByteRange.__getitem__

    def counting(self, part):
        out = real(self, part)
        read.append(len(out))
        return out

    monkeypatch.setattr(tarread.ByteRange, "__getitem__", counting)
    (batch,) = list(data.eval_loader(shards, small_config(shards), batch_size=1, max_videos=1, transform=one_view))
    assert len(read) == T  # one read per decoded frame, not the video's 20
    assert sum(read) < 0.5 * data.read_manifest(shards)["shards"][0]["bytes"] / 3


def test_pipe_urls_stream_through_webdataset(shards):
    urls = [f"pipe:cat {u}" for u in data.shard_urls(shards)]
    keys = [k for b in data.eval_loader(urls, small_config(shards), batch_size=4, transform=one_view) for k in b["key"]]
    assert keys == [f"v{i:04d}" for i in range(10)] + ["short"]


def test_part_manifests_are_merged_until_the_full_manifest_exists(tmp_path):
    import json

    write_shards(tmp_path, videos(4), per_shard=2)
    full = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").unlink()
    for i, shard in enumerate(full["shards"], start=1):
        part = {**full, "shards": [shard], "num_samples": 2, "complete": True}
        (tmp_path / f"manifest-p{i:02d}of02.json").write_text(json.dumps(part))
    assert [Path(u).name for u in data.shard_urls(tmp_path)] == ["shard-000000.tar", "shard-000001.tar"]
    assert data.read_manifest(tmp_path)["num_samples"] == 4


def test_streams_read_real_prep_shards(demo_shards):
    cfg = small_config(demo_shards / "labeled")
    cfg.data.unlabeled, cfg.model.num_classes = str(demo_shards / "unlabeled"), 8
    batch = next(iter(data.labeled_loader(cfg)))  # real prep output, real augment
    assert batch["video"].shape == (2, 3, T, SIZE, SIZE) and batch["video"].dtype == torch.uint8
    batch = next(iter(data.unlabeled_loader(cfg)))
    assert batch["weak"].shape == batch["strong"].shape == (4, 3, T, SIZE, SIZE)
    manifest = data.read_manifest(demo_shards / "unlabeled")
    assert len(manifest["shards"]) > 1
    seen = [
        k
        for rank in range(2)
        for b in data.eval_loader(demo_shards / "unlabeled", cfg, views="2x3", rank=rank, world_size=2, batch_size=4)
        for k in b["key"]
    ]
    assert len(seen) == len(set(seen)) == manifest["num_samples"]
