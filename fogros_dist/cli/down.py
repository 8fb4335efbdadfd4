"""`fogros-dist down NAME|--all`: stop and release everything a deployment created."""

from __future__ import annotations

import argparse
from typing import Any

from fogros_dist.cli.output import print_stage
from fogros_dist.deploy.engine import teardown_recorded
from fogros_dist.deploy.state import StateStore
from fogros_dist.errors import ConfigError

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Register the verb."""
    parser = sub.add_parser("down", help="tear a deployment down (works after a crash too)")
    parser.add_argument("names", nargs="*", help="deployment names")
    parser.add_argument("--all", action="store_true", help="every recorded deployment")
    parser.add_argument("--grace", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Tear down each named deployment; exit 1 if any teardown reported an error."""
    store = StateStore()
    names = store.names() if args.all else args.names
    if not names:
        if args.all:
            print("no deployments recorded")
            return 0
        msg = "down needs deployment names, or --all: see 'fogros-dist list'"
        raise ConfigError(msg)
    failed = False
    for name in names:
        report = teardown_recorded(name, store=store, reporter=print_stage, grace=args.grace)
        for line in report.errors:
            print(f"fogros-dist: error: {line}")
        failed |= bool(report.errors)
        print(f"deployment {name} is down")
    return 1 if failed else 0
