"""A workload's model and dataset made data-parallel for one rank: the model in DDP, the dataset
behind a DistributedSampler (this rank's shard, reshuffled per epoch with ``set_epoch``), and the
batch and learning rate from :mod:`fogros_dist.train.scaling`. Any workload's loop takes the three
as it takes a plain model, sampler and config."""

from __future__ import annotations

from collections.abc import Sized
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fogros_dist.train.context import DistContext
from fogros_dist.train.scaling import BatchPlan, plan_batches

__all__ = ["DataParallel", "data_parallel"]


@dataclass(frozen=True)
class DataParallel:
    """What one rank trains with."""

    model: nn.Module
    sampler: Any  # torch's DistributedSampler: an Iterable[int] with __len__ and set_epoch
    plan: BatchPlan

    def describe(self, context: DistContext, dataset_size: int) -> str:
        """``world 2: global batch 128 (64 per rank), peak lr ..., 750 of 1500 samples per epoch``."""
        return (
            f"{self.plan.describe(context.world_size)}, "
            f"{len(self.sampler)} of {dataset_size} samples per epoch on this rank"
        )


def data_parallel(
    model: nn.Module,
    dataset: Sized,
    *,
    context: DistContext,
    device: torch.device,
    batch_size: int,
    learning_rate: float,
    seed: int,
    keep_global_batch: bool,
) -> DataParallel:
    """Wrap ``model`` in DDP and shard ``dataset`` for ``context``'s rank (the process group must
    be joined: :func:`fogros_dist.train.context.init_process_group`)."""
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data.distributed import DistributedSampler

    plan = plan_batches(
        batch_size=batch_size,
        learning_rate=learning_rate,
        world_size=context.world_size,
        keep_global_batch=keep_global_batch,
    )
    sampler: DistributedSampler[int] = DistributedSampler(
        dataset,  # type: ignore[arg-type]  # any Sized works: the sampler only takes len()
        num_replicas=context.world_size,
        rank=context.rank,
        seed=seed,
    )
    wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return DataParallel(model=wrapped, sampler=sampler, plan=plan)
