"""predict: raw videos get eval's logits, exports predict like their runs, bad files become rows,
the two list outputs are lists; prep --classes names the classes without changing a shard byte."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from _runs import tiny_config
from click.testing import CliRunner

import cli


@pytest.fixture(scope="module")
def trained_run(demo_shards, tmp_path_factory) -> Path:
    """A tiny run trained for 2 steps (1 supervised, 1 SSL): it has a student and a teacher."""
    from svformer.config import load_config
    from svformer.train import train

    tmp = tmp_path_factory.mktemp("predict_run")
    config = tiny_config(
        demo_shards,
        tmp / "run",
        tmp / "c.yaml",
        train={"max_steps": 2, "warmup_steps": 1, "checkpoint_every": 2, "val_every": 0},
    )
    train(load_config(config))
    return tmp / "run"


def _eval_view_logits(run: Path, shards: Path, clips: int, crops: int) -> dict[str, torch.Tensor]:
    """{sample key: (V, K) view logits} as `eval` computes them from the shards."""
    from svformer.data import eval_loader
    from svformer.evaluate import view_logits
    from svformer.run_dir import build_trained_model, load_trained

    weights = load_trained(run)
    model = build_trained_model(weights, "teacher")
    out = {}
    for batch in eval_loader(str(shards), weights.config, views=(clips, crops), workers=0):
        for key, logits in zip(batch["key"], view_logits(model, batch["video"], weights.config, torch.device("cpu"))):
            out[key] = logits
    return out


def _predict(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.cli, ["predict", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_predict_on_raw_videos_gives_eval_logits_of_their_shards(trained_run, demo_shards, demo_videos):
    from svformer import Predictor
    from svformer.lists import sample_key
    from svformer.predict import gather_inputs
    from svformer.video.decode import DecodeSettings

    predictor = Predictor.load(trained_run, views="2x3", device="cpu")
    assert predictor.decode == DecodeSettings(short_side=64, fps=15)  # the shards' prep settings, from the checkpoint
    videos = gather_inputs([], demo_shards / "lists" / "val.txt", demo_videos)
    rows = predictor.predict(videos, workers=2, batch_size=3, logits=True)
    reference = _eval_view_logits(trained_run, demo_shards / "val", 2, 3)
    assert len(rows) == len(reference) == 8
    names = (demo_videos / "classes.txt").read_text().splitlines()
    for row in rows:
        expected = reference[sample_key(row["line"], row["source"])]  # (V, K)
        assert torch.allclose(torch.tensor(row["logits"]), expected, atol=1e-5)
        assert row["label"] == int(expected.sum(0).argmax())
        assert row["name"] == names[row["label"]]
        assert row["error"] is None and row["list_label"] is not None
        probs = expected.mean(0).softmax(-1)
        assert row["confidence"] == pytest.approx(float(probs.max()), abs=1e-6)
        assert [c for c, _, _ in row["topk"]] == probs.topk(5).indices.tolist()


def test_an_export_predicts_what_its_run_predicts(trained_run, demo_videos, tmp_path):
    from svformer import Predictor
    from svformer.run_dir import export

    exported = export(trained_run, tmp_path / "teacher.safetensors", "teacher")
    videos = [demo_videos / "videos" / name for name in sorted(p.name for p in (demo_videos / "videos").iterdir())[:3]]
    from_run = Predictor.load(trained_run, views="2x1").predict(videos, logits=True)
    from_file = Predictor.load(exported, views="2x1").predict(videos, logits=True)
    assert [r["label"] for r in from_file] == [r["label"] for r in from_run]
    assert [r["name"] for r in from_file] == [r["name"] for r in from_run]
    for a, b in zip(from_run, from_file):
        assert torch.equal(torch.tensor(a["logits"]), torch.tensor(b["logits"]))


def test_bad_videos_become_error_rows_and_the_rest_are_predicted(trained_run, demo_videos, lavfi_video, tmp_path):
    good = min((demo_videos / "videos").iterdir())
    root = tmp_path / "in"
    root.mkdir()
    shutil.copy(good, root / "good.mp4")
    shutil.copy(good, root / "-dash.mp4")  # a real video whose name begins with '-'
    (root / "zero.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("not a video\n")
    lavfi_video(root / "audio.m4a", source="sine=duration=1", codec_args=("-c:a", "aac"))
    names = ["good.mp4", "-dash.mp4", "missing.mp4", "zero.mp4", "text.mp4", "audio.m4a", "-version"]
    code, output = _predict(
        "--ckpt",
        str(trained_run),
        "--views",
        "1x1",
        "--workers",
        "2",
        "--data-root",
        str(root),
        "--out",
        str(tmp_path / "rows.jsonl"),
        "--",
        *names,
    )
    assert code == 0, output
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [r["source"] for r in rows] == names
    errors = {r["source"]: r["error"] for r in rows}
    assert errors["good.mp4"] is None and errors["-dash.mp4"] is None
    assert errors["missing.mp4"] == "file not found" and errors["-version"] == "file not found"
    assert errors["zero.mp4"] == "zero-byte file"
    assert "not a video" in errors["text.mp4"]
    assert errors["audio.m4a"].startswith("no video stream (has: audio")
    assert rows[0]["topk"] == rows[1]["topk"]  # the '-' name reached ffmpeg as a file, not an option
    assert all(r["label"] is None and r["topk"] == [] for r in rows[2:])

    code, output = _predict(
        "--ckpt", str(trained_run), "--views", "1x1", "--data-root", str(root), "--", "missing.mp4", "zero.mp4"
    )
    assert code == 2
    assert output.strip().splitlines()[-1] == "error: all 2 input(s) failed; first: missing.mp4: file not found"


def test_pseudo_labels_and_label_next_are_lists_that_split_and_prep_read(
    trained_run, demo_shards, demo_videos, tmp_path
):
    import csv

    from prep.split import split_list
    from svformer.lists import read_list

    val = demo_shards / "lists" / "val.txt"
    code, output = _predict(
        "--ckpt",
        str(trained_run),
        "--views",
        "1x1",
        "--list",
        str(val),
        "--data-root",
        str(demo_videos),
        "--out",
        str(tmp_path / "rows.csv"),
        "--pseudo-labels",
        str(tmp_path / "pseudo.txt"),
        "--threshold",
        "0",
        "--label-next",
        "3",
        str(tmp_path / "next.txt"),
    )
    assert code == 0, output
    with (tmp_path / "rows.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 and all(not r["error"] for r in rows)
    pseudo = read_list(tmp_path / "pseudo.txt", data_root=demo_videos, num_classes=8, require_labels=True)
    assert not pseudo.failures
    assert [(e.source, e.label) for e in pseudo.entries] == [(r["source"], int(r["label"])) for r in rows]
    nxt = read_list(tmp_path / "next.txt", data_root=demo_videos, num_classes=8, require_labels=True)
    assert not nxt.failures and len(nxt.entries) == 3
    predicted = {int(r["label"]) for r in rows}
    assert len({e.label for e in nxt.entries}) == min(3, len(predicted))  # spread over the predicted classes
    split_list(tmp_path / "pseudo.txt", tmp_path / "split", labeled=0.5, val=0.0, seed=0)


def test_label_next_takes_the_least_certain_round_robin_over_classes():
    from svformer.predict.outputs import label_next

    def row(source: str, label: int, margin: float) -> dict:
        return {"source": source, "label": label, "margin": margin, "error": None}

    rows = [
        row("a1", 0, 0.05),
        row("a2", 0, 0.01),
        row("a3", 0, 0.02),
        row("b1", 1, 0.30),
        row("b2", 1, 0.20),
        row("c1", 2, 0.9),
        {"source": "bad", "label": None, "margin": None, "error": "file not found"},
    ]
    # round 1: the least certain of each class, by margin (a2, b2, c1); round 2: a3, b1; round 3: a1
    assert [r["source"] for r in label_next(rows, 10)] == ["a2", "b2", "c1", "a3", "b1", "a1"]
    assert [r["source"] for r in label_next(rows, 4)] == ["a2", "b2", "c1", "a3"]


def test_prep_classes_names_the_classes_without_changing_shards_or_resume(demo_videos, demo_shards, tmp_path):
    from prep.shards import prep_list
    from svformer.errors import UserError
    from svformer.lists import read_class_names
    from svformer.video.decode import DecodeSettings

    val, classes = demo_shards / "lists" / "val.txt", demo_videos / "classes.txt"
    names = read_class_names(classes, 8)
    settings = DecodeSettings(short_side=64, fps=15)
    result = CliRunner().invoke(
        cli.cli,
        [
            "prep",
            "--list",
            str(val),
            "--data-root",
            str(demo_videos),
            "--num-classes",
            "8",
            "--classes",
            str(classes),
            "--short-side",
            "64",
            "--fps",
            "15",
            "--workers",
            "2",
            "--shard-size",
            "200000",
            "--out",
            str(tmp_path / "named"),
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "named" / "manifest.json").read_text())
    plain = json.loads((demo_shards / "val" / "manifest.json").read_text())
    assert manifest["class_names"] == names and "class_names" not in plain
    assert [s["sha256"] for s in manifest["shards"]] == [s["sha256"] for s in plain["shards"]]
    # a run without names, resumed with them: every shard is kept, the manifest gains the names
    shutil.copytree(demo_shards / "val", tmp_path / "resumed")
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "resumed").glob("*.tar")}
    prep_list(
        val,
        tmp_path / "resumed",
        settings,
        data_root=demo_videos,
        num_classes=8,
        workers=2,
        progress=False,
        shard_size=200_000,
        class_names=names,
    )
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "resumed").glob("*.tar")} == before
    assert json.loads((tmp_path / "resumed" / "manifest.json").read_text())["class_names"] == names
    for i in (1, 2):  # parts: the merged manifest keeps the names
        prep_list(
            val,
            tmp_path / "parts",
            settings,
            data_root=demo_videos,
            num_classes=8,
            workers=2,
            progress=False,
            part=(i, 2),
            class_names=names,
        )
    assert json.loads((tmp_path / "parts" / "manifest.json").read_text())["class_names"] == names
    with pytest.raises(UserError, match="8 class names but --num-classes 7"):
        read_class_names(classes, 7)
    (tmp_path / "gap.txt").write_text("run\n\nwalk\n")
    with pytest.raises(UserError, match=r"gap.txt:2: blank line"):
        read_class_names(tmp_path / "gap.txt")
