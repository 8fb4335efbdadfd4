"""`fogros-dist logs NAME`: the output of a deployment's nodes and bridges, prefixed by machine.

Each process's output is in ``<name>.out`` / ``<name>.err`` and the rotated parts before them
(``.out.1`` is the newer of two, see :mod:`fogros_dist.rotating_log`); the last lines are read
across the parts, oldest first, so rotation never shows as a gap.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any, Literal

from fogros_dist.cli.output import PrefixedOutput
from fogros_dist.deploy.state import StateStore
from fogros_dist.errors import ConfigError, DeploymentError, UnknownDeployment
from fogros_dist.providers.local.process import LocalProcess
from fogros_dist.rotating_log import tail_lines

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Register the verb."""
    parser = sub.add_parser("logs", help="show a deployment's node and bridge output")
    parser.add_argument("name", help="deployment name")
    parser.add_argument("--machine", help="only this machine")
    parser.add_argument("-n", "--lines", type=int, default=50, help="lines per process (default 50)")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the last lines of every process's output, then follow if asked."""
    if args.lines < 0:
        msg = f"--lines {args.lines} is negative: give a number of lines >= 0"
        raise ConfigError(msg)
    store = StateStore()
    sink = PrefixedOutput()
    state = None
    if args.name in store.names():
        try:
            state = store.load(args.name)
        except DeploymentError as err:
            # The record is broken, the output is not: show what the files hold.
            print(f"fogros-dist: warning: {err}; showing its log files", file=sys.stderr)
    if state is None:
        # After `down` the state is gone but the logs stay: read them from the files.
        _print_files(store, args)
        return 0
    records = tuple(r for r in state.processes if args.machine in (None, r.machine))
    for record in records:
        for line in tail_lines(Path(record.stdout_path), args.lines):
            sink(record.machine, record.name, "stdout", line)
        for line in tail_lines(Path(record.stderr_path), args.lines):
            sink(record.machine, record.name, "stderr", line)
    if args.follow:
        followers = [LocalProcess(record) for record in records]
        for proc in followers:
            proc.follow(sink)
        threading.Event().wait()
    return 0


def _print_files(store: StateStore, args: argparse.Namespace) -> None:
    root = store.deployment_dir(args.name)
    if not root.is_dir():
        known = ", ".join(store.names()) or "none"
        msg = f"no deployment or logs named {args.name!r} in {store.home} (recorded: {known})"
        raise UnknownDeployment(msg)
    sink = PrefixedOutput()
    for path in sorted(root.glob("**/logs/*.out")) + sorted(root.glob("**/logs/*.err")):
        machine = path.parent.parent.name if path.parent.parent != root else "robot"
        if args.machine not in (None, machine):
            continue
        stream: Literal["stdout", "stderr"] = "stderr" if path.suffix == ".err" else "stdout"
        for line in tail_lines(path, args.lines):
            sink(machine, path.stem, stream, line)
