"""The global batch and learning rate of a data-parallel run.

Two choices, as in Goyal et al. (2017), "Accurate, Large Minibatch SGD": by default each rank
keeps the user's batch, so the global batch grows with the world size and the learning rate with
it (the linear scaling rule), reached through the schedule's warm-up (the one-cycle schedule's
first 30 % of steps ramp up from lr/25); or the global batch stays the user's, split across the
ranks, and so does the learning rate (a run then follows the one-machine run step for step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["LINEAR_RULE_WARMUP", "BatchPlan", "plan_batches"]

# Goyal et al. ramp up over the first epochs; the one-cycle schedule's 30 % does the same here.
LINEAR_RULE_WARMUP = 0.3


@dataclass(frozen=True)
class BatchPlan:
    """What each rank uses: its batch and the peak learning rate; and the global batch."""

    per_rank_batch: int
    global_batch: int
    learning_rate: float
    rule: str
    # The share of the run's steps whose learning rate ramps up to ``learning_rate`` (the linear
    # rule's warm-up; a loop with a schedule of its own, as grasp's one-cycle, has it built in).
    warmup_fraction: float = 0.0

    def describe(self, world_size: int) -> str:
        """One line for the run's log."""
        return (
            f"world {world_size}: global batch {self.global_batch} ({self.per_rank_batch} per rank), "
            f"peak lr {self.learning_rate:.3g} ({self.rule})"
        )


def plan_batches(
    *, batch_size: int, learning_rate: float, world_size: int, keep_global_batch: bool
) -> BatchPlan:
    """The per-rank batch and learning rate for ``world_size`` ranks (see the module's doc)."""
    if world_size <= 1:
        return BatchPlan(batch_size, batch_size, learning_rate, "one rank")
    if keep_global_batch:
        per_rank = max(1, math.ceil(batch_size / world_size))
        return BatchPlan(per_rank, per_rank * world_size, learning_rate, "global batch kept")
    return BatchPlan(
        batch_size,
        batch_size * world_size,
        learning_rate * world_size,
        f"linear rule, warm-up {LINEAR_RULE_WARMUP:.0%} of steps",
        warmup_fraction=LINEAR_RULE_WARMUP,
    )
