"""Shared pytest fixtures. Each block belongs to one module's owner; add yours in your own block."""

from __future__ import annotations

# ---------------------------------------------------------------- prep fixtures (owner: prep/)
from pathlib import Path

import pytest

DEMO_VIDEOS_PER_CLASS = 4  # 32 videos: enough for every class in each split part, a few seconds to make


@pytest.fixture(scope="session")
def demo_videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic demo dataset (8 classes x 4 videos, seed 0): dir with videos/, all.txt, classes.txt."""
    from prep.synth import synthesize

    out = tmp_path_factory.mktemp("demo_videos")
    synthesize(out, videos_per_class=DEMO_VIDEOS_PER_CLASS, seed=0, workers=2)
    return out


@pytest.fixture(scope="session")
def demo_shards(demo_videos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """demo_videos split (labeled 0.34, val 0.25, seed 0) and prepped like `make demo-data`
    (short side 64, fps cap 15, 8 classes): dir with lists/ and labeled/, unlabeled/, val/ shard dirs.

    Per class: 1 val, 1 labeled, 2 unlabeled videos (8 / 8 / 16 in all); shards of ~200 kB, so
    the unlabeled dir has several shards.
    """
    from prep.shards import prep_list
    from prep.split import split_list
    from svformer.video.decode import DecodeSettings

    out = tmp_path_factory.mktemp("demo_shards")
    lists = split_list(demo_videos / "all.txt", out / "lists", labeled=0.34, val=0.25, seed=0)
    for name, list_path in lists.items():
        prep_list(
            list_path,
            out / name,
            DecodeSettings(short_side=64, fps=15),
            data_root=demo_videos,
            num_classes=8,
            shard_size=200_000,
            workers=2,
            progress=False,
        )
    return out


@pytest.fixture(scope="session")
def lavfi_video():
    """Factory: make_video(path, size="64x48", rate=25, duration=1.0, codec_args=(...), input_args=()) writes
    a small test video from ffmpeg's lavfi `testsrc` with the bundled ffmpeg and returns its path."""
    import subprocess

    from svformer.video.ffmpeg_bin import ffmpeg_exe

    def make_video(
        path: Path,
        size: str = "64x48",
        rate: float = 25,
        duration: float = 1.0,
        codec_args: tuple[str, ...] = ("-c:v", "libx264", "-pix_fmt", "yuv420p"),
        source: str | None = None,
    ) -> Path:
        src = source or f"testsrc=size={size}:rate={rate}:duration={duration}"
        cmd = [
            ffmpeg_exe(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-y",
            "-f",
            "lavfi",
            "-i",
            src,
            *codec_args,
            "file:" + str(Path(path).resolve()),
        ]
        subprocess.run(cmd, check=True, capture_output=True)
        return Path(path)

    return make_video


# ---------------------------------------------------------------- end of prep fixtures
