"""``FogTraining``: ``fogros-dist train`` as a launch action, next to CloudNodes in a launch file.

It is launch's own ``ExecuteProcess`` running the CLI on the launch's Python, so launch supervises
it as any process (its output on the screen, Ctrl-C and shutdown reach it as SIGINT, then SIGTERM
after ``sigterm_timeout``) and the CLI does what it does in a terminal: Local machines with
``nodes``, a deployment file's machines with ``on``, the report, nothing left running. With
``serve_to="DEPLOYMENT/NODE"`` the trained model goes to that running node (a CloudNode of this
launch file, by its deployment's name), which loads it without a restart::

    FogLaunchDescription([
        CloudNode(package="fogros_dist", executable="grasp_planner", machine=gpu, ...),
        FogTraining(workload="grasp", nodes=2, serve_to="grasp-offload/grasp_planner"),
    ], deployment="grasp-offload")

Bad arguments are refused when the launch file is read, each in one line naming it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from launch.actions import ExecuteProcess

from fogros_dist.errors import ConfigError
from fogros_dist.train.options import DEFAULT_JOIN_WAIT_S, FleetOptions, parse_nodes
from fogros_dist.workloads import workload_names

__all__ = ["FogTraining", "training_command"]

# A fleet's teardown (stopping agents and bridges, releasing machines) takes longer than launch's
# 5 s default before SIGTERM.
_SIGTERM_TIMEOUT_S = "60"


def training_command(
    *,
    workload: str,
    nodes: int | str | None = None,
    on: str | Path | None = None,
    nproc_per_node: int = 1,
    max_restarts: int = 0,
    join_wait: int | None = None,
    comm_hook: str = "none",
    keep_global_batch: bool = False,
    serve_to: str | None = None,
    target: str | None = None,
    options: Sequence[str] = (),
    python: str = sys.executable,
) -> list[str]:
    """The CLI command line for these arguments (checked here: one ConfigError line each)."""
    if workload not in workload_names():
        msg = f"FogTraining workload {workload!r} is unknown: use one of {', '.join(workload_names())}"
        raise ConfigError(msg)
    command = [python, "-m", "fogros_dist.cli.main", "train", workload, *options]
    if nodes is not None:
        range_ = parse_nodes(str(nodes))
        command += ["--nodes", str(range_)]
    if on is not None:
        if not Path(on).is_file():
            msg = f"FogTraining on={str(on)!r}: no such deployment file"
            raise ConfigError(msg)
        command += ["--on", str(on)]
    if nodes is None and on is None:
        msg = "FogTraining needs nodes= (Local machines here) or on= (a deployment file's machines)"
        raise ConfigError(msg)
    # The same range checks as the CLI's, before launch starts anything.
    FleetOptions(
        nodes=parse_nodes("1"),
        nproc_per_node=nproc_per_node,
        max_restarts=max_restarts,
        join_wait_s=DEFAULT_JOIN_WAIT_S if join_wait is None else join_wait,
    )
    command += ["--nproc-per-node", str(nproc_per_node), "--max-restarts", str(max_restarts)]
    if join_wait is not None:
        command += ["--join-wait", str(join_wait)]
    if comm_hook != "none":
        from fogros_dist.train.comm_hooks import parse_comm_hook

        parse_comm_hook(comm_hook)
        command += ["--comm-hook", comm_hook]
    if keep_global_batch:
        command.append("--keep-global-batch")
    if target is not None:
        from fogros_dist.train.run_report import TargetMetric

        TargetMetric.parse(target)
        command += ["--target", target]
    if serve_to is not None:
        if serve_to.count("/") != 1 or not all(serve_to.split("/")):
            msg = (
                f"FogTraining serve_to={serve_to!r} is not DEPLOYMENT/NODE: "
                "e.g. 'grasp-offload/grasp_planner'"
            )
            raise ConfigError(msg)
        command += ["--serve-to", serve_to]
    return command


class FogTraining(ExecuteProcess):  # type: ignore[misc]
    """Train a workload data-parallel as part of a launch; see the module's doc.

    Args:
        workload: ``grasp`` (the workloads that train on a fleet).
        nodes: machines, ``N`` or ``"MIN:MAX"`` (Local machines here unless ``on`` is given).
        on: a deployment file whose machines train.
        nproc_per_node, max_restarts, join_wait, comm_hook, keep_global_batch: as the CLI's
            options (``join_wait``: ``--join-wait``, seconds).
        target: the run report's time to target, ``"heldout_accuracy=0.85"`` (``--target``).
        serve_to: ``DEPLOYMENT/NODE`` that gets the trained model, without a restart.
        options: the workload's own training options (e.g. ``["--epochs", "4"]``).
        **kwargs: ExecuteProcess's (``name``, ``output``, ``additional_env``, ...).
    """

    def __init__(
        self,
        *,
        workload: str,
        nodes: int | str | None = None,
        on: str | Path | None = None,
        nproc_per_node: int = 1,
        max_restarts: int = 0,
        join_wait: int | None = None,
        comm_hook: str = "none",
        keep_global_batch: bool = False,
        serve_to: str | None = None,
        target: str | None = None,
        options: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        command = training_command(
            workload=workload,
            nodes=nodes,
            on=on,
            nproc_per_node=nproc_per_node,
            max_restarts=max_restarts,
            join_wait=join_wait,
            comm_hook=comm_hook,
            keep_global_batch=keep_global_batch,
            serve_to=serve_to,
            target=target,
            options=options,
        )
        kwargs.setdefault("name", f"fog_training_{workload}")
        kwargs.setdefault("output", "screen")
        kwargs.setdefault("sigterm_timeout", _SIGTERM_TIMEOUT_S)
        super().__init__(cmd=command, **kwargs)
