"""eval and export: numbers against a slow reference, 1 vs 2 processes, reports, round trip, bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
import torch
from _runs import ROOT, cli, env, launcher, tiny_config
from torchvision.io import decode_jpeg


@pytest.fixture(scope="module")
def trained_run(demo_shards, tmp_path_factory):
    """A tiny run trained for 4 steps (2 supervised, 2 SSL): it has a student and a teacher."""
    from svformer.config import load_config
    from svformer.train import train

    tmp = tmp_path_factory.mktemp("eval_run")
    config = tiny_config(
        demo_shards,
        tmp / "run",
        tmp / "c.yaml",
        train={"max_steps": 4, "warmup_steps": 2, "checkpoint_every": 4, "val_every": 0},
    )
    train(load_config(config))
    return tmp / "run"


def _slow_reference(
    run: Path, val_dir: Path, which: str, clips: int, crops: int
) -> dict[str, tuple[int, torch.Tensor]]:
    """Decode every frame of every val video by hand, cut the views one by one, sum view logits."""
    from svformer import build_model
    from svformer.data import clip_indices, uniform_clip_starts
    from svformer.run_dir import load_trained
    from svformer.views import normalize, test_views

    weights = load_trained(run)
    cfg = weights.config
    model = build_model(
        cfg.model.variant,
        cfg.model.num_classes,
        num_frames=cfg.data.num_frames,
        img_size=cfg.data.img_size,
        **cfg.model.overrides(),
    )
    model.load_state_dict(weights.states[which])
    model.eval()
    out = {}
    for shard in sorted(val_dir.glob("*.tar")):
        with tarfile.open(shard) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name, data in members.items():
            if not name.endswith(".json"):
                continue
            record = json.loads(data)
            blob, offset, frames = members[name[:-5] + ".jpgs"], 0, []
            for size in record["frame_sizes"]:
                frames.append(decode_jpeg(torch.frombuffer(bytearray(blob[offset : offset + size]), dtype=torch.uint8)))
                offset += size
            video = torch.stack(frames, dim=1)  # (C, N, H, W)
            total = torch.zeros(cfg.model.num_classes)
            for start in uniform_clip_starts(
                video.shape[1], cfg.data.num_frames, cfg.data.sampling_rate, clips
            ).tolist():
                clip = video[:, clip_indices(video.shape[1], cfg.data.num_frames, cfg.data.sampling_rate, start)]
                for view in test_views(clip, cfg.data.test_short_side, cfg.data.img_size, crops):
                    with torch.no_grad():
                        total += model(normalize(view[None], cfg.data.mean, cfg.data.std))[0].float()
            out[record["key"]] = (record["label"], total)
    return out


def test_eval_equals_a_slow_reference_over_the_same_views(trained_run, demo_shards, tmp_path):
    from svformer.evaluate import evaluate

    results = evaluate(trained_run, views="2x3", which="teacher", out_dir=tmp_path / "report")
    reference = _slow_reference(trained_run, demo_shards / "val", "teacher", 2, 3)
    labels = torch.tensor([label for label, _ in reference.values()])
    logits = torch.stack([total for _, total in reference.values()])
    assert results["teacher"]["videos"] == len(reference)
    assert results["teacher"]["top1"] == pytest.approx(float((logits.argmax(-1) == labels).float().mean()))
    top5 = logits.topk(5, dim=-1).indices
    assert results["teacher"]["top5"] == pytest.approx(float((top5 == labels[:, None]).any(-1).float().mean()))
    with (tmp_path / "report" / "predictions.csv").open() as fh:
        rows = {row["key"]: row for row in csv.DictReader(fh)}
    for key, (label, total) in reference.items():
        assert int(rows[key]["label"]) == label
        assert int(rows[key]["top5"].split()[0]) == int(total.argmax())
        assert float(rows[key]["scores"].split()[0]) == pytest.approx(float(total.max()), rel=1e-3, abs=1e-3)


def test_eval_writes_metrics_predictions_and_non_empty_plots(trained_run, tmp_path):
    result = cli("eval", "--ckpt", str(trained_run), "--views", "2x3", "--model", "both", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) == {"teacher", "student"}
    for entry in metrics.values():
        assert {
            "top1",
            "top5",
            "mean_class_accuracy",
            "clip_accuracy",
            "video_accuracy",
            "videos",
            "views",
            "step",
        } <= set(entry)
        assert entry["views"] == "2x3" and entry["step"] == 4 and 0.0 <= entry["top1"] <= entry["top5"] <= 1.0
    for png in ("confusion.png", "confusion-student.png", "curves.png"):
        data = (tmp_path / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png
    assert "teacher: top-1" in result.stdout


def test_two_process_eval_equals_one_process(trained_run, tmp_path):
    one = cli(
        "eval", "--ckpt", str(trained_run), "--views", "2x3", "--model", "teacher", "--out", str(tmp_path / "one")
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run(
        launcher(
            "eval", "--ckpt", str(trained_run), "--views", "2x3", "--model", "teacher", "--out", str(tmp_path / "two")
        ),
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())["teacher"]
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())["teacher"]
    assert m1["videos"] == m2["videos"]  # every video exactly once
    for key in ("top1", "top5", "mean_class_accuracy", "clip_accuracy"):
        assert m1[key] == pytest.approx(m2[key]), key
    p1 = (tmp_path / "one" / "predictions.csv").read_text().splitlines()
    p2 = (tmp_path / "two" / "predictions.csv").read_text().splitlines()
    assert [r.split(",")[:4] for r in p1] == [r.split(",")[:4] for r in p2]


def test_export_round_trips_exactly_and_eval_accepts_it(trained_run, tmp_path):
    from svformer.run_dir import load_exported, load_trained

    out = tmp_path / "model.safetensors"
    result = cli("export", "--ckpt", str(trained_run), "--out", str(out), "--model", "teacher")
    assert result.returncode == 0, result.stderr[-3000:]
    state, config, num_classes = load_exported(out)
    original = load_trained(trained_run).states["teacher"]
    assert num_classes == 8 and set(state) == set(original)
    assert all(torch.equal(state[k], original[k]) for k in original)
    assert config["model"]["embed_dim"] == 32
    result = cli("eval", "--ckpt", str(out), "--views", "1x1", "--model", "teacher", "--out", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["teacher"]["views"] == "1x1"


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    return errors[0]


def test_eval_of_a_directory_without_checkpoint_fails_in_one_line(tmp_path):
    assert "no complete checkpoint" in _one_error_line(cli("eval", "--ckpt", str(tmp_path)))


def test_eval_on_shards_of_other_classes_fails_in_one_line(trained_run, tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from _data_shards import Video, write_shards

    write_shards(tmp_path / "other", [Video(f"v{i}", 20 + i) for i in range(3)], per_shard=3)
    line = _one_error_line(
        cli("eval", "--ckpt", str(trained_run), "--shards", str(tmp_path / "other"), "--views", "1x1")
    )
    assert "outside the model's 8 classes" in line


def test_exported_file_with_mismatched_weights_fails_in_one_line(trained_run, tmp_path):
    from svformer.run_dir import load_exported, save_exported

    good = tmp_path / "good.safetensors"
    assert cli("export", "--ckpt", str(trained_run), "--out", str(good)).returncode == 0
    state, config, num_classes = load_exported(good)
    config["model"]["embed_dim"] = 48  # weights of one shape, config of another
    save_exported(tmp_path / "bad.safetensors", state, config, num_classes)
    line = _one_error_line(cli("eval", "--ckpt", str(tmp_path / "bad.safetensors"), "--views", "1x1"))
    assert "do not fit" in line


def test_curves_without_pseudo_label_or_validation_rows_say_so_instead_of_an_empty_legend(tmp_path):
    # Supervised-only runs log no pseudo-labels, and the SSL bench trains with train.val_every=0.
    import warnings

    from svformer.methods import Supervised
    from svformer.reports import plot_curves

    jsonl = tmp_path / "metrics.jsonl"
    jsonl.write_text(
        "".join(
            json.dumps({"step": s, "split": "train", "loss": 2.0 - s / 100, "loss_sup": 2.0}) + "\n"
            for s in (10, 20, 30)
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns about a legend with no labelled artists
        assert plot_curves(jsonl, tmp_path / "curves.png", Supervised.log_keys)
    assert (tmp_path / "curves.png").stat().st_size > 0
    (tmp_path / "empty.jsonl").write_text("")
    assert not plot_curves(
        tmp_path / "empty.jsonl", tmp_path / "none.png", Supervised.log_keys
    )  # no train rows: no plot
    assert not (tmp_path / "none.png").exists()
