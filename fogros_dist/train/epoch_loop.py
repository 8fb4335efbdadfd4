"""What every workload's training loop needs to run as one rank of a fleet, whatever its model:
the network inside DDP's wrapper, an epoch's loss summed over the ranks, and the epoch line the
fleet's run report reads (:mod:`fogros_dist.train.run_report`)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["across_ranks", "epoch_line", "heldout_line", "sync_ranks", "unwrapped"]


def unwrapped(model: nn.Module) -> nn.Module:
    """The network inside a DDP wrapper (its state dict has no ``module.`` prefix)."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model


def across_ranks(total: float, seen: int, device: torch.device) -> tuple[float, int, int]:
    """An epoch's summed loss and sample count over every rank (all-reduced under
    torch.distributed, on the model's device: NCCL reduces only CUDA tensors), and the world size;
    this rank's own outside a process group."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return total, seen, 1
    both = torch.tensor([total, float(seen)], dtype=torch.float64, device=device)
    dist.all_reduce(both)
    return float(both[0]), int(both[1]), dist.get_world_size()


def epoch_line(
    *, epoch: int, epochs: int, steps: int, loss: float, seen: int, seconds: float, world: int
) -> str:
    """``train: epoch 3/8 step 36 loss 0.512 1843 samples/s world 2 (0.81 s)``: ``seen`` is the
    epoch's samples over every rank, ``steps`` this rank's optimizer steps so far."""
    return (
        f"train: epoch {epoch}/{epochs} step {steps} loss {loss:.3f} "
        f"{seen / max(seconds, 1e-9):.0f} samples/s world {world} ({seconds:.2f} s)"
    )


def heldout_line(*, epoch: int, epochs: int, metrics: Mapping[str, float]) -> str:
    """``eval: epoch 3/8 heldout_accuracy 0.8431 heldout_recall 0.7902``: held-out metrics measured
    after an epoch, which the run report pairs with that epoch's line (its time to a target)."""
    shown = " ".join(f"{name} {value:.4g}" for name, value in metrics.items())
    return f"eval: epoch {epoch}/{epochs} {shown}"


def sync_ranks() -> None:
    """Wait for every rank (a no-op outside a process group): the others wait here, not in their
    next step's all-reduce, while rank 0 evaluates."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
