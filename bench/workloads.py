"""Each workload's serving node on the robot vs offloaded (through the bridge), in one run.

    .venv/bin/python bench/workloads.py [--requests 30] [--workloads grasp slam policy] [--skip-train]

Trains each workload's model first (unless --skip-train), then runs `fogros-dist bench <workload>`'s
two phases for each, and writes bench/results/workloads.json and the table in BENCHMARKS.md
between `<!-- bench_workloads:begin -->` and `<!-- bench_workloads:end -->`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from fogros_dist.workloads import get_workload, workload_names
from fogros_dist.workloads.base import default_model_dir
from fogros_dist.workloads.bench import markdown_table, run_bench, update_markdown_section

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "workloads.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--workloads", nargs="+", choices=workload_names(), default=workload_names())
    parser.add_argument("--skip-train", action="store_true", help="use the models already trained")
    args = parser.parse_args()
    model_dir = default_model_dir()
    results = []
    t0 = time.monotonic()
    for name in args.workloads:
        workload = get_workload(name)
        metrics: dict[str, float] = {}
        if not args.skip_train:
            train_parser = argparse.ArgumentParser()
            workload.add_train_arguments(train_parser)
            metrics = workload.train(
                train_parser.parse_args([]), report=lambda line: print(line, file=sys.stderr)
            )
        result = run_bench(workload, requests=args.requests, model_dir=model_dir, report=print).as_dict()
        result["train_metrics"] = metrics
        print(json.dumps(result), flush=True)
        results.append(result)
    meta = (
        f"Per-request latency (request published on the robot's DDS graph -> reply received there), "
        f"{args.requests} requests per phase after a warm-up, one request at a time, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, run took "
        f"{time.monotonic() - t0:.0f} s. 'offloaded' runs the node on a Local machine behind the "
        f"Zenoh bridge, on this same CPU: the ratio is the bridge's cost, not a GPU's speed-up."
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    update_markdown_section(
        ROOT / "BENCHMARKS.md",
        "bench_workloads",
        markdown_table(results, meta),
        title="Workloads: robot vs offloaded",
    )
    print(markdown_table(results, meta))
    if not args.skip_train:
        quality = _metrics_table(results)
        update_markdown_section(
            ROOT / "BENCHMARKS.md",
            "workload_metrics",
            quality,
            title="Workloads: model quality (train defaults)",
        )
        print(quality)
    return 0


def _metrics_table(results: list[dict[str, Any]]) -> str:
    """Each workload's evaluation metrics from `fogros-dist train <name>` with default options."""
    lines = [
        "Evaluation metrics returned by each workload's `train` with its default options, same run as",
        "the latency table above (`bench/workloads.py`).",
        "",
        "| workload | metric | value |",
        "|---|---|---:|",
    ]
    for result in results:
        for key, value in sorted(result.get("train_metrics", {}).items()):
            lines.append(f"| {result['workload']} | {key} | {value:.4g} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
