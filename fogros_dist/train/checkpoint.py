"""Checkpoints of a data-parallel run: written by rank 0 alone, atomically, on the head machine;
read back by rank 0 when torchrun restarts the workers and sent to every other rank.

A membership change (a machine's agent died, or one joined) makes torch elastic stop every
worker and start a new round, possibly with another world size. The new round's rank 0 loads the
latest checkpoint and broadcasts it (``broadcast_object_list``), so ranks on other machines need
no copy of the file; every rank then continues from the epoch after it. The file is replaced with
``os.replace`` after a full write, so a worker killed while writing leaves the previous one whole.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fogros_dist.train.context import DistContext

__all__ = ["CHECKPOINT_DIR_ENV", "CHECKPOINT_FILE", "Checkpointer"]

# Where the launcher tells the workers to keep the run's checkpoints (on the head machine).
CHECKPOINT_DIR_ENV = "FOGROS_DIST_CHECKPOINT_DIR"
# The one file a run keeps there (replaced whole at every save).
CHECKPOINT_FILE = "latest.pt"


@dataclass(frozen=True)
class Checkpointer:
    """The run's latest checkpoint: ``directory/latest.pt``."""

    directory: Path
    context: DistContext

    @classmethod
    def from_env(cls, context: DistContext) -> Checkpointer | None:
        """The launcher's checkpoint directory for this run, or None (no checkpoints)."""
        where = os.environ.get(CHECKPOINT_DIR_ENV)
        return cls(Path(where), context) if where else None

    @property
    def path(self) -> Path:
        return self.directory / CHECKPOINT_FILE

    def save(self, state: dict[str, Any]) -> None:
        """Rank 0 writes ``state`` (tensors and plain values) atomically; other ranks do nothing."""
        if not self.context.is_main:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        buffer = io.BytesIO()
        torch.save(state, buffer)
        with partial.open("wb") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, self.path)

    def restore(self) -> dict[str, Any] | None:
        """The latest state on every rank (rank 0 reads it, the others receive it), or None.

        Collective under torch.distributed: every rank must call it.
        """
        state: dict[str, Any] | None = None
        if self.context.is_main and self.path.is_file():
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        if self.context.distributed:
            import torch.distributed as dist

            box: list[Any] = [state]
            dist.broadcast_object_list(box, src=0)
            state = box[0]
        return state
