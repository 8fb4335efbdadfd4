"""The Workload seam: what `fogros-dist train` and `fogros-dist bench` need from a workload.

Keep model, dataset and training loop separable inside each workload: data-parallel training
(:mod:`fogros_dist.train`) wraps the same model and dataset. These protocols are only the outside.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from fogros_dist.spec import TopicSpec

if TYPE_CHECKING:
    from fogros_dist.train.comm_hooks import CommHook
    from fogros_dist.train.context import DistContext

__all__ = ["BenchRequest", "DistributedWorkload", "Workload", "default_model_dir"]


def default_model_dir() -> Path:
    """Where trained models live by default: $FOGROS_DIST_MODELS, else ~/.cache/fogros_dist/models."""
    import os

    explicit = os.environ.get("FOGROS_DIST_MODELS")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "fogros_dist" / "models"


@dataclass(frozen=True, kw_only=True)
class BenchRequest:
    """One request of `fogros-dist bench`: messages to publish (in order) and the reply's key.

    The benchmark publishes ``messages`` on the robot's graph and waits for the message on the
    workload's reply topic whose :meth:`Workload.reply_key` equals ``key``.
    """

    messages: tuple[tuple[TopicSpec, bytes], ...]
    key: int


class Workload(Protocol):
    """A workload: a servable node plus its training and benchmark hooks."""

    name: str
    description: str
    # The serving node: `ros2 run fogros_dist <executable>` or CloudNode(executable=...).
    executable: str
    topics_in: tuple[TopicSpec, ...]
    topics_out: tuple[TopicSpec, ...]
    # The topic whose messages answer a BenchRequest.
    reply_topic: TopicSpec

    def add_train_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add this workload's options to `fogros-dist train <name>`."""

    def train(self, args: argparse.Namespace, *, report: Callable[[str], None]) -> dict[str, float]:
        """Generate data, train, evaluate, save the model (default under default_model_dir());
        return the evaluation metrics. Progress goes to ``report``."""

    def node_arguments(self, model_dir: Path) -> tuple[str, ...]:
        """ROS arguments that point the serving node at the trained model in ``model_dir``."""

    def bench_requests(self, *, count: int, seed: int) -> Iterator[BenchRequest]:
        """``count`` deterministic requests for the latency benchmark."""

    def reply_key(self, cdr: bytes) -> int:
        """The key of a reply message (matches BenchRequest.key)."""


@runtime_checkable
class DistributedWorkload(Workload, Protocol):
    """A workload that also trains data-parallel on a fleet (``fogros-dist train --nodes``)."""

    def train_distributed(
        self,
        args: argparse.Namespace,
        *,
        report: Callable[[str], None],
        context: DistContext,
        keep_global_batch: bool,
        comm_hook: CommHook,
    ) -> dict[str, float]:
        """One rank of the run: its DistributedSampler shard, DDP exchanging gradients by
        ``comm_hook``; rank 0 evaluates, saves and returns the metrics, the other ranks return {}."""
