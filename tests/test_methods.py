"""The method seam: a fourth method registered from this file alone trains through the real loop, and
errors name the option or config key the user gave."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from _runs import tiny_config

from svformer.config import load_config
from svformer.errors import UserError
from svformer.methods import METHODS, Supervised, register
from svformer.methods.supervised import labeled_loss, supervised_logs
from svformer.train import train


class ToyLog:
    losses: list[int] = []  # the step of every loss() call, across instances (each run builds a new one)


@register("toy")
class Toy(Supervised):
    """Supervised cross-entropy, plus a counter it saves and a frozen copy of the initial student."""

    log_keys = {"toy": ("loss", "loss_toy")}

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.calls = 0
        self.snapshot = copy.deepcopy(ctx.student_module).eval()

    def loss(self, batch, step):
        ToyLog.losses.append(step)
        self.calls += 1
        loss = labeled_loss(self.ctx.student, batch["labeled"], self.ctx.cfg.data.mean, self.ctx.cfg.data.std)
        logs = supervised_logs(loss)
        logs.means["loss_toy"] = torch.tensor(float(self.calls))
        return loss, logs

    def saved_models(self):
        return {"snapshot": self.snapshot}

    def state_dict(self):
        return {**super().state_dict(), "calls": self.calls}

    def load_state_dict(self, state):
        self.calls = state["calls"]
        self.snapshot.load_state_dict(state["models"]["snapshot"])


def test_a_method_registered_from_a_test_trains_through_the_real_loop(demo_shards, tmp_path):
    from svformer import run_dir

    assert METHODS["toy"] is Toy
    overrides = {"method": "toy", "max_steps": 3, "checkpoint_every": 3, "val_every": 3, "log_every": 1}
    config = tiny_config(demo_shards, tmp_path / "run", tmp_path / "c.yaml", train=overrides)
    ToyLog.losses.clear()
    train(load_config(config))
    assert ToyLog.losses == [0, 1, 2]  # the loop called the method's loss once per step (no grad_accum)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss_toy"] for r in rows if r["split"] == "train"] == [1.0, 2.0, 3.0]
    assert all("epoch" in r for r in rows if r["split"] == "train")  # Supervised's epoch unit, inherited
    val = [r for r in rows if r["split"] == "val"]
    assert val and {"student_top1", "snapshot_top1"} <= set(val[0])  # it scored the method's own models
    ckpt = tmp_path / "run" / "checkpoints" / "step-000003"
    assert torch.load(ckpt / "method.pt", weights_only=True)["calls"] == 3
    weights = run_dir.load_trained(tmp_path / "run")  # eval/export find the method's model by its name
    assert set(weights.states) == {"student", "snapshot"}
    assert run_dir.pick_models(weights, "both") == ["snapshot", "student"]

    # Resumed for one more step: the counter comes back from the checkpoint, then counts on.
    train(load_config(config, ["train.max_steps=4", "train.checkpoint_every=1"]))
    assert ToyLog.losses == [0, 1, 2, 3]
    saved = torch.load(tmp_path / "run" / "checkpoints" / "step-000004" / "method.pt", weights_only=True)
    assert saved["calls"] == 4
    before = weights.states["snapshot"]
    assert all(torch.equal(v, before[k]) for k, v in saved["models"]["snapshot"].items())


def test_an_unknown_method_is_one_line_naming_train_method(demo_shards, tmp_path):
    config = tiny_config(demo_shards, tmp_path / "run", tmp_path / "c.yaml", train={"method": "mean_teacher"})
    with pytest.raises(UserError, match=r"unknown train.method 'mean_teacher'; choose one of .*svformer.*fixmatch"):
        train(load_config(config))


@pytest.mark.parametrize(
    ("key", "named"),
    [
        ("model.pretrain_init", "model.pretrain_init /nonexistent does not exist"),
        ("model.official_init", "model.official_init: checkpoint /nonexistent does not exist"),
        ("model.imagenet_init", "model.imagenet_init: checkpoint /nonexistent does not exist"),
    ],
)
def test_a_missing_initialisation_names_its_config_key_not_ckpt(demo_shards, tmp_path, key, named):
    config = tiny_config(demo_shards, tmp_path / "run", tmp_path / "c.yaml")
    with pytest.raises(UserError) as err:
        train(load_config(config, [f"{key}=/nonexistent"]))
    assert str(err.value) == named and "--ckpt" not in str(err.value)


def test_pretraining_continued_from_a_missing_run_names_model_pretrain_init(demo_shards, tmp_path):
    config = tiny_config(demo_shards, tmp_path / "run", tmp_path / "c.yaml", train={"method": "masked_video"})
    with pytest.raises(UserError, match=r"^model.pretrain_init /nonexistent does not exist$"):
        train(load_config(config, ["model.pretrain_init=/nonexistent"]))
