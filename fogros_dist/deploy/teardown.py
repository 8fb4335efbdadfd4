"""The one teardown path: Ctrl-C, launch shutdown, a failed `up`, `fogros-dist down`, crash recovery.

It reconciles the record against what really exists: recorded processes are stopped and checked
(PID and start time), each host is terminated and then asked what of it remains, each machine
whose creation was under way is reclaimed by its provider (by tag). The record goes only when
nothing is left; otherwise it stays ``failed`` with ``leftovers`` naming each thing, and the
report carries them as errors (the CLI exits non-zero). A deployment that failed keeps its
record, released, with the reason, until `down` or the next `up` of its name.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

from fogros_dist.deploy.stages import Reporter, Stage
from fogros_dist.deploy.state import DeploymentState, ExitRecord, StateStore
from fogros_dist.errors import FogError
from fogros_dist.providers.base import Provider, RunningProcess
from fogros_dist.providers.local.process import LocalProcess, process_alive
from fogros_dist.registry import get_provider
from fogros_dist.spec import Host, NodeSpec, ProcessRecord

__all__ = [
    "ROBOT",
    "ExitReport",
    "Report",
    "TeardownReport",
    "exit_report",
    "process_key",
    "stop_all",
    "teardown",
    "teardown_recorded",
]

ROBOT = "robot"
# How long `down` waits for a live supervisor to tear its deployment down itself; past this it is
# killed and the record is reconciled here.
SUPERVISOR_TEARDOWN_S = 120.0
Report = Callable[[str, str, str], None]


@dataclass(frozen=True, kw_only=True)
class ExitReport:
    """How one supervised process ended."""

    role: str
    name: str
    machine: str
    exit_code: int | None
    stderr_tail: tuple[str, ...]

    def describe(self) -> str:
        """One line: who exited and how."""
        code = self.exit_code
        if code is None:
            how = "did not stop"
        elif code < 0 and code != -1:
            how = f"was stopped by {signal.Signals(-code).name}"
        elif code == -1:
            how = "is gone (exit code unknown: it was not our child)"
        else:
            how = f"exited with code {code}"
        return f"{self.role} {self.name!r} on machine {self.machine!r} {how}"

    def record(self) -> ExitRecord:
        """The same, for the state file."""
        return ExitRecord(
            role=self.role,
            name=self.name,
            machine=self.machine,
            exit_code=self.exit_code,
            stderr_tail=self.stderr_tail,
            at=time.time(),
        )


@dataclass(frozen=True, kw_only=True)
class TeardownReport:
    """What a teardown stopped and released, and what it could not (``errors``: each thing left,
    or each failure; empty means everything is gone)."""

    deployment: str
    exits: tuple[ExitReport, ...]
    terminated_hosts: tuple[str, ...]
    errors: tuple[str, ...]
    # Why the deployment failed ("" when it was stopped on request); its record keeps it.
    failure: str = ""


def process_key(machine: str, process_name: str) -> str:
    """How the engine and the teardown name a supervised process."""
    return f"{machine}/{process_name}"


def exit_report(proc: RunningProcess, code: int | None) -> ExitReport:
    """``proc``'s end as a report (its stderr tail when it failed)."""
    record = proc.record
    return ExitReport(
        role=record.role,
        name=record.name,
        machine=record.machine,
        exit_code=code,
        stderr_tail=proc.stderr_tail(10) if code not in (0, None) else (),
    )


def stop_all(
    procs: Sequence[RunningProcess], nodes: Mapping[str, NodeSpec], *, grace: float
) -> list[ExitReport]:
    """Stop ``procs`` at once (as launch signals every node together), each node with its own
    timeouts (SIGINT first), anything else with SIGTERM and ``grace``; their exit reports."""

    def stop(proc: RunningProcess) -> ExitReport:
        node = nodes.get(process_key(proc.record.machine, proc.record.name))
        try:
            if node is None or proc.record.role != "node":
                return exit_report(proc, proc.stop(grace=grace))
            return exit_report(proc, proc.stop(grace=node.sigkill_timeout, sigint_grace=node.sigterm_timeout))
        except FogError as err:
            # Its machine cannot be reached now: it may still run there, and the record says so.
            return ExitReport(
                role=proc.record.role,
                name=proc.record.name,
                machine=proc.record.machine,
                exit_code=None,
                stderr_tail=(str(err),),
            )

    if not procs:
        return []
    with ThreadPoolExecutor(max_workers=len(procs), thread_name_prefix="fog-stop") as pool:
        return list(pool.map(stop, procs))


def teardown(
    state: DeploymentState,
    *,
    store: StateStore,
    provider_for: Callable[[str], Provider],
    report: Report,
    grace: float,
    handles: Mapping[str, RunningProcess] | None = None,
    failure: str = "",
) -> TeardownReport:
    """Stop every recorded process (nodes first), release every host and every machine under
    way; then forget the deployment, or keep it ``failed`` (with ``failure``, or with what is
    left). See the module docstring.

    Args:
        state: the deployment's record as it is now.
        store: where it is recorded.
        provider_for: the provider of a name (one instance per teardown).
        report: progress, ``(stage, machine, message)``.
        grace: seconds between SIGTERM and SIGKILL for bridges.
        handles: the supervisor's own handles on its processes, by :func:`process_key`; the
            others are attached to from their records.
        failure: why the deployment failed ("" when it is stopped on request).
    """
    name = state.spec.name
    state = store.save(dataclasses.replace(state, status="stopping"))
    report("teardown", ROBOT, f"stopping deployment {name}")
    nodes = {process_key(node.machine, node.process_name): node for node in state.spec.nodes}
    exits: list[ExitReport] = []
    for role in ("node", "bridge"):
        procs = [
            _handle(state, record, handles, provider_for) for record in state.processes if record.role == role
        ]
        exits += stop_all(procs, nodes, grace=grace)
    left = [
        f"{e.describe()}: {'; '.join(e.stderr_tail) or 'still running'}" for e in exits if e.exit_code is None
    ]
    running = {(e.machine, e.name) for e in exits if e.exit_code is None}
    released: list[str] = []
    kept_hosts = []
    for host in state.hosts:
        remains = _release(partial(_terminate, provider_for(host.provider), host), host.machine, report)
        if remains:
            kept_hosts.append(host)
            left += remains
        else:
            released.append(host.machine)
            report("released", host.machine, f"{host.provider} machine released")
    kept_pending = []
    for machine_name in state.pending:
        machine = state.spec.machine(machine_name)
        provider = provider_for(machine.provider)
        remains = _release(partial(provider.reclaim, machine, deployment=name), machine_name, report)
        if remains:
            kept_pending.append(machine_name)
            left += remains
        else:
            report("reclaimed", machine_name, f"nothing left of the {machine.provider} machine under way")
    exits_now = (*state.exits, *(e.record() for e in exits))
    if left:
        store.save(
            dataclasses.replace(
                state,
                status="failed",
                error=failure or state.error or "teardown left things behind",
                pending=tuple(kept_pending),
                hosts=tuple(kept_hosts),
                processes=tuple(r for r in state.processes if (r.machine, r.name) in running),
                exits=exits_now,
                leftovers=tuple(left),
            )
        )
        for item in left:
            report("left", ROBOT, item)
        report(
            "not down",
            ROBOT,
            f"deployment {name} is NOT down: {len(left)} thing(s) left; "
            f"'fogros-dist down {name}' tries again",
        )
    else:
        # Nothing runs that could use them any more: the deployment's private keys go.
        shutil.rmtree(store.deployment_dir(name) / "tls", ignore_errors=True)
        if failure:
            store.save(
                dataclasses.replace(
                    state,
                    status="failed",
                    error=failure,
                    pending=(),
                    hosts=(),
                    processes=(),
                    exits=exits_now,
                    leftovers=(),
                )
            )
            report("failed", ROBOT, f"deployment {name} failed and was released: {failure}")
        else:
            store.remove(name)
            report("down", ROBOT, f"deployment {name} is down")
    return TeardownReport(
        deployment=name,
        exits=tuple(exits),
        terminated_hosts=tuple(released),
        errors=tuple(left),
        failure=failure,
    )


def teardown_recorded(
    name: str,
    *,
    store: StateStore | None = None,
    reporter: Reporter | None = None,
    grace: float = 5.0,
) -> TeardownReport:
    """Tear down a recorded deployment from any process (`fogros-dist down`).

    A live supervisor is asked to stop (SIGTERM: it cancels whatever stage it is in and tears
    down itself); once it has ended (or was killed after SUPERVISOR_TEARDOWN_S), what the record
    still holds is torn down here. A failed record with nothing left is forgotten.
    """
    store = store or StateStore()
    report_to = reporter or (lambda _stage: None)
    t0 = time.monotonic()

    def report(stage: str, machine: str, message: str) -> None:
        report_to(Stage(stage=stage, machine=machine, message=message, elapsed=time.monotonic() - t0))

    state = store.load(name)
    supervisor = state.supervisor
    if supervisor is not None and supervisor.pid != os.getpid() and process_alive(supervisor):
        report("teardown", ROBOT, f"asking supervisor (pid {supervisor.pid}) to stop {name}")
        os.kill(supervisor.pid, signal.SIGTERM)
        deadline = time.monotonic() + SUPERVISOR_TEARDOWN_S
        last_note = time.monotonic()
        while process_alive(supervisor) and time.monotonic() < deadline:
            time.sleep(0.1)
            if time.monotonic() - last_note >= 5.0:
                last_note = time.monotonic()
                report("waiting", ROBOT, f"supervisor (pid {supervisor.pid}) is still tearing {name} down")
        if process_alive(supervisor):
            report("teardown", ROBOT, "the supervisor did not finish: stopping what it recorded")
            # Only the supervisor itself: its process group may be the caller's shell or test runner.
            os.kill(supervisor.pid, signal.SIGKILL)
        if name not in store.names():
            return TeardownReport(deployment=name, exits=(), terminated_hosts=(), errors=())
        state = store.load(name)
    if state.status == "failed" and state.released:
        store.remove(name)
        report("down", ROBOT, f"deployment {name} is down (it had failed: {state.error})")
        return TeardownReport(deployment=name, exits=(), terminated_hosts=(), errors=())
    providers: dict[str, Provider] = {}

    def provider_for(provider_name: str) -> Provider:
        if provider_name not in providers:
            providers[provider_name] = get_provider(provider_name)
        return providers[provider_name]

    return teardown(state, store=store, provider_for=provider_for, report=report, grace=grace)


def _handle(
    state: DeploymentState,
    record: ProcessRecord,
    handles: Mapping[str, RunningProcess] | None,
    provider_for: Callable[[str], Provider],
) -> RunningProcess:
    found = (handles or {}).get(process_key(record.machine, record.name))
    if found is not None:
        return found
    host = state.host(record.machine)
    if host is None:
        return LocalProcess(record)
    return provider_for(host.provider).attach(host, record)


def _terminate(provider: Provider, host: Host) -> tuple[str, ...]:
    provider.terminate(host)
    return provider.remaining(host)


def _release(step: Callable[[], tuple[str, ...]], machine: str, report: Report) -> tuple[str, ...]:
    """Run a release step; what it leaves, or its error as the thing left."""
    try:
        return tuple(step())
    except FogError as err:
        report("error", machine, str(err))
        return (f"machine {machine!r}: {err}",)
