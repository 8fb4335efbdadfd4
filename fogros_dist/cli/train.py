"""`fogros-dist train <workload>`: generate data, train, evaluate and save a workload's model.

With ``--nodes N`` (or ``MIN:MAX``) the workload trains data-parallel under torchrun on N Local
machines of this host (:mod:`fogros_dist.train.local_fleet`); without it, in this process.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fogros_dist.errors import ConfigError, FogError
from fogros_dist.spec import MachineSpec
from fogros_dist.train.context import DEFAULT_COLLECTIVE_TIMEOUT_S
from fogros_dist.train.options import DEFAULT_JOIN_WAIT_S
from fogros_dist.workloads import get_workload, workload_names

if TYPE_CHECKING:
    from fogros_dist.train.local_fleet import FleetRun
    from fogros_dist.workloads.base import Workload

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Register the verb, with one sub-command per workload (each adds its own options)."""
    parser = sub.add_parser("train", help="train a workload's model (grasp, slam, policy)")
    workloads = parser.add_subparsers(dest="workload", metavar="WORKLOAD")
    workloads.required = True
    for name in workload_names():
        # Workload packages import torch and friends: only their names are needed for --help.
        # --help and every option go to the workload's own parser (built in run()).
        # prefix_chars="+" makes the child see every "--option" as a plain word, so all of them
        # reach REMAINDER (argparse would otherwise reject options it does not know here).
        child = workloads.add_parser(
            name, help=f"train the {name} workload", add_help=False, prefix_chars="+"
        )
        child.add_argument("workload_args", nargs=argparse.REMAINDER, help="the workload's options (--help)")
        child.set_defaults(handler=run)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Parse the workload's own options, train, and print its metrics."""
    if threading.current_thread() is not threading.main_thread():
        return _run(args)  # signals reach the main thread only: its owner handles them
    # Ctrl-C, and the SIGTERM `fogros-dist down` sends a fleet run's supervisor, end the run
    # through the one cleanup (every agent stopped, the fleet torn down), as `up` does: also when
    # this process was started with SIGINT ignored (a background job of a script, a CI runner).
    previous = {
        sig: signal.signal(sig, signal.default_int_handler) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        return _run(args)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _parser(workload: Workload) -> argparse.ArgumentParser:
    """`fogros-dist train <workload>`'s own options: the workload's, then the fleet's."""
    parser = argparse.ArgumentParser(
        prog=f"fogros-dist train {workload.name}", description=workload.description
    )
    workload.add_train_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    fleet = parser.add_argument_group("data-parallel training (torchrun)")
    fleet.add_argument(
        "--nodes", default=None, help="machines: N or MIN:MAX (default: train in this process)"
    )
    fleet.add_argument(
        "--on",
        default=None,
        metavar="FLEET",
        help="a deployment file whose machines train (any provider; default: Local machines here)",
    )
    fleet.add_argument("--nproc-per-node", type=int, default=1, help="ranks per machine (default 1)")
    fleet.add_argument(
        "--max-restarts", type=int, default=0, help="times torchrun restarts the workers (default 0)"
    )
    fleet.add_argument(
        "--join-wait",
        type=int,
        default=None,
        metavar="SECONDS",
        help="with --nodes MIN:MAX: how long a round that has MIN machines waits for more before it "
        "starts, at the start and after a machine is lost or rejoins (default "
        f"{DEFAULT_JOIN_WAIT_S}; torch elastic's last_call_timeout)",
    )
    fleet.add_argument(
        "--vpn",
        default="none",
        choices=("none", "wireguard"),
        help="with --on: the ranks talk over the fleet's own WireGuard mesh (machines on different "
        "networks; default none: they share one)",
    )
    fleet.add_argument(
        "--comm-hook",
        default="none",
        metavar="HOOK[:PARAM]",
        help="DDP gradient communication: none, fp16, bf16, powersgd[:RANK], topk[:RATIO], "
        "sketch[:RATIO], or localsgd[:PERIOD] (parameters averaged every PERIOD steps; default none)",
    )
    fleet.add_argument(
        "--keep-global-batch",
        action="store_true",
        help="split --batch-size across the ranks instead of scaling the learning rate",
    )
    fleet.add_argument(
        "--collective-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long a rank waits in one all-reduce for the others before the round is given up "
        "and torch elastic goes on with the machines left (a machine lost off the network; default "
        f"{DEFAULT_COLLECTIVE_TIMEOUT_S:g})",
    )
    fleet.add_argument(
        "--target",
        default=None,
        metavar="METRIC=VALUE",
        help="the run report's time to target: e.g. heldout_accuracy=0.85 (from the held-out "
        "evaluation after each epoch) or loss=0.3",
    )
    parser.add_argument(
        "--serve-to",
        default=None,
        metavar="DEPLOYMENT/NODE",
        help="hand the trained model to that running node (as `fogros-dist serve`), no restart",
    )
    return parser


def _check_fleet_options(own: argparse.Namespace) -> None:
    """The fleet-only options, each bad value or one given without a fleet refused in one line
    before any agent starts."""
    on_fleet = own.nodes is not None or own.on is not None
    if own.collective_timeout is not None:
        if not on_fleet:
            seconds = f"{own.collective_timeout:g}"
            msg = f"--collective-timeout {seconds} needs --nodes or --on: one process has no peers"
            raise ConfigError(msg)
        if not own.collective_timeout > 0:
            msg = f"--collective-timeout {own.collective_timeout:g} must be > 0 seconds, e.g. 300"
            raise ConfigError(msg)
    if own.join_wait is not None and not on_fleet:
        msg = f"--join-wait {own.join_wait} needs --nodes or --on: one process joins no rendezvous"
        raise ConfigError(msg)
    if own.target is not None:
        if not on_fleet:
            msg = f"--target {own.target} needs --nodes or --on: only a fleet run writes a run report"
            raise ConfigError(msg)
        from fogros_dist.train.run_report import TargetMetric

        TargetMetric.parse(own.target)
    if own.comm_hook != "none":
        if not on_fleet:
            msg = f"--comm-hook {own.comm_hook} needs --nodes or --on: one process sends no gradients"
            raise ConfigError(msg)
        from fogros_dist.train.comm_hooks import parse_comm_hook

        parse_comm_hook(own.comm_hook)


def _run(args: argparse.Namespace) -> int:
    workload = get_workload(args.workload)
    parser = _parser(workload)
    own = parser.parse_args(args.workload_args)
    serve_to = _serve_target(own.serve_to) if own.serve_to is not None else None
    _check_fleet_options(own)
    t0 = time.monotonic()
    left_behind = ""
    if own.nodes is not None or own.on is not None:
        run = _train_on_fleet(workload.name, own, args.workload_args)
        metrics, model, left_behind = run.metrics, run.model, run.left_behind
    else:
        said: list[str] = []

        def report(line: str) -> None:
            said.append(f"[train:local:0] {line}")
            print(line, file=sys.stderr, flush=True)

        metrics = workload.train(own, report=report)
        from fogros_dist.train.local_fleet import saved_model

        saved = saved_model(said)
        model = Path(saved[1]) if saved is not None else None
    if serve_to is not None:
        _serve(serve_to, model, metrics)
    if own.json:
        print(json.dumps(metrics, indent=2, sort_keys=True))
    else:
        for key, value in sorted(metrics.items()):
            print(f"{key:<28} {_shown(value)}")
    print(f"trained {workload.name} in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    if left_behind:
        # The metrics and the model are the run's; what it left running is the user's to know.
        raise FogError(f"training finished, but {left_behind}")
    return 0


# The options that shape the fleet, not the workload: not passed on to the workers.
_FLEET_OPTIONS = {
    "--nodes": 1,
    "--on": 1,
    "--nproc-per-node": 1,
    "--max-restarts": 1,
    "--join-wait": 1,
    "--json": 0,
    "--serve-to": 1,
    "--vpn": 1,
    "--target": 1,
}


def _shown(value: object) -> str:
    """A metric for the terminal: numbers to 4 significant digits, words (a hook's name) as they are."""
    return format(value, ".4g") if isinstance(value, int | float) else str(value)


def _serve_target(text: str) -> tuple[str, str]:
    deployment, _, node = text.partition("/")
    if not deployment or not node or "/" in node:
        msg = f"--serve-to {text!r} is not DEPLOYMENT/NODE: e.g. --serve-to grasp-offload/grasp_planner"
        raise ConfigError(msg)
    return deployment, node


def _serve(target: tuple[str, str], model: Path | None, metrics: dict[str, float]) -> None:
    from fogros_dist.deploy.model_push import push_model

    deployment, node = target
    if model is None:
        msg = f"--serve-to {deployment}/{node}: the run said nowhere where it saved its model"
        raise ConfigError(msg)
    served = push_model(deployment, node, model, metrics=metrics)
    print(f"train: model version {served.version} handed to {deployment}/{node}", file=sys.stderr, flush=True)


def _worker_argv(name: str, words: list[str], keep_global_batch: bool) -> list[str]:
    """The workload's name and its own options, as the command line gave them."""
    out = [name]
    skip = 0
    for word in words:
        if skip:
            skip -= 1
            continue
        key = word.split("=", 1)[0]
        if key in _FLEET_OPTIONS:
            skip = _FLEET_OPTIONS[key] if "=" not in word else 0
            continue
        if key == "--keep-global-batch":
            continue
        out.append(word)
    if keep_global_batch:
        out.append("--keep-global-batch")
    return out


def _train_on_fleet(name: str, own: argparse.Namespace, words: list[str]) -> FleetRun:
    from fogros_dist.deploy.state import default_home
    from fogros_dist.train.local_fleet import run_local_fleet
    from fogros_dist.train.options import FleetOptions, parse_nodes
    from fogros_dist.workloads import get_workload
    from fogros_dist.workloads.base import DistributedWorkload

    requested = parse_nodes(own.nodes) if own.nodes is not None else None
    fleet = None
    if own.on is not None:
        from pathlib import Path

        from fogros_dist.deploy.file import load_deployment_file
        from fogros_dist.train.fleet_run import fleet_nodes

        fleet = load_deployment_file(Path(own.on))
        requested = fleet_nodes(fleet, requested)
    assert requested is not None  # --nodes or --on brought us here
    options = FleetOptions(
        nodes=requested,
        nproc_per_node=own.nproc_per_node,
        max_restarts=own.max_restarts,
        join_wait_s=DEFAULT_JOIN_WAIT_S if own.join_wait is None else own.join_wait,
        keep_global_batch=own.keep_global_batch,
    )
    if not isinstance(get_workload(name), DistributedWorkload):
        msg = f"workload {name!r} cannot train on a fleet yet: train it on one machine (drop --nodes)"
        raise ConfigError(msg)
    worker_argv = _worker_argv(name, words, options.keep_global_batch)
    echo = _echo
    if fleet is not None:
        from fogros_dist.train.fleet_run import run_fleet

        print(
            f"train: {name} on fleet {fleet.name!r} ({', '.join(m.name for m in fleet.machines)}), "
            f"--nodes {options.nodes}, {options.nproc_per_node} rank(s) each",
            file=sys.stderr,
            flush=True,
        )
        run_dir = default_home() / "training" / time.strftime("%Y%m%d-%H%M%S")
        run = run_fleet(
            fleet=fleet, workload_argv=worker_argv, options=options, echo=echo, vpn=own.vpn, run_dir=run_dir
        )
        _write_report(name, run, fleet.machines, run_dir, own.target)
        return run
    if own.vpn != "none":
        msg = f"--vpn {own.vpn} needs --on FLEET: Local machines share this host's network already"
        raise ConfigError(msg)
    run_dir = default_home() / "training" / time.strftime("%Y%m%d-%H%M%S")
    print(
        f"train: {name} on {options.nodes.maximum} Local machine(s), {options.nproc_per_node} rank(s) each; "
        f"logs under {run_dir}",
        file=sys.stderr,
        flush=True,
    )
    run = run_local_fleet(workload_argv=worker_argv, options=options, run_dir=run_dir, echo=echo)
    local = tuple(MachineSpec(name=f"local-{i}") for i in range(options.nodes.maximum))
    _write_report(name, run, local, run_dir, own.target)
    return run


def _write_report(
    name: str, run: FleetRun, machines: tuple[MachineSpec, ...], run_dir: Path, target: str | None
) -> None:
    """The run's report (figures with their sources, cost, CO2e) as JSON and PNG in ``run_dir``,
    and the time to ``target`` (``--target``) on the terminal."""
    from fogros_dist.train.footprint import footprint_of
    from fogros_dist.train.run_report import RunReport, TargetMetric, parse_progress

    footprints = []
    for machine in machines:
        options = dict(machine.options)
        instance_type, region = options.get("instance_type"), options.get("region")
        footprints.append(
            footprint_of(
                machine.name,
                machine.provider,
                instance_type=str(instance_type) if instance_type is not None else None,
                region=str(region) if region is not None else None,
            )
        )
    report = RunReport(
        epochs=parse_progress(run.lines),
        final_metrics=run.metrics,
        machines=footprints,
        seconds=run.seconds,
        title=f"{name}, {len(machines)} machine(s)",
        target=TargetMetric.parse(target) if target is not None else None,
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    report.write(run_dir / "report.json", run_dir / "report.png")
    if report.target is not None:
        reached = report.time_to_target()
        when = (
            f"{reached['value']:.1f} s of training (epoch {reached['epoch']})"
            if reached["value"] is not None
            else reached["why"]
        )
        print(f"train: time to {report.target.describe()}: {when}", file=sys.stderr, flush=True)
    print(
        f"train: report {run_dir / 'report.json'} and {run_dir / 'report.png'}", file=sys.stderr, flush=True
    )


def _echo(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
