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
from fogros_dist.deploy.plan import make_plan
from fogros_dist.deploy.state import DeploymentState, StateStore
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
    # The detached supervisor's own flag: its nodes' output is in their log files already, so
    # copying it into supervisor.log would store it twice (and unbounded).
    parser.add_argument("--no-output", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--settle",
        type=float,
        default=3.0,
        help="with --detach: seconds the deployment must stay healthy after coming up (default 3)",
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
        # Bad input fails here, in this process, before the supervisor or its directory exists.
        make_plan(spec)
        return _detach(args, spec.name)
    output = None if args.no_output else PrefixedOutput()
    deployment = Deployment(spec, reporter=print_stage, output=output, grace=args.grace)
    stop = threading.Event()
    _stop_on_signals(stop, deployment)
    try:
        deployment.up()
        print(f"deployment {spec.name} is up: Ctrl-C (or 'fogros-dist down {spec.name}') tears it down")
        code = deployment.wait(stop)
    finally:
        report = deployment.down()
    if report.errors:
        # What could not be released is named by the teardown; the exit code says so too.
        return 1
    return code


def _stop_on_signals(stop: threading.Event, deployment: Deployment) -> None:
    # Ctrl-C or SIGTERM (also what `fogros-dist down` sends) at any stage: `up` gives up within
    # a second, supervision ends, and the one teardown runs.
    def handle(signum: int, _frame: object) -> None:
        del signum
        stop.set()
        deployment.cancel()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


def _detach(args: argparse.Namespace, name: str) -> int:
    store = StateStore()
    log_dir = store.deployment_dir(name).parent / f".{name}-supervisor"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "supervisor.log"
    argv = [sys.executable, "-m", "fogros_dist.cli.main", "up", str(args.file), "--grace", str(args.grace)]
    argv.append("--no-output")
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
        state = _own_state(store, name, proc.pid)
        code = proc.poll()
        if code is not None:
            raise DeploymentError(_why_not_up(name, code, state, log_path))
        if state is not None and state.status == "running":
            _settle(store, name, proc, log_path, seconds=args.settle, exits_before=len(state.exits))
            print(f"deployment {name} is up (supervisor pid {proc.pid}, log {log_path})")
            return 0
        time.sleep(0.1)
    msg = f"deployment {name!r} did not come up within {DETACH_TIMEOUT_S:.0f} s: see {log_path}"
    raise DeploymentError(msg)


def _own_state(store: StateStore, name: str, supervisor_pid: int) -> DeploymentState | None:
    """The record of ``name`` if it is the one this supervisor writes (not an older one)."""
    try:
        state = store.load(name)
    except UnknownDeployment:
        return None
    supervisor = state.supervisor
    return state if supervisor is not None and supervisor.pid == supervisor_pid else None


def _settle(
    store: StateStore,
    name: str,
    proc: subprocess.Popen[bytes],
    log_path: Path,
    *,
    seconds: float,
    exits_before: int,
) -> None:
    """Watch the deployment for ``seconds`` after it came up: a node that dies at once is an
    `up` that failed, not one that succeeded.

    Raises:
        DeploymentError: a process exited meanwhile, or the supervisor ended (the reason named).
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = _own_state(store, name, proc.pid)
        code = proc.poll()
        if code is not None:
            raise DeploymentError(_why_not_up(name, code, state, log_path))
        if state is not None and len(state.exits) > exits_before:
            exit_record = state.exits[exits_before]
            how = (
                "was killed"
                if (exit_record.exit_code or 0) < 0
                else f"exited with code {exit_record.exit_code}"
            )
            tail = f": {exit_record.stderr_tail[-1]}" if exit_record.stderr_tail else ""
            msg = (
                f"deployment {name!r}: {exit_record.role} {exit_record.name!r} on machine "
                f"{exit_record.machine!r} {how} within {seconds:g} s of coming up{tail} "
                f"(deployment {state.status}; see 'fogros-dist logs {name}')"
            )
            raise DeploymentError(msg)
        time.sleep(0.1)


def _why_not_up(name: str, code: int, state: DeploymentState | None, log_path: Path) -> str:
    if state is not None and state.error:
        return f"deployment {name!r} failed to come up: {state.error}"
    tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
    return f"deployment {name!r} failed to come up (exit code {code}): {' | '.join(tail)}"
