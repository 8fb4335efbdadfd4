"""`fogros-dist down NAME|--all [--region R ...]`: stop and release everything a deployment created.

``--all --region R`` also sweeps AWS region R: every fogros_dist-tagged instance, security group
and key pair there is removed, whether this robot recorded it or not (a crash, a wiped home,
another robot's leftovers).
"""

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
    parser.add_argument(
        "--grace",
        type=float,
        default=5.0,
        help="bridges: seconds between SIGTERM and SIGKILL (nodes use their own sigterm/sigkill_timeout)",
    )
    parser.add_argument(
        "--region",
        action="append",
        default=[],
        metavar="REGION",
        help="with --all: also remove every fogros_dist-tagged AWS resource in REGION, recorded or not "
        "(repeat for more regions)",
    )
    parser.add_argument("--profile", default="", help="AWS credentials profile for --region")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Tear down each named deployment (then sweep regions); exit 1 if anything reported an error."""
    if args.region and not args.all:
        msg = "--region only goes with --all (it removes every tagged resource there): add --all"
        raise ConfigError(msg)
    store = StateStore()
    names = store.names() if args.all else args.names
    if not names and not args.all:
        msg = "down needs deployment names, or --all: see 'fogros-dist list'"
        raise ConfigError(msg)
    if not names and not args.region:
        print("no deployments recorded")
        return 0
    failed = False
    for name in names:
        report = teardown_recorded(name, store=store, reporter=print_stage, grace=args.grace)
        for line in report.errors:
            print(f"fogros-dist: error: {line}")
        failed |= bool(report.errors)
        print(f"deployment {name} is down")
    if args.region:
        failed |= _sweep(args.region, profile=args.profile)
    return 1 if failed else 0


def _sweep(regions: list[str], *, profile: str) -> bool:
    # Imported here: the AWS SDK loads only when a region is swept.
    from fogros_dist.providers.aws.fleet import sweep_regions

    def removed(region: str, kind: str, name: str) -> None:
        print(f"{region}: removed {kind} {name}", flush=True)

    failed = False
    for report in sweep_regions(regions=regions, profile=profile, on_removed=removed):
        counts = (
            f"{len(report.instances)} instance(s), {len(report.security_groups)} security group(s), "
            f"{len(report.key_pairs)} key pair(s), {len(report.volumes)} volume(s)"
        )
        print(f"region {report.region}: removed {counts}")
        for line in report.errors:
            print(f"fogros-dist: error: {line}")
        failed |= bool(report.errors)
    return failed
