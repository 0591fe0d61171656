"""Pseudo-labels, mixed targets and the three SVFormer losses (all computed in float32)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pseudo_labels(teacher_logits: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher logits (B, K) -> (probs float32 (B, K), hard long (B,), confident bool (B,)).

    confident = max probability >= threshold (delta in the paper); hard = argmax.
    """
    probs = teacher_logits.detach().float().softmax(dim=-1)
    top, hard = probs.max(dim=-1)
    return probs, hard, top >= threshold


def mixed_targets(
    probs: torch.Tensor,
    hard: torch.Tensor,
    confident: torch.Tensor,
    lam: torch.Tensor | float,
    mix_index: torch.Tensor,
    num_classes: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets and weights of the token-mixed clips.

    y_i = onehot(hard_i) if confident_i else probs_i; y_mix = lam * y_i + (1 - lam) * y_idx[i];
    weight = lam * c_i + (1 - lam) * c_idx[i].

    Args:
        probs (B, K), hard (B,), confident (B,): from `pseudo_labels`.
        lam: fraction of each mixed clip's tokens from itself, a float or (B,).
        mix_index: (B,) partner of each clip.
    Returns:
        y_mix float32 (B, K), weights float32 (B,).
    """
    onehot = F.one_hot(hard, num_classes).float()
    y = torch.where(confident[:, None], onehot, probs.float())
    c = confident.float()
    lam = torch.as_tensor(lam, dtype=torch.float32, device=probs.device).expand(probs.shape[0])
    y_mix = lam[:, None] * y + (1.0 - lam[:, None]) * y[mix_index]
    weights = lam * c + (1.0 - lam) * c[mix_index]
    return y_mix, weights


def supervised_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the labeled clips, mean over the batch."""
    return F.cross_entropy(logits.float(), labels)


def unlabeled_loss(logits: torch.Tensor, hard: torch.Tensor, confident: torch.Tensor) -> torch.Tensor:
    """mean_i(c_i * CE(logits_i, hard_i)): unconfident clips count in the mean with zero loss."""
    per_clip = F.cross_entropy(logits.float(), hard, reduction="none")
    return (per_clip * confident.float()).mean()


def mix_loss(logits: torch.Tensor, y_mix: torch.Tensor, weights: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Loss of the student on the mixed clips, weighted per clip and averaged over the batch.

    mse (the released code): per-clip mean over classes of (raw logits - y_mix)^2.
    soft_ce: -(y_mix * log_softmax(logits)).sum over classes.
    """
    z = logits.float()
    if kind == "mse":
        per_clip = (z - y_mix).pow(2).mean(dim=-1)
    elif kind == "soft_ce":
        per_clip = -(y_mix * z.log_softmax(dim=-1)).sum(dim=-1)
    else:
        raise ValueError(f"mix loss must be mse or soft_ce, not {kind!r}")
    return (per_clip * weights).mean()
