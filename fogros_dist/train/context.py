"""What torchrun tells each worker (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ...) and the process
group made from it: gloo on CPU, NCCL where the worker has a GPU."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from fogros_dist.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

__all__ = [
    "DEFAULT_COLLECTIVE_TIMEOUT_S",
    "DistContext",
    "init_process_group",
    "join_run",
    "leave_process_group",
]

# How long a rank waits in one collective (an all-reduce, the evaluation's barrier) for the
# others. torch's default is 30 min: a machine that dropped off the network, whose connections
# never closed, would hold the whole run that long before torch elastic could go on without it.
# Long enough for the slowest wait of a healthy run: a rank generating its data while a faster
# one is already in DDP's first broadcast, or rank 0 evaluating.
DEFAULT_COLLECTIVE_TIMEOUT_S = 300.0


@dataclass(frozen=True, kw_only=True)
class DistContext:
    """One worker's place in the run.

    Attributes:
        rank: its global rank (0 writes: checkpoints, the model, the metrics).
        world_size: ranks in the current rendezvous round.
        local_rank: its index on its machine (its GPU there).
        machine: the fleet machine it runs on (for log prefixes).
        restart: torchrun's restart count of this round (0 on the first).
        collective_timeout_s: how long a collective waits for the other ranks before it fails
            (``--collective-timeout``).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    machine: str = "local"
    restart: int = 0
    collective_timeout_s: float = DEFAULT_COLLECTIVE_TIMEOUT_S

    @property
    def is_main(self) -> bool:
        """Whether this worker is rank 0."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether more than one rank trains."""
        return self.world_size > 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DistContext:
        """Read torchrun's variables (and ``FOGROS_DIST_MACHINE``); a plain process is rank 0 of 1.

        Raises:
            ConfigError: a variable is not a number, or the rank is outside the world.
        """
        env = os.environ if environ is None else environ
        try:
            rank = int(env.get("RANK", "0"))
            world = int(env.get("WORLD_SIZE", "1"))
            local = int(env.get("LOCAL_RANK", "0"))
            restart = int(env.get("TORCHELASTIC_RESTART_COUNT", "0"))
        except ValueError as err:
            msg = f"torchrun's environment is malformed ({err}): start workers with torchrun"
            raise ConfigError(msg) from err
        if not 0 <= rank < world:
            msg = f"RANK {rank} is outside WORLD_SIZE {world}: start workers with torchrun"
            raise ConfigError(msg)
        return cls(
            rank=rank,
            world_size=world,
            local_rank=local,
            machine=env.get("FOGROS_DIST_MACHINE", "local"),
            restart=restart,
        )


def init_process_group(context: DistContext, *, use_cuda: bool) -> str:
    """Join the run's process group (torchrun's env:// rendezvous); returns the backend.

    NCCL when this worker trains on CUDA, gloo otherwise, each collective bounded by the
    context's ``collective_timeout_s``. A single-rank run joins nothing.
    """
    if not context.distributed:
        return "none"
    import torch.distributed as dist

    backend = "nccl" if use_cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=context.collective_timeout_s))
    return backend


def leave_process_group() -> None:
    """Leave the run's process group, if this process joined one, and free it.

    ``destroy_process_group`` only drops torch's own references to the group. A workload's DDP
    wrapper, out of scope by the time its rank is done, still holds the group from inside
    reference cycles (its reducer's hooks); left to the interpreter's exit, the group's gloo
    threads are torn down during finalization, and a rank that leaves before the others
    aborted there ("terminate called without an active exception", SIGABRT) in 3 of 29 runs
    here (the class of crash of pytorch/pytorch PR 179291). Its agent then failed, and the head
    machine's agent waited out torch elastic's exit barrier (300 s) before the run could end.
    Collecting first frees the group inside ``destroy_process_group``, while the interpreter is
    whole: 0 of 30.
    """
    import gc

    import torch.distributed as dist

    if dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def join_run(context: DistContext, device: torch.device, report: Callable[[str], None]) -> torch.device:
    """A rank's start, whatever the workload: its own GPU (``LOCAL_RANK``) where it trains on CUDA,
    the process group joined, and the line ``train: on cuda:1, rank 3 of 4 (nccl)``; the device."""
    import torch

    if device.type == "cuda" and context.distributed:
        device = torch.device("cuda", context.local_rank % torch.cuda.device_count())
    backend = init_process_group(context, use_cuda=device.type == "cuda")
    where = f", rank {context.rank} of {context.world_size} ({backend})" if context.distributed else ""
    report(f"train: on {device}{where}")
    return device
