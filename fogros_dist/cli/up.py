"""`fogros-dist up FILE`: provision machines, start nodes, bridge topics; Ctrl-C tears down."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from fogros_dist.cli.output import PrefixedOutput, print_stage
from fogros_dist.deploy.engine import Deployment
from fogros_dist.deploy.file import load_deployment_file
from fogros_dist.deploy.state import StateStore
from fogros_dist.errors import DeploymentError, UnknownDeployment

__all__ = ["add_parser", "run"]

DETACH_TIMEOUT_S = 300.0


def add_parser(sub: Any) -> None:
    """Register the verb."""
    parser = sub.add_parser("up", help="bring a deployment up from a TOML deployment file")
    parser.add_argument("file", type=Path, help="deployment file (see docs/ARCHITECTURE.md)")
    parser.add_argument("--name", help="override the deployment's name")
    parser.add_argument(
        "--detach", action="store_true", help="return once running; supervise in the background"
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=5.0,
        help="bridges: seconds between SIGTERM and SIGKILL (nodes use their own sigterm/sigkill_timeout)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Bring the deployment up and supervise it in the foreground (or detached)."""
    spec = load_deployment_file(args.file)
    if args.name:
        import dataclasses

        spec = dataclasses.replace(spec, name=args.name)
    if args.detach:
        return _detach(args, spec.name)
    deployment = Deployment(spec, reporter=print_stage, output=PrefixedOutput(), grace=args.grace)
    stop = threading.Event()
    _stop_on_signals(stop)
    try:
        deployment.up()
        print(f"deployment {spec.name} is up: Ctrl-C (or 'fogros-dist down {spec.name}') tears it down")
        code = deployment.wait(stop)
    finally:
        deployment.down()
    return code


def _stop_on_signals(stop: threading.Event) -> None:
    def handle(signum: int, _frame: object) -> None:
        del signum
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


def _detach(args: argparse.Namespace, name: str) -> int:
    store = StateStore()
    log_dir = store.deployment_dir(name).parent / f".{name}-supervisor"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "supervisor.log"
    argv = [sys.executable, "-m", "fogros_dist.cli.main", "up", str(args.file), "--grace", str(args.grace)]
    if args.name:
        argv += ["--name", args.name]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env=dict(os.environ),
        )
    deadline = time.monotonic() + DETACH_TIMEOUT_S
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            msg = f"deployment {name!r} failed to come up (exit code {code}): {' | '.join(tail)}"
            raise DeploymentError(msg)
        try:
            state = store.load(name)
        except UnknownDeployment:
            state = None
        supervisor = state.supervisor if state is not None else None
        if (
            state is not None
            and state.status == "running"
            and supervisor is not None
            and supervisor.pid == proc.pid
        ):
            print(f"deployment {name} is up (supervisor pid {proc.pid}, log {log_path})")
            return 0
        time.sleep(0.1)
    msg = f"deployment {name!r} did not come up within {DETACH_TIMEOUT_S:.0f} s: see {log_path}"
    raise DeploymentError(msg)
