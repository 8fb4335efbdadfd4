"""`fogros-dist down NAME|--all [--region R ...]`: stop and release everything a deployment created.

``--all --region R`` also sweeps AWS region R: every fogros_dist-tagged instance, spot request,
security group, key pair and volume there that carries the caller's owner tag (every owner's with
``--any-owner``) is removed, whether this robot recorded it or not (a crash, a wiped home). What
would go is listed first and confirmed on a terminal (``--yes`` skips the question; without a
terminal and without ``--yes`` nothing happens), before any deployment is torn down.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from fogros_dist.cli.output import print_stage
from fogros_dist.deploy.engine import teardown_recorded
from fogros_dist.deploy.state import StateStore
from fogros_dist.errors import ConfigError, FogError

if TYPE_CHECKING:
    from fogros_dist.providers.aws.ec2 import Tagged
    from fogros_dist.providers.aws.fleet import SweepPlan

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
        help="with --all: also remove your fogros_dist-tagged AWS resources in REGION, recorded or not "
        "(repeat for more regions); lists them and asks first",
    )
    parser.add_argument(
        "--any-owner",
        action="store_true",
        help="with --region: every owner's resources there, not only yours (a shared account: careful)",
    )
    parser.add_argument("--yes", action="store_true", help="with --region: remove without asking")
    parser.add_argument("--profile", default="", help="AWS credentials profile for --region")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Tear down each named deployment (then sweep regions); exit 1 if anything reported an error."""
    if args.region and not args.all:
        msg = "--region only goes with --all (it removes every tagged resource there): add --all"
        raise ConfigError(msg)
    if args.any_owner and not args.region:
        msg = "--any-owner only goes with --all --region REGION (it widens that sweep): add --region"
        raise ConfigError(msg)
    store = StateStore()
    names = store.names() if args.all else args.names
    if not names and not args.all:
        msg = "down needs deployment names, or --all: see 'fogros-dist list'"
        raise ConfigError(msg)
    if not names and not args.region:
        print("no deployments recorded")
        return 0
    # Listed and confirmed before anything is torn down, so that a "no" changes nothing.
    sweep_plans = _plan_sweep(args) if args.region else None
    failed = False
    for name in names:
        try:
            report = teardown_recorded(name, store=store, reporter=print_stage, grace=args.grace)
        except FogError as err:
            # One unreadable record must not keep the others running: say so, go on, exit 1.
            more = " (skipped; the others are torn down)" if len(names) > 1 else ""
            print(f"fogros-dist: error: {err}{more}", file=sys.stderr, flush=True)
            failed = True
            continue
        if report.errors:
            # Never "down" while something it knows of remains: each thing is named, exit 1.
            for line in report.errors:
                print(f"fogros-dist: error: {name}: left: {line}")
            print(f"deployment {name} is NOT down: run 'fogros-dist down {name}' again once fixed")
            failed = True
        else:
            print(f"deployment {name} is down")
    if sweep_plans is not None:
        failed |= _sweep(sweep_plans)
    return 1 if failed else 0


def _plan_sweep(args: argparse.Namespace) -> list[SweepPlan]:
    """List what the region sweep would remove; return it once confirmed (ConfigError if not)."""
    # Imported here: the AWS SDK loads only when a region is swept.
    from fogros_dist.providers.aws.fleet import plan_sweep

    plans = plan_sweep(regions=args.region, any_owner=args.any_owner, profile=args.profile)
    regions = " ".join(f"--region {plan.region}" for plan in plans)
    count = sum(len(plan.resources) for plan in plans)
    if count and not args.yes and not sys.stdin.isatty():
        msg = (
            f"down --all {regions} would remove {count} AWS resource(s) and there is no terminal to confirm "
            f"on: add --yes (or run it on a terminal to see the list first)"
        )
        raise ConfigError(msg)
    for plan in plans:
        for line in plan.lines():
            print(line, flush=True)
    if count and not args.yes and not _confirm(f"remove these {count} resource(s)? [y/N] "):
        msg = f"down --all {regions}: not confirmed, nothing was removed"
        raise ConfigError(msg)
    return plans


def _confirm(question: str) -> bool:
    """Ask ``question`` on the terminal; only 'y' or 'yes' is a yes (end of input is a no)."""
    try:
        answer = input(question)
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _sweep(plans: list[SweepPlan]) -> bool:
    """Remove what the confirmed plans listed; True if anything failed."""
    from fogros_dist.providers.aws.fleet import sweep

    def removed(region: str, resource: Tagged) -> None:
        print(f"{region}: removed {resource.describe()}", flush=True)

    failed = False
    for report in sweep(plans, on_removed=removed):
        print(f"region {report.region}: removed {report.counts()}")
        for line in report.errors:
            print(f"fogros-dist: error: {line}")
        failed |= bool(report.errors)
    return failed
