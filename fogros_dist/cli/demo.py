"""`fogros-dist demo`: offload the grasp planner to the Local provider; print latency and grasp quality."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from fogros_dist.cli.output import PrefixedOutput, print_stage
from fogros_dist.errors import DeploymentError

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Register the verb."""
    parser = sub.add_parser(
        "demo",
        help="offload the grasp planner locally and measure it (trains a small model first if none)",
    )
    parser.add_argument("--requests", type=int, default=30, help="measured depth images (default 30)")
    parser.add_argument("--rate", type=float, default=5.0, help="most depth images per second (default 5)")
    parser.add_argument(
        "--png", type=Path, default=None, help="where to draw the grasps (default: in $FOGROS_DIST_HOME)"
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="where grasp.pt is cached (default $FOGROS_DIST_MODELS or ~/.cache)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo; exit 0 only if every depth image got grasps back."""
    from fogros_dist.demo import run_demo, summarize
    from fogros_dist.net.stats import format_stats_table

    if args.requests < 1 or args.rate <= 0:
        msg = (
            f"demo needs --requests >= 1 and --rate > 0, got --requests {args.requests} --rate {args.rate:g}"
        )
        raise DeploymentError(msg)
    t0 = time.monotonic()
    result = run_demo(
        requests=args.requests,
        rate_hz=args.rate,
        model_dir=args.model_dir,
        png_path=args.png,
        reporter=print_stage,
        output=PrefixedOutput(),
    )
    print()
    print(format_stats_table(result.bridge_stats))
    print()
    for line in summarize(result):
        print(line)
    trained = f" ({result.trained_seconds:.0f} s of it training the model)" if result.trained_seconds else ""
    print(f"demo finished in {time.monotonic() - t0:.1f} s{trained}")
    if result.answered < result.sent:
        missing = result.sent - result.answered
        msg = f"{missing} of {result.sent} depth images got no grasps back: see the node's log above"
        raise DeploymentError(msg)
    return 0
