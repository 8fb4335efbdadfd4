"""A distributed run's shape as the user gives it: ``--nodes MIN:MAX``, ``--nproc-per-node``,
``--max-restarts``, ``--join-wait``, ``--keep-global-batch``; each bad value is one ConfigError
naming it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fogros_dist.errors import ConfigError

__all__ = ["DEFAULT_JOIN_WAIT_S", "MAX_NODES", "FleetOptions", "NodeRange", "parse_nodes"]

# More agents than this on one rendezvous is a typo, not a fleet this tool provisions.
MAX_NODES = 64
# How long a rendezvous round that has MIN machines waits for more before it starts (torch
# elastic's last_call_timeout; the same 30 s as torchrun's). A round stops waiting as soon as MAX
# have joined, so a machine that comes back in time (its agent restarted, torch imported: a few
# seconds on one host, more where CUDA starts) costs nothing; a machine that is gone for good
# costs the whole fleet this long, idle, at each membership change of an elastic run (MIN < MAX).
# Shorter trades the first for the second: --join-wait. Runs of a fixed size never wait.
DEFAULT_JOIN_WAIT_S = 30
_MAX_JOIN_WAIT_S = 3600
_NODES = re.compile(r"(\d{1,3})(?::(\d{1,3}))?")


@dataclass(frozen=True)
class NodeRange:
    """How many machines take part: the run starts with ``minimum`` and admits up to ``maximum``
    (torchrun's ``--nnodes MIN:MAX``); it goes on while at least ``minimum`` remain."""

    minimum: int
    maximum: int

    def __str__(self) -> str:
        return str(self.minimum) if self.minimum == self.maximum else f"{self.minimum}:{self.maximum}"


def parse_nodes(text: str) -> NodeRange:
    """``"2"`` or ``"2:3"``.

    Raises:
        ConfigError: not that form, below 1, MIN above MAX, or above :data:`MAX_NODES`.
    """
    match = _NODES.fullmatch(text.strip())
    if match is None:
        msg = f"--nodes {text!r} is not a node count: use N or MIN:MAX (e.g. 2 or 2:3)"
        raise ConfigError(msg)
    low = int(match.group(1))
    high = int(match.group(2)) if match.group(2) is not None else low
    if low < 1:
        msg = f"--nodes {text!r}: at least 1 machine is needed"
        raise ConfigError(msg)
    if low > high:
        msg = f"--nodes {text!r}: MIN {low} is above MAX {high}: use MIN:MAX with MIN <= MAX"
        raise ConfigError(msg)
    if high > MAX_NODES:
        msg = f"--nodes {text!r}: at most {MAX_NODES} machines per run"
        raise ConfigError(msg)
    return NodeRange(low, high)


@dataclass(frozen=True, kw_only=True)
class FleetOptions:
    """Everything about a distributed run that is not the workload's own options."""

    nodes: NodeRange
    nproc_per_node: int = 1
    max_restarts: int = 0
    join_wait_s: int = DEFAULT_JOIN_WAIT_S
    # True: the workload's --batch-size is the global batch, split across ranks, same learning
    # rate. False (default): it is the per-rank batch, and the learning rate grows with the world
    # size (Goyal et al.'s linear rule, with the schedule's warm-up).
    keep_global_batch: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.nproc_per_node <= 64:
            msg = f"--nproc-per-node {self.nproc_per_node} is out of range: use 1..64"
            raise ConfigError(msg)
        if not 0 <= self.max_restarts <= 100:
            msg = f"--max-restarts {self.max_restarts} is out of range: use 0..100"
            raise ConfigError(msg)
        if not 0 <= self.join_wait_s <= _MAX_JOIN_WAIT_S:
            msg = (
                f"--join-wait {self.join_wait_s} is out of range: use 0..{_MAX_JOIN_WAIT_S} seconds "
                f"(default {DEFAULT_JOIN_WAIT_S})"
            )
            raise ConfigError(msg)
