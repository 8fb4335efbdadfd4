"""`fogros-dist bench <workload>`: latency per request, node on the robot vs offloaded."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fogros_dist.cli.output import print_stage, table
from fogros_dist.workloads import get_workload, workload_names
from fogros_dist.workloads.base import default_model_dir

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Register the verb."""
    parser = sub.add_parser("bench", help="a workload's node on the robot vs offloaded, in one run")
    parser.add_argument("workload", choices=workload_names())
    parser.add_argument("--requests", type=int, default=30, help="measured requests per phase (default 30)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-dir", type=Path, default=None, help="trained models (default: the cache)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run both phases and print the table."""
    from fogros_dist.workloads.bench import run_bench

    workload = get_workload(args.workload)
    result = run_bench(
        workload,
        requests=args.requests,
        seed=args.seed,
        model_dir=args.model_dir or default_model_dir(),
        reporter=print_stage,
    ).as_dict()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    rows = [
        (name, str(p["count"]), str(p["missing"]), str(p["median_ms"]), str(p["p99_ms"]))
        for name, p in result["phases"].items()
    ]
    print(table(("PHASE", "REQUESTS", "MISSING", "MEDIAN MS", "P99 MS"), rows))
    print(f"offloaded/robot (medians): {result['ratio']}")
    return 0
