"""The embedded default fleet: one torchrun elastic agent per Local machine, all on this host.

``fogros-dist train grasp --nodes 2`` starts two agents, ``local-0`` (the head: it hosts the
c10d rendezvous store on 127.0.0.1) and ``local-1``, each in its own process group and working
directory under the run's directory. Every line a worker prints is already prefixed
``[train:<machine>:<rank>]``; an agent's own lines (torch elastic's log) get ``[train:<machine>]``.
Ctrl-C, or any way this process ends, stops every agent and its workers (SIGTERM to each process
group, SIGKILL after a grace period): nothing keeps running. A run that fails is one root-cause
line (:mod:`fogros_dist.train.root_cause`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fogros_dist.errors import FogError
from fogros_dist.train.checkpoint import CHECKPOINT_DIR_ENV
from fogros_dist.train.options import FleetOptions
from fogros_dist.train.root_cause import root_cause
from fogros_dist.train.worker import METRICS_PREFIX

__all__ = [
    "RUN_MARK_ENV",
    "FleetRun",
    "TrainingFailed",
    "agent_argv",
    "free_port",
    "run_local_fleet",
    "run_processes",
    "saved_model",
]

# In the environment of every agent and worker of a run: its run id.
RUN_MARK_ENV = "FOGROS_DIST_TRAIN_RUN"

# Workers of a rank each: one torch thread per rank unless the user says otherwise, so that
# N ranks on one host do not oversubscribe its cores N-fold.
_DEFAULT_THREADS = "1"
_STOP_GRACE_S = 10.0


class TrainingFailed(FogError):
    """A distributed run ended without rank 0's metrics; the message is the root cause."""


@dataclass
class _Agent:
    machine: str
    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None


@dataclass(frozen=True)
class FleetRun:
    """A finished run: rank 0's metrics and how each machine's agent ended."""

    metrics: dict[str, float]
    exit_codes: dict[str, int]
    seconds: float
    # The model rank 0 saved, on the robot (None: it said nothing, or it could not come back).
    model: Path | None = None
    # Every line the run printed, in order (for the run's report).
    lines: tuple[str, ...] = ()
    # What the fleet's teardown could not stop or release ("" when everything is gone): one line
    # naming it and the command that tries again; the run's caller reports it as an error.
    left_behind: str = ""


# Rank 0's "saved <path>" line: where the trained model went on its machine.
_SAVED = re.compile(r"^\[train:(?P<machine>[^:\]]+):0\] saved (?P<path>\S.*)$")


def saved_model(lines: Sequence[str]) -> tuple[str, str] | None:
    """(machine, path there) of the model rank 0 saved, from the run's lines; None if none."""
    for line in reversed(lines):
        match = _SAVED.match(line)
        if match is not None:
            return match["machine"], match["path"]
    return None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a c10d store on this host)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def agent_argv(
    *,
    workload_argv: Sequence[str],
    options: FleetOptions,
    endpoint: str,
    run_id: str,
    is_host: bool,
    log_dir: Path,
    python: str = sys.executable,
    local_addr: str | None = None,
) -> list[str]:
    """torchrun's command line for one machine (c10d rendezvous at ``endpoint``; ``local_addr``:
    the address this machine's agent gives the others, instead of its host name)."""
    where = ["--local-addr", local_addr] if local_addr else []
    return [
        python,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        f"{options.nodes.minimum}:{options.nodes.maximum}",
        "--nproc-per-node",
        str(options.nproc_per_node),
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        endpoint,
        "--rdzv-id",
        run_id,
        # The head hosts the store; every other agent is told so instead of guessing it from
        # its host name (on one host every agent would think it is the head). last_call: how
        # long a round with MIN machines waits for more (see DEFAULT_JOIN_WAIT_S).
        "--rdzv-conf",
        f"is_host={'true' if is_host else 'false'},last_call_timeout={options.join_wait_s}",
        "--max-restarts",
        str(options.max_restarts),
        "--monitor-interval",
        "1",
        "--log-dir",
        str(log_dir),
        *where,
        "-m",
        "fogros_dist.train.worker",
        *workload_argv,
    ]


def run_local_fleet(
    *,
    workload_argv: Sequence[str],
    options: FleetOptions,
    run_dir: Path,
    echo: Callable[[str], None],
    environ: dict[str, str] | None = None,
) -> FleetRun:
    """Train on ``options.nodes.maximum`` Local machines of this host; see the module's doc.

    Args:
        workload_argv: the workload's name and its training options (for the worker).
        options: the run's shape.
        run_dir: the run's directory (one subdirectory per machine: torch elastic's logs).
        echo: where every line goes (already prefixed).
        environ: the agents' environment (default: this process's).

    Raises:
        TrainingFailed: no metrics from rank 0; the message is the root cause.
    """
    started = time.monotonic()
    run_dir.mkdir(parents=True, exist_ok=True)
    endpoint = f"127.0.0.1:{free_port()}"
    run_id = f"fogros-{uuid.uuid4().hex[:12]}"
    base = dict(os.environ if environ is None else environ)
    base.setdefault("OMP_NUM_THREADS", _DEFAULT_THREADS)
    # pytorch issue 135712: restarted workers otherwise reconnect to a stale store address.
    base["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] = "1"
    base["PYTHONUNBUFFERED"] = "1"
    # On the head machine; rank 0 writes it, and sends it to the other ranks on a restart.
    base[CHECKPOINT_DIR_ENV] = str(run_dir / "checkpoints")
    # torch elastic starts each worker in a session of its own, so an agent that dies (SIGKILL)
    # leaves its workers running: every process of the run carries this mark, and goes with it.
    base[RUN_MARK_ENV] = run_id
    machines = [f"local-{i}" for i in range(options.nodes.maximum)]
    agents: list[_Agent] = []
    metrics: dict[str, float] | None = None
    lock = threading.Lock()

    def pump(agent: _Agent) -> None:
        nonlocal metrics
        assert agent.popen.stdout is not None
        for raw in agent.popen.stdout:
            line = raw.rstrip("\n")
            agent.lines.append(line)
            if line.startswith(METRICS_PREFIX):
                with lock:
                    metrics = json.loads(line[len(METRICS_PREFIX) :])
                continue
            echo(line if line.startswith("[train:") else f"[train:{agent.machine}] {line}")

    try:
        for index, machine in enumerate(machines):
            where = run_dir / machine
            where.mkdir(parents=True, exist_ok=True)
            argv = agent_argv(
                workload_argv=workload_argv,
                options=options,
                endpoint=endpoint,
                run_id=run_id,
                is_host=index == 0,
                log_dir=where / "torchelastic",
            )
            popen = subprocess.Popen(
                argv,
                cwd=where,
                env={**base, "FOGROS_DIST_MACHINE": machine},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            agent = _Agent(machine=machine, popen=popen)
            agent.reader = threading.Thread(target=pump, args=(agent,), daemon=True)
            agent.reader.start()
            agents.append(agent)
        for agent in agents:
            agent.popen.wait()
        for agent in agents:
            if agent.reader is not None:
                agent.reader.join(timeout=5.0)
    finally:
        _stop(agents)
        _kill_marked(run_id)
    codes = {a.machine: a.popen.returncode for a in agents}
    if metrics is None or codes[machines[0]] != 0:
        raise TrainingFailed(_failure_line(agents, codes))
    for machine, code in codes.items():
        if code != 0:
            echo(f"[train:{machine}] its agent ended with exit code {code}; the run finished without it")
    every = [line for agent in agents for line in agent.lines]
    saved = saved_model(every)
    return FleetRun(
        metrics=metrics,
        exit_codes=codes,
        seconds=time.monotonic() - started,
        model=Path(saved[1]) if saved is not None else None,
        lines=tuple(every),
    )


def _failure_line(agents: Sequence[_Agent], codes: dict[str, int]) -> str:
    """The first root cause any agent reported, else which agent ended how."""
    for agent in agents:
        failure = root_cause("\n".join(agent.lines))
        if failure is not None:
            return f"training failed: {failure.describe(agent.machine)}"
    ended = ", ".join(f"{machine} exit {code}" for machine, code in codes.items())
    return f"training failed with no worker error reported ({ended}): see the [train:...] lines above"


def _stop(agents: Sequence[_Agent]) -> None:
    """SIGTERM each agent's process group still running, SIGKILL what is left after the grace."""
    running = [a for a in agents if a.popen.poll() is None]
    for agent in running:
        _signal_group(agent.popen.pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE_S
    for agent in running:
        with contextlib.suppress(subprocess.TimeoutExpired):
            agent.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
    for agent in agents:
        # Workers outlive an agent killed by SIGKILL: the group goes too, whatever the agent did.
        _signal_group(agent.popen.pid, signal.SIGKILL)
        if agent.popen.poll() is None:
            agent.popen.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def run_processes(run_id: str, *, machine: str | None = None) -> list[int]:
    """PIDs of this host's processes that carry the run's mark (of one machine, if given)."""
    wanted = [f"{RUN_MARK_ENV}={run_id}".encode()]
    if machine is not None:
        wanted.append(f"FOGROS_DIST_MACHINE={machine}".encode())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if all(mark in environ for mark in wanted):
            found.append(int(entry.name))
    return found


def _kill_marked(run_id: str) -> None:
    """SIGKILL whatever of the run is still alive (workers orphaned by a dead agent)."""
    for pid in run_processes(run_id):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
