"""`fogros-dist demo`: offload edge_detector to the Local provider and print the latency table."""

from __future__ import annotations

import argparse
import time
from typing import Any

from fogros_dist.cli.output import PrefixedOutput, print_stage
from fogros_dist.errors import DeploymentError

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Register the verb."""
    parser = sub.add_parser("demo", help="offload an image-processing node locally and measure it")
    parser.add_argument("--frames", type=int, default=60, help="measured frames (default 60)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--rate", type=float, default=20.0, help="frames per second (default 20)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo; exit 0 only if every frame came back with the right edges."""
    from fogros_dist.demo import run_demo, summarize
    from fogros_dist.net.stats import format_stats_table

    if args.frames < 1 or args.width < 3 or args.height < 3 or args.rate <= 0:
        msg = "demo needs --frames >= 1, --width/--height >= 3 and --rate > 0"
        raise DeploymentError(msg)
    t0 = time.monotonic()
    result = run_demo(
        frames=args.frames,
        width=args.width,
        height=args.height,
        rate_hz=args.rate,
        reporter=print_stage,
        output=PrefixedOutput(),
    )
    print()
    print(format_stats_table(result.bridge_stats))
    print()
    for line in summarize(result):
        print(line)
    print(f"demo finished in {time.monotonic() - t0:.1f} s")
    if result.answered < result.sent or result.correct < result.sent:
        msg = f"{result.sent - result.correct} of {result.sent} frames were lost or wrong"
        raise DeploymentError(msg)
    return 0
