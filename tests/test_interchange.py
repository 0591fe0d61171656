"""Hugging Face and ONNX: exports load in transformers / onnxruntime and give svformer's logits, transformers
TimeSformer directories initialise svformer's student exactly, `predict --ckpt model.onnx` predicts like its run.

Every transformers model here is built from a tiny TimesformerConfig and saved with save_pretrained: no download.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _runs import tiny_config
from click.testing import CliRunner

import cli

TOL = 1e-4
SIZES = dict(patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
NAMES = ["walk", "run", "jump", "sit", "stand", "wave", "clap", "kick"]


def _cli(*args: str) -> str:
    result = CliRunner().invoke(cli.cli, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def _scramble(module: torch.nn.Module, seed: int) -> None:
    """Every parameter random (a fresh init leaves temporal_fc and time_embed zero, hiding their mapping)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = 0.2 * torch.randn(p.shape, generator=g)
            p.copy_(1 + noise if "norm" in name and name.endswith("weight") else noise)


def _config(tmp: Path, **model):
    from svformer.config import load_config

    shards = tmp / "no_shards"  # init and export tests read no data
    return load_config(tiny_config(shards, tmp / "run", tmp / "c.yaml", model=model))


def _student(cfg):
    """The student network a run of `cfg` starts from: the config's TimeSformer with its outside weights."""
    from svformer.model import build_from_config
    from svformer.weight_import import load_configured_init

    return load_configured_init(build_from_config(cfg), cfg.model)


def _clip(batch: int, frames: int = 4, side: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, frames, side, side, generator=torch.Generator().manual_seed(seed))  # (B, C, T, H, W)


@pytest.fixture(scope="module")
def random_export(tmp_path_factory) -> Path:
    """A svformer export (tiny model, every weight random, 8 named classes, prep settings recorded)."""
    from svformer.config import to_dict
    from svformer.model import build_model
    from svformer.run_dir import save_exported

    tmp = tmp_path_factory.mktemp("interchange_export")
    cfg = _config(tmp)
    model = build_model(
        cfg.model.variant, 8, num_frames=cfg.data.num_frames, img_size=cfg.data.img_size, **cfg.model.overrides()
    )
    _scramble(model, seed=1)
    config = to_dict(cfg)
    config["_exported_model"], config["_exported_step"] = "teacher", 7
    config["_data"] = {"prep": {"short_side": 64, "fps": 15.0, "quality": 90}, "class_names": NAMES}
    return save_exported(tmp / "random.safetensors", model.state_dict(), config, 8)


@pytest.fixture(scope="module")
def trained_run(demo_shards, tmp_path_factory) -> Path:
    """A tiny run trained for 2 steps on the demo-style shards: its checkpoint records their class names."""
    from svformer.config import load_config
    from svformer.train import train

    tmp = tmp_path_factory.mktemp("interchange_run")
    config = tiny_config(
        demo_shards,
        tmp / "run",
        tmp / "c.yaml",
        model={"time_embed_std": 1.0},
        train={"max_steps": 2, "warmup_steps": 1, "checkpoint_every": 2, "val_every": 0},
    )
    train(load_config(config))
    return tmp / "run"


# ---------------------------------------------------------------- Hugging Face out


def test_hf_export_loads_in_transformers_with_no_missing_keys_and_gives_the_same_logits(random_export, tmp_path):
    from transformers import AutoImageProcessor, TimesformerForVideoClassification

    from svformer.interchange.hf import load_hf
    from svformer.run_dir import build_trained_model, load_trained

    out = tmp_path / "hf"
    _cli("export", "--ckpt", str(random_export), "--format", "hf", "--out", str(out))
    hf_model, info = TimesformerForVideoClassification.from_pretrained(out, output_loading_info=True)
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set() and info["mismatched_keys"] == set()
    assert hf_model.config.id2label == dict(enumerate(NAMES))
    assert hf_model.config.label2id == {name: i for i, name in enumerate(NAMES)}
    assert (hf_model.config.num_frames, hf_model.config.image_size) == (4, 32)

    ours = build_trained_model(load_trained(random_export), "teacher")
    clip = _clip(3)
    with torch.no_grad():
        expected = ours(clip)
        got = hf_model.eval()(pixel_values=clip.transpose(1, 2)).logits  # transformers takes (B, T, C, H, W)
    diff = float((got - expected).abs().max())
    assert diff < TOL, diff

    back = build_trained_model(load_trained(random_export), "teacher")  # and back in with model.hf_init's loader
    torch.nn.init.zeros_(back.head.weight)
    assert load_hf(back, out)["head"] == "kept"
    for key, value in ours.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key

    processor = AutoImageProcessor.from_pretrained(out)
    cfg = load_trained(random_export).config.data
    assert type(processor).__name__ == "VideoMAEImageProcessor"
    assert processor.size["shortest_edge"] == cfg.test_short_side
    assert (processor.crop_size["height"], processor.crop_size["width"]) == (cfg.img_size, cfg.img_size)
    assert list(processor.image_mean) == cfg.mean and list(processor.image_std) == cfg.std
    frames = [torch.randint(0, 256, (40, 48, 3), dtype=torch.uint8).numpy() for _ in range(4)]
    pixels = processor(frames, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 4, 3, 32, 32)
    assert hf_model(pixel_values=pixels).logits.shape == (1, 8)


def test_hf_export_of_a_run_names_its_classes_and_replaces_its_own_directory(trained_run, demo_videos, tmp_path):
    from transformers import TimesformerForVideoClassification

    out = tmp_path / "hf"
    for _ in range(2):  # the second export replaces the first whole
        _cli("export", "--ckpt", str(trained_run), "--format", "hf", "--model", "student", "--out", str(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]  # no temp or old directory left beside it
    _, info = TimesformerForVideoClassification.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    names = (demo_videos / "classes.txt").read_text().splitlines()
    config = json.loads((out / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(8)] == names
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine\n")
    result = CliRunner().invoke(
        cli.cli, ["export", "--ckpt", str(trained_run), "--format", "hf", "--out", str(tmp_path / "other")]
    )
    assert result.exit_code != 0 and "is not a Hugging Face model directory" in result.output, result.output
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine\n"


# ---------------------------------------------------------------- Hugging Face in


def _save_hf(tmp: Path, name: str, classify: bool, num_labels: int = 8, seed: int = 2, **sizes):
    from transformers import TimesformerConfig, TimesformerForVideoClassification, TimesformerModel

    config = TimesformerConfig(
        **{**SIZES, "image_size": 32, "num_frames": 4, **sizes},
        id2label={i: f"class{i}" for i in range(num_labels)},
        label2id={f"class{i}": i for i in range(num_labels)},
    )
    model = (TimesformerForVideoClassification if classify else TimesformerModel)(config).eval()
    _scramble(model, seed)
    model.save_pretrained(tmp / name)
    return model, tmp / name


def test_hf_init_from_a_timesformer_model_loads_the_backbone_exactly_and_starts_a_new_head(tmp_path, caplog):

    hf_model, path = _save_hf(tmp_path, "base", classify=False, qkv_bias=False)
    cfg = _config(tmp_path, hf_init=str(path))
    torch.manual_seed(0)
    fresh_head = _student(_config(tmp_path)).head.weight.clone()
    torch.manual_seed(0)
    with caplog.at_level("INFO", logger="svformer.interchange.hf"):
        model = _student(cfg).eval()
    assert f"Hugging Face init from {path} (TimesformerModel)" in caplog.text
    assert "head new (none there)" in caplog.text
    clip = _clip(2, seed=3)
    with torch.no_grad():
        expected = hf_model(pixel_values=clip.transpose(1, 2)).last_hidden_state[:, 0]  # normed class token
        got = model.forward_features(clip)
    diff = float((got - expected).abs().max())
    assert diff < TOL, diff
    assert torch.equal(model.head.weight, fresh_head)  # the model's own new head, untouched


def test_hf_init_keeps_a_classifier_with_this_many_classes_and_replaces_another(tmp_path, caplog):
    from svformer.interchange.hf import load_hf

    hf_model, path = _save_hf(tmp_path, "eight", classify=True, num_labels=8)
    with caplog.at_level("INFO", logger="svformer.interchange.hf"):
        model = _student(_config(tmp_path, hf_init=str(path))).eval()
    assert "head kept (8 classes: class0, class1, class2, class3, ... (8 in all))" in caplog.text
    clip = _clip(3, seed=4)
    with torch.no_grad():
        diff = float((model(clip) - hf_model(pixel_values=clip.transpose(1, 2)).logits).abs().max())
    assert diff < TOL, diff

    _, five = _save_hf(tmp_path, "five", classify=True, num_labels=5, seed=5)
    model = _student(_config(tmp_path)).eval()
    head = model.head.weight.clone()
    report = load_hf(model, five)
    assert report["head"] == "new" and report["kind"] == "TimesformerForVideoClassification"
    assert torch.equal(model.head.weight, head)


def test_hf_init_resizes_position_and_time_embeddings_like_the_other_inits(tmp_path):
    from svformer.interchange.hf import load_hf
    from svformer.model import resize_pos_embed, resize_time_embed

    hf_model, path = _save_hf(tmp_path, "big", classify=False, image_size=48, num_frames=6)
    model = _student(_config(tmp_path))
    report = load_hf(model, path)
    assert report["resized"] == ["pos_embed", "time_embed"]
    embeddings = hf_model.embeddings
    assert torch.equal(model.pos_embed.data, resize_pos_embed(embeddings.position_embeddings.data, (4, 4)))
    assert torch.equal(model.time_embed.data, resize_time_embed(embeddings.time_embeddings.data, 4))


def test_hf_init_refuses_in_one_line_what_is_not_a_timesformer_or_does_not_fit(tmp_path):
    from transformers import ViTConfig, ViTModel

    from svformer.errors import UserError

    ViTModel(
        ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    ).save_pretrained(tmp_path / "vit")
    _, wide = _save_hf(tmp_path, "wide", classify=False, hidden_size=64, num_attention_heads=4, intermediate_size=256)
    _, heads = _save_hf(tmp_path, "heads", classify=False, num_attention_heads=4)
    (tmp_path / "empty").mkdir()
    cases = {
        tmp_path / "vit": "not a TimeSformer (config.json model_type is 'vit'",
        tmp_path / "empty": "no config.json there",
        wide: "hidden_size 64 vs 32 model.embed_dim",
        heads: "num_attention_heads 4 vs 2 model.num_heads",
    }
    for path, expected in cases.items():
        with pytest.raises(UserError) as err:
            _student(_config(tmp_path, hf_init=str(path)))
        message = str(err.value)
        assert "\n" not in message and f"model.hf_init={path}" in message and expected in message, message


# ---------------------------------------------------------------- ONNX


def test_onnx_export_gives_torch_logits_through_its_dynamic_batch_axis(random_export, tmp_path):
    import onnx

    from svformer.interchange.onnx import OnnxModel
    from svformer.run_dir import build_trained_model, load_trained

    out = tmp_path / "model.onnx"
    _cli("export", "--ckpt", str(random_export), "--format", "onnx", "--out", str(out))
    graph = onnx.load(str(out))
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a named (dynamic) batch axis
    meta = {p.key: p.value for p in graph.metadata_props}
    assert json.loads(meta["class_names"]) == NAMES
    assert json.loads(meta["prep"]) == {"short_side": 64, "fps": 15.0, "quality": 90}

    onnx_model = OnnxModel(out)
    ours = build_trained_model(load_trained(random_export), "teacher")
    for batch in (1, 3):
        clip = _clip(batch, seed=batch)
        with torch.no_grad():
            diff = float((onnx_model(clip) - ours(clip)).abs().max())
        assert diff < TOL, (batch, diff)


def test_predict_on_the_onnx_export_gives_the_labels_of_its_run(trained_run, demo_shards, demo_videos, tmp_path):
    onnx_file = tmp_path / "model.onnx"
    _cli("export", "--ckpt", str(trained_run), "--format", "onnx", "--out", str(onnx_file))
    rows = {}
    for name, ckpt in (("run", trained_run), ("onnx", onnx_file)):
        out = tmp_path / f"{name}.jsonl"
        _cli(
            "predict",
            "--ckpt",
            str(ckpt),
            "--list",
            str(demo_shards / "lists" / "val.txt"),
            "--data-root",
            str(demo_videos),
            "--views",
            "2x3",
            "--workers",
            "2",
            "--out",
            str(out),
        )
        rows[name] = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows["onnx"]) == len(rows["run"]) == 8
    assert all(row["error"] is None for row in rows["onnx"])
    assert [r["label"] for r in rows["onnx"]] == [r["label"] for r in rows["run"]]
    assert [r["name"] for r in rows["onnx"]] == [r["name"] for r in rows["run"]]
    for a, b in zip(rows["run"], rows["onnx"]):
        assert a["confidence"] == pytest.approx(b["confidence"], abs=TOL)


def test_predict_refuses_an_onnx_file_svformer_did_not_write_in_one_line(tmp_path):
    from svformer.errors import UserError
    from svformer.predict import Predictor

    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf")
    for path, expected in (
        (tmp_path / "junk.onnx", "is not a readable ONNX model"),
        (tmp_path / "none.onnx", "does not exist"),
    ):
        with pytest.raises(UserError) as err:
            Predictor.load(path)
        assert "\n" not in str(err.value) and expected in str(err.value) and str(path) in str(err.value)
