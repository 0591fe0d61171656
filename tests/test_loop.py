"""The training loop in-process (no launcher): accumulation with a non-finite micro-batch, the warm-up to
SVFormer switch, and a resume in each stage."""

from __future__ import annotations

import shutil

import torch
from _runs import tiny_config


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


class Recorder:
    """Wraps SVFormer.loss / after_step to record what the loop does, optionally poisoning one micro-batch."""

    def __init__(self, monkeypatch, poison_call: int | None = None) -> None:
        from svformer.methods import SVFormer

        self.calls: list[int] = []  # step of every loss() call
        self.after: list[int] = []  # step of every after_step() call
        self.weights_at_call: list[dict] = []
        self.teacher_after: dict[int, dict | None] = {}
        self.student_after: dict[int, dict] = {}
        self.first_teacher: dict | None = None
        loss, after_step = SVFormer.loss, SVFormer.after_step
        recorder = self

        def recording_loss(method, batch, step):
            recorder.calls.append(step)
            recorder.weights_at_call.append(_snapshot(method.ctx.student_module))
            if recorder.first_teacher is None and method.teacher is not None:
                recorder.first_teacher = _snapshot(method.teacher.module)
            value, logs = loss(method, batch, step)
            if poison_call is not None and len(recorder.calls) - 1 == poison_call:
                value = value * float("nan")
            return value, logs

        def recording_after_step(method, step):
            after_step(method, step)
            recorder.after.append(step)
            recorder.student_after[step] = _snapshot(method.ctx.student_module)
            recorder.teacher_after[step] = None if method.teacher is None else _snapshot(method.teacher.module)

        monkeypatch.setattr(SVFormer, "loss", recording_loss)
        monkeypatch.setattr(SVFormer, "after_step", recording_after_step)


def test_accumulation_skips_the_step_with_a_non_finite_micro_batch_on_every_micro_batch(
    demo_shards, tmp_path, monkeypatch
):
    from svformer.config import load_config
    from svformer.train import train

    accum = 2
    recorder = Recorder(monkeypatch, poison_call=3)  # step 1's second micro-batch
    cfg = load_config(
        tiny_config(
            demo_shards,
            tmp_path / "run",
            tmp_path / "c.yaml",
            train={"max_steps": 4, "warmup_steps": 2, "grad_accum": accum, "checkpoint_every": 4, "val_every": 0},
        )
    )
    train(cfg)
    # step 1 ran twice: its first try (micro-batches 2 and 3) was dropped whole, then redone on new batches
    assert recorder.calls == [0, 0, 1, 1, 1, 1, 2, 2, 3, 3]
    assert recorder.after == [0, 1, 2, 3]  # every optimizer step taken once, none for the bad try
    # the bad try changed nothing: the redo starts from the weights the bad try started from
    assert _equal(recorder.weights_at_call[2], recorder.weights_at_call[4])
    assert _equal(recorder.weights_at_call[2], recorder.student_after[0])
    # micro-steps only accumulate: both micro-batches of a step see the same weights
    assert _equal(recorder.weights_at_call[6], recorder.weights_at_call[7])
    assert not _equal(recorder.weights_at_call[6], recorder.weights_at_call[8])


def test_the_teacher_appears_when_warm_up_ends_as_an_exact_copy_then_lags(demo_shards, tmp_path, monkeypatch):
    from svformer.config import load_config
    from svformer.train import train

    recorder = Recorder(monkeypatch)
    cfg = load_config(
        tiny_config(
            demo_shards,
            tmp_path / "run",
            tmp_path / "c.yaml",
            train={"max_steps": 5, "warmup_steps": 2, "checkpoint_every": 5, "val_every": 0},
        )
    )
    train(cfg)
    assert recorder.teacher_after[0] is None
    assert _equal(recorder.teacher_after[1], recorder.student_after[1])  # created after the last warm-up step
    assert not _equal(recorder.teacher_after[3], recorder.student_after[3])  # then an EMA of the student
    ckpt = cfg.output_dir / "checkpoints" / "step-000005"
    assert _equal(torch.load(ckpt / "method.pt", weights_only=True)["models"]["teacher"], recorder.teacher_after[4])


def test_resume_in_the_warm_up_and_in_the_svformer_stage(demo_shards, tmp_path, monkeypatch):
    from svformer.config import load_config
    from svformer.train import train

    cfg = load_config(
        tiny_config(
            demo_shards,
            tmp_path / "run",
            tmp_path / "c.yaml",
            train={"max_steps": 4, "warmup_steps": 2, "checkpoint_every": 1, "val_every": 0},
        )
    )
    train(cfg)
    checkpoints = cfg.output_dir / "checkpoints"
    saved_teacher = torch.load(checkpoints / "step-000003" / "method.pt", weights_only=True)["models"]["teacher"]
    saved_student = torch.load(checkpoints / "step-000003" / "mp_rank_00_model_states.pt", weights_only=False)["module"]

    # SVFormer stage: resume at step 3 with the teacher it saved
    shutil.rmtree(checkpoints / "step-000004")
    recorder = Recorder(monkeypatch)
    train(cfg)
    assert recorder.calls == [3] and recorder.after == [3]
    assert _equal(recorder.first_teacher, saved_teacher)
    assert _equal(recorder.weights_at_call[0], {k: v.float() for k, v in saved_student.items()})

    # warm-up stage: resume at step 1 without a teacher; it appears after step 1, the last warm-up step
    for step in (2, 3, 4):
        shutil.rmtree(checkpoints / f"step-{step:06d}", ignore_errors=True)
    monkeypatch.undo()
    recorder = Recorder(monkeypatch)
    train(cfg)
    assert recorder.calls == [1, 2, 3] and recorder.first_teacher is not None
    assert recorder.teacher_after[1] is not None and _equal(recorder.teacher_after[1], recorder.student_after[1])
