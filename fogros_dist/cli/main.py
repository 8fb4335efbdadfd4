"""`fogros-dist`: the robot-side command line.

One place reports errors: a FogError prints one line (``fogros-dist: error: ...``) and exits 1;
the traceback appears only with ``--debug``. The same verbs serve `ros2 fogdist`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from fogros_dist import __version__
from fogros_dist.cli import bench, demo, down, image, list_deployments, logs, ssh, train, trust, up
from fogros_dist.errors import FogError

__all__ = ["add_verbs", "main", "run_verb"]

Verb = Callable[[argparse.Namespace], int]
_VERBS = (up, down, list_deployments, image, logs, ssh, trust, demo, train, bench)


def add_verbs(parser: argparse.ArgumentParser) -> None:
    """Add the verbs (up, down, list, image, logs, ssh, trust, demo, train, bench) and --debug."""
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for module in _VERBS:
        module.add_parser(sub)


def run_verb(args: argparse.Namespace, *, prog: str = "fogros-dist") -> int:
    """Run the chosen verb with the CLI's error policy; return the exit code."""
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format=f"{prog}: %(levelname)s: %(message)s"
    )
    handler: Verb = args.handler
    try:
        return handler(args)
    except FogError as err:
        if args.debug:
            logging.exception("traceback")
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point."""
    parser = argparse.ArgumentParser(
        prog="fogros-dist",
        description="Offload ROS 2 nodes to cloud and lab machines and bridge their topics back.",
    )
    parser.add_argument("--version", action="version", version=f"fogros-dist {__version__}")
    add_verbs(parser)
    args = parser.parse_args(argv)
    return run_verb(args)


if __name__ == "__main__":
    sys.exit(main())
