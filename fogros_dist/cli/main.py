"""`fogros-dist`: the robot-side command line.

One place reports errors: a FogError prints one line (``fogros-dist: error: ...``) and exits 1;
so does an OSError or a decode error that no layer translated (naming the file and the reason);
the traceback appears only with ``--debug``. The same verbs serve `ros2 fogdist`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from fogros_dist import __version__
from fogros_dist.cli import bench, demo, down, image, list_deployments, logs, serve, ssh, train, trust, up
from fogros_dist.errors import Cancelled, FogError

__all__ = ["add_verbs", "main", "run_verb"]

Verb = Callable[[argparse.Namespace], int]
_VERBS = (up, down, list_deployments, image, logs, ssh, trust, demo, train, serve, bench)


def add_verbs(parser: argparse.ArgumentParser) -> None:
    """Add the verbs (up, down, list, image, logs, ssh, trust, demo, train, serve, bench) and --debug."""
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
    except Cancelled as err:
        # Ctrl-C, SIGTERM or `fogros-dist down` stopped it; the teardown has run.
        print(f"{prog}: stopped: {err}", file=sys.stderr)
        return 130
    except FogError as err:
        if args.debug:
            logging.exception("traceback")
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    except (OSError, UnicodeError) as err:
        # A layer should have said this in its own words; still one line, never a traceback.
        if args.debug:
            logging.exception("traceback")
        print(f"{prog}: error: {_describe_os_error(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def _describe_os_error(err: OSError | UnicodeError) -> str:
    if isinstance(err, UnicodeError):
        return f"text that is not valid UTF-8 ({err}): check the files and arguments given"
    where = " -> ".join(str(name) for name in (err.filename, err.filename2) if name is not None)
    reason = err.strerror or str(err) or type(err).__name__
    return f"{where}: {reason}: check that path" if where else f"{reason} (--debug shows where)"


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
