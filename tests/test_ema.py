"""The EMA teacher: float32 copy, exact tracking of a low-precision student, save/load, decay schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from svformer.config import SSLConfig
from svformer.ssl import EMATeacher, ema_decay_at


class WithBuffer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4)
        self.norm = nn.LayerNorm(4)
        self.register_buffer("count", torch.zeros(()))

    def forward(self, x):
        return self.norm(self.fc(x)) + self.count


def perturb(student: nn.Module, g: torch.Generator) -> None:
    """A stand-in optimizer step: move every student parameter a little."""
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn(p.shape, generator=g).to(p.dtype) * 0.1)


def test_teacher_is_a_frozen_float32_eval_copy():
    torch.manual_seed(0)
    student = WithBuffer().to(torch.bfloat16).train()
    teacher = EMATeacher(student)
    assert not teacher.module.training and student.training
    for (name, t), s in zip(teacher.module.named_parameters(), student.parameters()):
        assert t.dtype == torch.float32 and not t.requires_grad and torch.equal(t, s.float()), name
    perturb(student, torch.Generator().manual_seed(1))
    assert not torch.equal(teacher.module.fc.weight, student.fc.weight.float())  # an independent copy
    with torch.no_grad():
        assert teacher(torch.randn(2, 6)).dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_teacher_after_n_updates_equals_the_closed_form(dtype):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(2)
    student = WithBuffer().to(dtype)
    teacher = EMATeacher(student)
    m, steps = 0.9, 25
    t0 = [p.detach().double() for p in student.parameters()]
    seen = []
    for _ in range(steps):
        perturb(student, g)
        seen.append([p.detach().double() for p in student.parameters()])  # what the teacher sees: upcast
        teacher.update(student, m)
    for k, t in enumerate(teacher.module.parameters()):
        closed = m**steps * t0[k] + sum((1 - m) * m ** (steps - 1 - i) * seen[i][k] for i in range(steps))
        err = (t.double() - closed).abs().max() / closed.abs().max()
        assert err < 1e-6, float(err)


def test_update_from_a_bf16_student_upcasts_and_copies_buffers():
    torch.manual_seed(0)
    student = WithBuffer().to(torch.bfloat16)
    teacher = EMATeacher(student)
    assert all(p.dtype == torch.float32 for p in teacher.module.parameters())
    student.count.fill_(3.0)
    teacher.update(student, 0.0)
    assert all(torch.equal(t, s.float()) for t, s in zip(teacher.module.parameters(), student.parameters()))
    assert float(teacher.module.count) == 3.0
    with pytest.raises(ValueError):
        teacher.update(torch.nn.Linear(2, 2), 0.5)


def test_decay_one_freezes_and_decay_zero_copies():
    torch.manual_seed(0)
    student = WithBuffer()
    teacher = EMATeacher(student)
    frozen = [p.clone() for p in teacher.module.parameters()]
    perturb(student, torch.Generator().manual_seed(3))
    teacher.update(student, 1.0)
    assert all(torch.equal(t, f) for t, f in zip(teacher.module.parameters(), frozen))
    teacher.update(student, 0.0)
    assert all(torch.equal(t, s) for t, s in zip(teacher.module.parameters(), student.parameters()))


def test_state_dict_round_trips_into_a_plain_model():
    torch.manual_seed(0)
    student = WithBuffer().to(torch.bfloat16)
    teacher = EMATeacher(student)
    perturb(student, torch.Generator().manual_seed(4))
    teacher.update(student, 0.5)
    state = teacher.state_dict()
    assert set(state) == set(WithBuffer().state_dict()) and state["fc.weight"].dtype == torch.float32
    plain = WithBuffer()
    plain.load_state_dict(state)
    restored = EMATeacher(WithBuffer())
    restored.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(restored.module.parameters(), teacher.module.parameters()))


def test_ema_decay_is_constant_or_ramps_linearly():
    assert ema_decay_at(0, SSLConfig(ema_decay=0.99)) == 0.99
    ramp = SSLConfig(ema_decay=0.99, ema_warmup_steps=100)
    assert [ema_decay_at(s, ramp) for s in (0, 50, 100, 500)] == pytest.approx([0.0, 0.495, 0.99, 0.99])
