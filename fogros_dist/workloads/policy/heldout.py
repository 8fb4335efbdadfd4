"""The trained policy on held-out bags, next to the trivial baseline: is it better than nothing?

A robot's own demonstrations have no simulator to roll a policy out in, so the evidence is
offline: the mean squared error of the predicted actions on whole bags the policy never trained
on (split by bag, so the time-correlated samples of one recording never sit on both sides),
next to the baseline that always predicts the training set's mean action. Errors are in the
action's own units (m/s for a velocity command), over every valid action of each predicted
chunk (the ones past an episode's end are masked), averaged over the action's dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fogros_dist.workloads.policy.dataset import ChunkDataset
from fogros_dist.workloads.policy.model import ChunkPolicy

__all__ = ["HeldOutScore", "score_heldout"]

_BATCH = 4096


@dataclass(frozen=True, kw_only=True)
class HeldOutScore:
    """Action MSE on held-out bags: the policy's and the mean-action baseline's."""

    policy_mse: float
    baseline_mse: float
    bags: int
    samples: int

    @property
    def ratio(self) -> float:
        """policy_mse / baseline_mse (below 1: better than predicting the mean action)."""
        return self.policy_mse / self.baseline_mse if self.baseline_mse > 0 else float("inf")

    def describe(self) -> str:
        """``"action MSE 0.0012 vs 0.0450 for the mean-action baseline (2.7% of it), 2 bags"``."""
        return (
            f"action MSE {self.policy_mse:.4g} vs {self.baseline_mse:.4g} for the mean-action baseline "
            f"({100 * self.ratio:.1f}% of it) on {self.bags} held-out bag(s), {self.samples} samples"
        )


@torch.no_grad()
def score_heldout(model: ChunkPolicy, heldout: ChunkDataset, *, bags: int) -> HeldOutScore:
    """Score ``model`` on ``heldout`` (normalised with the training set's statistics).

    Args:
        model: the trained policy; its normaliser holds the training set's mean action, which
            is the baseline's prediction.
        heldout: samples of the held-out bags, built with ``model``'s normaliser.
        bags: how many bags ``heldout`` holds (reported).
    """
    device = next(model.parameters()).device
    std = model.act_std.to(device)
    policy_sum = baseline_sum = 0.0
    count = 0.0
    for start in range(0, len(heldout), _BATCH):
        obs = heldout.observations[start : start + _BATCH].to(device)
        act = heldout.actions[start : start + _BATCH].to(device)
        mask = heldout.mask[start : start + _BATCH].to(device).unsqueeze(-1).to(act.dtype)
        # Both errors in action units: (normalised difference) * std; the mean action is 0
        # once normalised, so the baseline's error is the target itself.
        policy_error = (model(obs) - act) * std
        baseline_error = act * std
        policy_sum += float((policy_error.square() * mask).sum())
        baseline_sum += float((baseline_error.square() * mask).sum())
        count += float(mask.sum()) * act.shape[-1]
    count = max(count, 1.0)
    return HeldOutScore(
        policy_mse=policy_sum / count, baseline_mse=baseline_sum / count, bags=bags, samples=len(heldout)
    )
