"""Shards on object storage and web servers: a real S3 API server (moto's server mode) and a real HTTP
server on 127.0.0.1 serve train, eval and inspect; `prep --out s3://`; missing shards; unreachable stores.

The S3 clients get the server only through the standard AWS variables (AWS_ENDPOINT_URL etc., set
for the test and inherited by the cli subprocesses): that checks s3fs/botocore honour them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _runs import cli, tiny_config
from _servers import aws_env, free_port, http_server, moto_server

BUCKET = "svformer-test"


@pytest.fixture(scope="module")
def s3_endpoint() -> str:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(autouse=True)
def aws(monkeypatch: pytest.MonkeyPatch, s3_endpoint: str) -> str:
    for key, value in aws_env(s3_endpoint).items():
        monkeypatch.setenv(key, value)
    return s3_endpoint


@pytest.fixture(scope="module")
def bucket(s3_endpoint: str, demo_shards: Path) -> str:
    """s3://BUCKET with demo_shards' labeled/, unlabeled/, val/ prep directories uploaded as they are."""
    from svformer import storage

    with pytest.MonkeyPatch.context() as mp:
        for key, value in aws_env(s3_endpoint).items():
            mp.setenv(key, value)
        fs, _ = storage.filesystem(f"s3://{BUCKET}")
        fs.mkdir(BUCKET)
        for split in ("labeled", "unlabeled", "val"):
            for path in sorted((demo_shards / split).iterdir()):
                storage.upload(path, f"s3://{BUCKET}/{split}/{path.name}")
    return f"s3://{BUCKET}"


@pytest.fixture(scope="module")
def web(demo_shards: Path) -> str:
    with http_server(demo_shards) as base:
        yield base


def _pattern(base: str, demo_shards: Path, split: str) -> str:
    count = len(list((demo_shards / split).glob("shard-*.tar")))
    return f"{base}/{split}/shard-{{000000..{count - 1:06d}}}.tar"


def _records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _one_error_line(result) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


@pytest.fixture(scope="module")
def remote_run(
    s3_endpoint: str, bucket: str, web: str, demo_shards: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A short SVFormer run reading an S3 prep directory, an HTTP brace pattern and an HTTP prep directory."""
    tmp = tmp_path_factory.mktemp("remote_run")
    run = tmp / "run"
    config = tiny_config(
        demo_shards,
        run,
        tmp / "c.yaml",
        data={
            "labeled": f"{bucket}/labeled",
            "unlabeled": _pattern(web, demo_shards, "unlabeled"),
            "val": f"{web}/val",
            "workers": 1,  # fetches happen in a DataLoader worker process
        },
        train={"max_steps": 3, "warmup_steps": 1, "checkpoint_every": 3, "val_every": 3, "val_max_videos": 4},
    )
    with pytest.MonkeyPatch.context() as mp:
        for key, value in aws_env(s3_endpoint).items():
            mp.setenv(key, value)
        result = cli("train", "--config", str(config), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return run


def test_training_on_remote_shards_records_the_remote_manifest(remote_run: Path, demo_shards: Path):
    ckpt = remote_run / "checkpoints" / "step-000003"
    assert ckpt.is_dir()
    info = json.loads((ckpt / "data.json").read_text())
    settings = json.loads((demo_shards / "labeled" / "manifest.json").read_text())["settings"]
    # the prep settings came over the wire from s3://.../labeled/manifest.json
    assert info["prep"] == {k: settings[k] for k in ("short_side", "fps", "quality")}
    rows = [json.loads(line) for line in (remote_run / "metrics.jsonl").read_text().splitlines()]
    assert any(r["split"] == "val" for r in rows) and max(r["step"] for r in rows) == 3


def test_eval_and_inspect_read_remote_patterns_and_directories(remote_run: Path, bucket: str, web: str, demo_shards):
    pattern = _pattern(bucket, demo_shards, "val")
    result = cli("eval", "--ckpt", str(remote_run), "--shards", pattern, "--model", "student", "--views", "1x1")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((remote_run / "eval" / "metrics.json").read_text())["student"]
    assert metrics["videos"] == json.loads((demo_shards / "val" / "manifest.json").read_text())["num_samples"]

    from prep.inspect_shards import inspect_path  # what `cli.py inspect` prints, one record per line

    for spec in (f"{bucket}/unlabeled", _pattern(web, demo_shards, "unlabeled")):  # (train read an HTTP dir)
        records = list(inspect_path(spec))
        summary = records[-1]["summary"]
        assert summary["samples"] == len(records) - 1 == 16, spec
        assert summary["shards"] == len(list((demo_shards / "unlabeled").glob("*.tar")))
    result = cli("inspect", "--verify", f"{bucket}/val")  # checks every shard's size and SHA-256 too
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_a_shard_missing_from_the_bucket_is_skipped_and_counted(bucket: str, demo_shards: Path):
    from svformer import storage
    from svformer.config import Config
    from svformer.data import eval_loader

    shards = sorted((demo_shards / "unlabeled").glob("shard-*.tar"))
    for path in shards + [demo_shards / "unlabeled" / "manifest.json"]:
        storage.upload(path, f"{bucket}/holes/{path.name}")
    storage.delete(f"{bucket}/holes/{shards[1].name}")
    cfg = Config()
    cfg.data.num_frames, cfg.data.sampling_rate, cfg.data.test_short_side, cfg.data.img_size = 4, 2, 32, 32
    stream = eval_loader(f"{bucket}/holes", cfg, batch_size=4, workers=0)
    keys = [key for batch in stream for key in batch["key"]]
    listed = json.loads((demo_shards / "unlabeled" / "manifest.json").read_text())["shards"]
    assert len(keys) == 16 - listed[1]["samples"]
    stats = stream.stats()
    assert stats["shards"] == 1 and stats["samples"] == 0
    assert stats["events"][0][0] == f"{bucket}/holes/{shards[1].name}"


def test_read_ahead_keeps_at_most_ahead_plus_one_shards_on_disk(web: str, demo_shards: Path, tmp_path, monkeypatch):
    import tempfile

    from svformer.data.prefetch import RemoteShards

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the stage makes its directory
    names = sorted(p.name for p in (demo_shards / "unlabeled").glob("shard-*.tar"))
    urls = [f"{web}/unlabeled/{n}" for n in names] * 2 + [f"{web}/unlabeled/no-such-shard.tar"]
    seen, on_disk = [], []
    for item in RemoteShards(ahead=2)({"url": u} for u in urls):
        seen.append(item)
        on_disk.append(len([p for p in tmp_path.rglob("*") if p.is_file()]))
        if "local" in item:
            assert Path(item["local"]).read_bytes() == (demo_shards / "unlabeled" / Path(item["url"]).name).read_bytes()
    assert [i["url"] for i in seen] == urls  # in order, every one
    assert max(on_disk) <= 3
    assert "error" in seen[-1] and seen[-1]["error"].missing and all("local" in i for i in seen[:-1])
    assert not list(tmp_path.iterdir())  # the stage's directory is gone with the stream


def test_prep_out_s3_lands_parts_side_by_side_and_a_rerun_uploads_nothing(bucket: str, demo_videos: Path, tmp_path):
    from svformer import storage

    listing = tmp_path / "few.txt"
    listing.write_text("".join((demo_videos / "all.txt").read_text().splitlines(keepends=True)[:8]))
    out = f"{bucket}/prepped"
    common = ["--list", str(listing), "--data-root", str(demo_videos), "--out", out, "--num-classes", "8"]
    common += ["--short-side", "32", "--fps", "8", "--shard-size", "8KB", "--workers", "2"]
    for part in ("1/2", "2/2"):
        result = cli("prep", *common, "--part", part)
        assert result.returncode == 0, result.stderr[-3000:]
    fs, path = storage.filesystem(out)
    objects = {Path(e["name"]).name: e for e in fs.ls(path, detail=True)}
    assert {"manifest-p01of02.json", "manifest-p02of02.json", "manifest.json", "failures.tsv"} <= set(objects)
    manifest = json.loads(storage.read_bytes(f"{out}/manifest.json"))
    assert manifest["num_samples"] == 8 and manifest["complete"]
    names = [s["name"] for s in manifest["shards"]]
    assert len(names) >= 4 and {n.split("-")[1] for n in names} == {"p01of02", "p02of02"}
    for shard in manifest["shards"]:  # each object is whole, and carries its SHA-256
        assert objects[shard["name"]]["size"] == shard["bytes"]
        assert storage.stat(f"{out}/{shard['name']}")["sha256"] == shard["sha256"]
    assert not [n for n in objects if n.endswith((".tmp", ".part"))]

    result = cli("prep", *common, "--part", "1/2")  # finished: nothing to decode, nothing to upload
    assert result.returncode == 0, result.stderr[-3000:]
    assert "0 file(s) uploaded" in result.stderr
    after = {Path(e["name"]).name: e for e in fs.ls(path, detail=True)}
    assert {n: e["ETag"] for n, e in after.items()} == {n: e["ETag"] for n, e in objects.items()}
    assert {n: e["LastModified"] for n, e in after.items()} == {n: e["LastModified"] for n, e in objects.items()}

    # A shard lost from the bucket: the rerun trusts the ones before it and redoes it byte for byte.
    lost = names[1]
    storage.delete(f"{out}/{lost}")
    result = cli("prep", *common, "--part", "1/2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "0 file(s) uploaded" not in result.stderr
    assert storage.stat(f"{out}/{lost}")["sha256"] == manifest["shards"][1]["sha256"]
    assert json.loads(storage.read_bytes(f"{out}/manifest.json")) == manifest

    # The shards read back like a local prep directory.
    result = cli("inspect", out)
    assert result.returncode == 0 and _records(result.stdout)[-1]["summary"]["samples"] == 8, result.stderr[-2000:]

    # Without the merged manifest, the listed part manifests stand for it, as on disk.
    from svformer.data import read_manifest, shard_urls

    storage.delete(f"{out}/manifest.json")
    assert read_manifest(out)["num_samples"] == 8
    assert shard_urls(out) == [f"{out}/{n}" for n in names]


def test_unreachable_stores_fail_in_one_line_before_training(demo_shards: Path, remote_run: Path, tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    run = tmp_path / "run"
    config = tiny_config(demo_shards, run, tmp_path / "c.yaml")
    override = "data.labeled=s3://no-such-bucket-here/labeled"
    line = _one_error_line(cli("train", "--config", str(config), "--set", override))
    assert "s3://no-such-bucket-here/labeled" in line and "bucket does not exist" in line, line
    assert not (run / "metrics.jsonl").exists()  # before the first step
    pattern = f"{closed}/val/shard-{{000000..000003}}.tar"
    line = _one_error_line(cli("eval", "--ckpt", str(remote_run), "--shards", pattern))
    assert f"{closed}/val/shard-000000.tar" in line and "ConnectionRefused" in line, line
    from prep.inspect_shards import inspect_path
    from svformer.errors import UserError

    with pytest.raises(UserError, match="ConnectionRefused") as err:
        list(inspect_path(f"{closed}/val"))
    assert f"{closed}/val" in str(err.value) and "\n" not in str(err.value)
