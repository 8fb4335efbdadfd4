"""A workload's model and dataset made data-parallel for one rank: the model in DDP, the dataset
behind a DistributedSampler (this rank's shard, reshuffled per epoch with ``set_epoch``), the
batch and learning rate from :mod:`fogros_dist.train.scaling`, and the run's gradient
communication (:mod:`fogros_dist.train.comm_hooks`) with its meter. Any workload's loop takes them
as it takes a plain model, sampler and config (counts its steps with ``meter.step()``, and calls
``after_step`` after each ``optimizer.step()`` inside that block: local SGD's averaging)."""

from __future__ import annotations

from collections.abc import Sized
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fogros_dist.train.comm_hooks import CommHook, bucket_cap_mb, local_sgd, register_comm_hook
from fogros_dist.train.comm_meter import CommMeter
from fogros_dist.train.context import DistContext
from fogros_dist.train.local_sgd import LocalSGD
from fogros_dist.train.scaling import BatchPlan, plan_batches

__all__ = ["DataParallel", "data_parallel"]


@dataclass(frozen=True)
class DataParallel:
    """What one rank trains with."""

    model: nn.Module
    sampler: Any  # torch's DistributedSampler: an Iterable[int] with __len__ and set_epoch
    plan: BatchPlan
    comm_hook: CommHook
    # Counts what the hook's collectives carry: wrap each optimizer step in ``meter.step()``.
    meter: CommMeter
    # Local SGD's parameter averaging (``--comm-hook localsgd``); None for every other hook.
    local_sgd: LocalSGD | None = None

    def after_step(self, epoch_ends: bool) -> None:
        """Call on every rank after each ``optimizer.step()``, inside ``meter.step()``;
        ``epoch_ends`` on the epoch's last step."""
        if self.local_sgd is not None:
            self.local_sgd.after_step(epoch_ends=epoch_ends)

    def describe(self, context: DistContext, dataset_size: int) -> str:
        """``world 2: global batch 128 (64 per rank), peak lr ..., 750 of 1500 samples per epoch
        on this rank, gradients by float32 all-reduce (DDP's default)``."""
        return (
            f"{self.plan.describe(context.world_size)}, "
            f"{len(self.sampler)} of {dataset_size} samples per epoch on this rank, "
            f"gradients by {self.comm_hook.describe()}"
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
    comm_hook: CommHook | None = None,
) -> DataParallel:
    """Wrap ``model`` in DDP with ``comm_hook`` (default: plain all-reduce) and shard ``dataset``
    for ``context``'s rank (the process group must be joined:
    :func:`fogros_dist.train.context.init_process_group`)."""
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
    hook = comm_hook or CommHook()
    wrapped = DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        bucket_cap_mb=bucket_cap_mb(hook, model),
        # Under local SGD a per-forward broadcast of rank 0's buffers would make every step wait
        # for rank 0 again: each rank keeps its own BatchNorm statistics (see local_sgd).
        broadcast_buffers=hook.name != "localsgd",
    )
    register_comm_hook(wrapped, hook)
    meter = CommMeter().activate()
    averaging = local_sgd(wrapped, hook)
    return DataParallel(
        model=wrapped, sampler=sampler, plan=plan, comm_hook=hook, meter=meter, local_sgd=averaging
    )
