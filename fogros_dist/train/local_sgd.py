"""Local SGD (``--comm-hook localsgd[:PERIOD]``): after a start of plain all-reduce steps, each
rank takes optimizer steps on its own gradients and the ranks average their parameters every
PERIOD steps (Lin et al. 2020, "Don't use large mini-batches, use local SGD"; torch's
post-local SGD).

Every other hook compresses what one step sends; this one sends nothing on most steps, which is
what a slow link between labs needs when the network is small enough that a step's collectives
cost more in fixed latency than in bytes (BENCHMARKS.md, "Data-parallel training over shaped
links"). The two halves are torch's: the DDP comm hook ``post_localSGD_hook`` (all-reduce for
the first steps, then the gradient as it is) registered by
:func:`fogros_dist.train.comm_hooks.register_comm_hook`, and torch's parameter averaging
(``model_averaging.utils.average_parameters_or_parameter_groups``: one all-reduce of the
flattened parameters). What this module adds is when to average: every PERIOD local steps and
at the end of every epoch, so that what the loop evaluates, checkpoints and serves after an
epoch is the ranks' average, not rank 0's own drift. The averaging runs inside the loop's
``meter.step()`` block, so its bytes and time count as that step's.

BatchNorm's running statistics stay each rank's own (DDP's per-forward buffer broadcast is off
for this hook, or every step would still wait for rank 0): rank 0's, from its own shard, are the
ones evaluated and saved. After a restart (a membership change) the start of plain steps runs
again, from the checkpoint every rank loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

__all__ = ["LocalSGD"]


class LocalSGD:
    """When the ranks of one run average their parameters; see the module's doc.

    ``start_steps`` must be the DDP hook's ``start_localSGD_iter``: during those steps gradients
    are all-reduced, so every rank holds the same parameters and there is nothing to average.
    """

    def __init__(self, model: nn.Module, *, period: int, start_steps: int) -> None:
        from torch.distributed.algorithms.model_averaging.utils import (
            average_parameters_or_parameter_groups,
        )

        self._average = average_parameters_or_parameter_groups
        self._model = model
        self._period = period
        self._start_steps = start_steps
        self._steps = 0
        self._local_steps = 0  # optimizer steps since the ranks last held the same parameters
        self.averages = 0

    def after_step(self, *, epoch_ends: bool) -> None:
        """Call on every rank after each ``optimizer.step()``, inside the step's ``meter.step()``
        block; ``epoch_ends`` on the epoch's last step. A collective when it averages."""
        self._steps += 1
        if self._steps <= self._start_steps:
            return
        self._local_steps += 1
        if self._local_steps >= self._period or epoch_ends:
            self._average(self._model.parameters(), None)  # type: ignore[arg-type]
            self._local_steps = 0
            self.averages += 1
