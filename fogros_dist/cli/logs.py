"""`fogros-dist logs NAME`: the output of a deployment's nodes and bridges, prefixed by machine."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import Any, Literal

from fogros_dist.cli.output import PrefixedOutput
from fogros_dist.deploy.state import StateStore
from fogros_dist.errors import UnknownDeployment
from fogros_dist.providers.local.process import LocalProcess, tail_lines

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
    store = StateStore()
    sink = PrefixedOutput()
    if args.name in store.names():
        records = store.load(args.name).processes
    else:
        # After `down` the state is gone but the logs stay: read them from the files.
        root = store.deployment_dir(args.name)
        if not root.exists():
            known = ", ".join(store.names()) or "none"
            msg = f"no deployment or logs named {args.name!r} in {store.home} (recorded: {known})"
            raise UnknownDeployment(msg)
        for path in sorted(root.glob("**/logs/*.out")) + sorted(root.glob("**/logs/*.err")):
            machine = path.parent.parent.name if path.parent.parent != root else "robot"
            stream: Literal["stdout", "stderr"] = "stderr" if path.suffix == ".err" else "stdout"
            for line in tail_lines(path, args.lines):
                sink(machine, path.stem, stream, line)
        return 0
    records = tuple(r for r in records if args.machine in (None, r.machine))
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
