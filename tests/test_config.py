"""Config loading: YAML, `--set` overrides, unknown keys, the shipped configs."""

from pathlib import Path

import pytest
import yaml

from svformer.config import Config, from_dict, load_config, parse_views, save_config, to_dict
from svformer.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
PAPER_SETTINGS = [
    "k400_1pct",
    "k400_10pct",
    "ucf101_1pct",
    "ucf101_10pct",
    "hmdb51_40pct",
    "hmdb51_50pct",
    "hmdb51_60pct",
]


def test_every_shipped_config_loads_and_is_named_after_its_file():
    files = sorted((ROOT / "configs").glob("*.yaml"))
    assert files, "no configs shipped"
    for path in files:
        cfg = load_config(path)
        assert cfg.name == path.stem


@pytest.mark.parametrize("setting", PAPER_SETTINGS)
@pytest.mark.parametrize("size,variant", [("s", "small"), ("b", "base")])
def test_paper_configs_carry_the_released_recipe(setting, size, variant):
    cfg = load_config(ROOT / "configs" / f"svformer_{size}_{setting}.yaml")
    assert cfg.model.variant == variant
    assert (cfg.data.num_frames, cfg.data.sampling_rate, cfg.data.img_size) == (8, 8, 224)
    assert cfg.data.short_side_range == [256, 320]
    assert (cfg.ssl.threshold, cfg.ssl.ema_decay, cfg.ssl.mix_alpha) == (0.3, 0.99, 10.0)
    assert (cfg.ssl.lambda_unlabeled, cfg.ssl.lambda_mix) == (2.0, 2.0)
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == ("sgd", 0.005, 0.9, 1e-4)
    # 64 labeled clips per optimizer step on 8 GPUs, LR x0.1 at epochs 25 and 28 of 30
    assert cfg.data.batch_size * cfg.train.grad_accum * 8 == 64
    first, second = cfg.optim.decay_steps
    assert first / cfg.train.max_steps == pytest.approx(25 / 30, abs=0.01)
    assert second / cfg.train.max_steps == pytest.approx(28 / 30, abs=0.01)
    assert cfg.train.warmup_steps / cfg.train.max_steps == pytest.approx(5 / 30, abs=0.01)
    classes = {"k400": 400, "ucf101": 101, "hmdb51": 51}[setting.split("_")[0]]
    assert cfg.model.num_classes == classes


def test_overrides_are_parsed_to_the_declared_types():
    cfg = load_config(
        ROOT / "configs/demo.yaml",
        [
            "train.max_steps=7",
            "train.warmup_steps=3",
            "ssl.threshold=0.5",
            "ssl.mix=false",
            "data.short_side_range=[60,80]",
            "optim.decay_steps=4,6",
            "model.variant=small",
        ],
    )
    assert cfg.train.max_steps == 7 and isinstance(cfg.train.max_steps, int)
    assert cfg.ssl.threshold == 0.5 and cfg.ssl.mix is False
    assert cfg.data.short_side_range == [60, 80]
    assert cfg.optim.decay_steps == [4, 6]
    assert cfg.model.variant == "small"


def test_unknown_yaml_key_fails_naming_it_and_the_valid_keys(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("ssl:\n  thresold: 0.5\n")
    with pytest.raises(UserError) as err:
        load_config(path)
    message = str(err.value)
    assert "ssl.thresold" in message and "ssl.threshold" in message and str(path) in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "override,needle",
    [
        ("train.max_stepz=1", "train.max_stepz"),
        ("nosuch=1", "nosuch"),
        ("train.max_steps=abc", "train.max_steps"),
        ("train.max_steps=1.5", "integer"),
        ("ssl.mix=maybe", "ssl.mix"),
        ("ssl=1", "section"),
        ("model.variant=huge", "model.variant"),
        ("model.time_embed_std=-1", "model.time_embed_std must be >= 0"),
        ("noequals", "section.key=value"),
    ],
)
def test_bad_overrides_fail_with_one_line(override, needle):
    with pytest.raises(UserError) as err:
        load_config(ROOT / "configs/demo.yaml", [override])
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_missing_and_malformed_config_files_fail_clearly(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)


def test_resolved_config_round_trips_through_yaml_and_dict(tmp_path):
    cfg = load_config(ROOT / "configs/demo.yaml", ["train.seed=3"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert to_dict(again) == to_dict(cfg)
    assert from_dict(to_dict(cfg)) == cfg
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["train"]["seed"] == 3


def test_default_output_dir_is_runs_slash_name():
    assert str(Config(name="abc").output_dir) == "runs/abc"
    assert str(load_config(None, ["train.output_dir=/x/y"]).output_dir) == "/x/y"


def test_views_parse_and_reject_nonsense():
    assert parse_views("5x3") == (5, 3)
    assert parse_views("1x1") == (1, 1)
    for bad in ("5", "5x2", "0x3", "axb"):
        with pytest.raises(UserError):
            parse_views(bad)
