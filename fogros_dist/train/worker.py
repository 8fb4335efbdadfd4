"""The module torchrun starts once per rank: ``python -m fogros_dist.train.worker <workload>
[--keep-global-batch] [--comm-hook HOOK[:PARAM]] [--collective-timeout SECONDS] [the workload's
training options]``.

It reads its place in the run from torchrun's environment, joins the process group, trains the
workload's model data-parallel and prints every progress line as ``[train:<machine>:<rank>]
<line>``; rank 0 also prints ``metrics <json>`` at the end, which the launcher reads (the
workload's metrics, and ``comm_hook``: the hook that exchanged the gradients). ``@record``
makes torch elastic write the exception to the worker's error file, from which the launcher's
one-line root cause comes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence

from torch.distributed.elastic.multiprocessing.errors import record

from fogros_dist.errors import ConfigError
from fogros_dist.train.comm_hooks import parse_comm_hook
from fogros_dist.train.context import DEFAULT_COLLECTIVE_TIMEOUT_S, DistContext, leave_process_group
from fogros_dist.workloads import get_workload
from fogros_dist.workloads.base import DistributedWorkload

__all__ = ["METRICS_PREFIX", "main"]

# The line rank 0 ends with: the launcher takes the run's metrics from it.
METRICS_PREFIX = "metrics "


@record
def main(argv: Sequence[str] | None = None) -> int:
    """Train one rank; see the module's doc."""
    words = list(sys.argv[1:] if argv is None else argv)
    if not words:
        msg = "fogros_dist.train.worker needs a workload name first"
        raise ConfigError(msg)
    context = DistContext.from_env()
    workload = get_workload(words[0])
    if not isinstance(workload, DistributedWorkload):
        msg = f"workload {workload.name!r} cannot train on a fleet yet: train it on one machine (no --nodes)"
        raise ConfigError(msg)
    parser = argparse.ArgumentParser(prog=f"fogros_dist.train.worker {workload.name}")
    workload.add_train_arguments(parser)
    parser.add_argument("--keep-global-batch", action="store_true")
    parser.add_argument("--comm-hook", default="none")
    parser.add_argument("--collective-timeout", type=float, default=DEFAULT_COLLECTIVE_TIMEOUT_S)
    args = parser.parse_args(words[1:])
    comm_hook = parse_comm_hook(args.comm_hook)
    context = dataclasses.replace(context, collective_timeout_s=args.collective_timeout)
    prefix = f"[train:{context.machine}:{context.rank}]"

    def report(line: str) -> None:
        print(f"{prefix} {line}", flush=True)

    try:
        metrics = workload.train_distributed(
            args,
            report=report,
            context=context,
            keep_global_batch=args.keep_global_batch,
            comm_hook=comm_hook,
        )
    finally:
        leave_process_group()
    if context.is_main:
        printed = {**metrics, "comm_hook": str(comm_hook)}
        print(METRICS_PREFIX + json.dumps(printed, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
