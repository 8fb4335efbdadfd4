"""`fogros-dist train <workload>`: generate data, train, evaluate and save a workload's model."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from fogros_dist.workloads import get_workload, workload_names

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
    workload = get_workload(args.workload)
    parser = argparse.ArgumentParser(
        prog=f"fogros-dist train {workload.name}", description=workload.description
    )
    workload.add_train_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    own = parser.parse_args(args.workload_args)
    t0 = time.monotonic()
    metrics = workload.train(own, report=lambda line: print(line, file=sys.stderr, flush=True))
    if own.json:
        print(json.dumps(metrics, indent=2, sort_keys=True))
    else:
        for key, value in sorted(metrics.items()):
            print(f"{key:<28} {value:.4g}")
    print(f"trained {workload.name} in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    return 0
