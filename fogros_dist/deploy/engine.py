"""The deployment engine: plan -> provision -> bridge -> start -> (supervise) -> teardown.

Each step records what it created in the state store before the next one begins, so `down` can
always undo a deployment, including one whose supervisor crashed half-way through `up`. The engine
is plain Python: the CLI and the launch adapters drive it and only render its progress.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fogros_dist.deploy.node_command import files_dir, node_arguments, node_environment, screen_sink
from fogros_dist.deploy.plan import ROBOT, Plan, make_plan
from fogros_dist.deploy.state import DeploymentState, StateStore
from fogros_dist.deploy.workspace import workspace_for
from fogros_dist.errors import DeploymentError, FogError, ProcessFailed
from fogros_dist.providers.base import OutputSink, ProcessSpec, Provider, ProvisionContext, RunningProcess
from fogros_dist.providers.local.process import LocalProcess, process_alive, start_ticks
from fogros_dist.registry import get_provider
from fogros_dist.spec import BridgeRunSpec, DeploymentSpec, Host, NodeSpec, ProcessRecord, to_json

__all__ = ["ROBOT", "Deployment", "Stage", "TeardownReport", "teardown_recorded"]

# How long a bridge may take from start to "ready" before `up` gives up on it.
BRIDGE_READY_TIMEOUT_S = 30.0
DEFAULT_GRACE_S = 5.0


@dataclass(frozen=True, kw_only=True)
class Stage:
    """A progress event: which step, for which machine, and how long since `up` began."""

    stage: str
    machine: str
    message: str
    elapsed: float

    def line(self) -> str:
        """The event as one status line."""
        return f"[{self.elapsed:6.1f}s] {self.stage:<12} {self.machine:<10} {self.message}"


Reporter = Callable[[Stage], None]


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


@dataclass(frozen=True, kw_only=True)
class TeardownReport:
    """What `down` stopped and released, and what went wrong doing it."""

    deployment: str
    exits: tuple[ExitReport, ...]
    terminated_hosts: tuple[str, ...]
    errors: tuple[str, ...]


class Deployment:
    """One deployment driven from this process (the supervisor).

    ``up`` provisions and starts everything; ``wait`` supervises (and respawns) until the nodes
    exit or ``stop`` is set; ``down`` stops and releases everything ``up`` created. Nodes are
    stopped as ``ros2 launch`` stops them (SIGINT, then SIGTERM after their ``sigterm_timeout``,
    SIGKILL after their ``sigkill_timeout``); bridges get SIGTERM and ``grace`` seconds.
    """

    def __init__(
        self,
        spec: DeploymentSpec,
        *,
        store: StateStore | None = None,
        reporter: Reporter | None = None,
        output: OutputSink | None = None,
        robot_domain_id: int | None = None,
        grace: float = DEFAULT_GRACE_S,
    ) -> None:
        self.spec = spec
        self.store = store or StateStore()
        self._reporter = reporter or (lambda _stage: None)
        self._output = output
        self._robot_domain_id = (
            robot_domain_id if robot_domain_id is not None else int(os.environ.get("ROS_DOMAIN_ID", "0"))
        )
        self._grace = grace
        self._t0 = time.monotonic()
        self._state: DeploymentState | None = None
        self._plan: Plan | None = None
        self._processes: dict[str, RunningProcess] = {}
        self._providers: dict[str, Provider] = {}
        self._nodes = {_key(node.machine, node.process_name): node for node in spec.nodes}
        # What each node needs to start again (respawn): its argv and environment on the machine.
        self._launch: dict[str, tuple[tuple[str, ...], tuple[tuple[str, str], ...]]] = {}
        self._respawns: dict[str, int] = {}
        # Held while a node (re)starts and when stopping begins, so no respawn outlives `down`.
        self._lifecycle = threading.Lock()
        self._stopping = False

    # -- public API ------------------------------------------------------------------------------

    @property
    def state(self) -> DeploymentState:
        """The recorded state (after ``up`` has begun)."""
        if self._state is None:
            msg = f"deployment {self.spec.name!r} has not been brought up yet: call up() first"
            raise DeploymentError(msg)
        return self._state

    @property
    def state_dir(self) -> Path:
        """Where this deployment keeps its state, machine work dirs and logs."""
        return self.store.deployment_dir(self.spec.name)

    def up(self) -> DeploymentState:
        """Plan, provision, start bridges and nodes; return the running state.

        On failure everything created so far is torn down before the error propagates.
        """
        self._t0 = time.monotonic()
        plan = make_plan(self.spec)
        self._report(
            "planned",
            ROBOT,
            f"deployment {self.spec.name}: {len(plan.machines)} machine(s), {len(self.spec.nodes)} node(s)",
        )
        self._plan = plan
        with self.store.locked():
            self._state = DeploymentState(
                spec=self.spec,
                status="provisioning",
                created_at=time.time(),
                updated_at=time.time(),
                robot_domain_id=self._robot_domain_id,
                supervisor=_own_record(),
            )
            self.store.create(self._state)
        try:
            for machine in self.spec.machines:
                self._provision(machine.name)
            self._start_bridges(plan)
            for node in self.spec.nodes:
                self._start_node(node)
            self._save(status="running")
        except BaseException:
            self._fail_and_teardown()
            raise
        self._report("running", ROBOT, f"deployment {self.spec.name} is up")
        return self.state

    def wait(self, stop: threading.Event) -> int:
        """Supervise until every node has exited for good, a bridge dies, or ``stop`` is set.

        A node with ``respawn`` is started again ``respawn_delay`` seconds after it exits, however
        it exited (as launch does), at most ``respawn_max_retries`` times (-1: always), and never
        once ``stop`` is set or ``down`` has begun. Returns 0 if stopped on request or all nodes
        exited cleanly, else 1. Each exit is reported with its exit code and stderr tail.
        """
        reported: set[str] = set()
        respawn_at: dict[str, float] = {}
        while not stop.wait(0.2):
            for key, when in list(respawn_at.items()):
                if time.monotonic() >= when and not stop.is_set():
                    del respawn_at[key]
                    if self._respawn(key):
                        reported.discard(key)
            nodes_left = len(respawn_at)
            for key, proc in list(self._processes.items()):
                code = proc.poll()
                if code is None:
                    nodes_left += proc.record.role == "node"
                    continue
                if key in reported:
                    continue
                reported.add(key)
                report = _exit_report(proc, code)
                self._report("exited", proc.record.machine, report.describe())
                for line in report.stderr_tail if code != 0 else ():
                    self._report("stderr", proc.record.machine, line)
                if proc.record.role == "bridge":
                    return 1
                delay = self._respawn_delay(key)
                if delay is not None:
                    respawn_at[key] = time.monotonic() + delay
                    nodes_left += 1
            if nodes_left == 0:
                codes = [p.poll() for p in self._processes.values() if p.record.role == "node"]
                return 0 if all(code == 0 for code in codes) else 1
        return 0

    def down(self) -> TeardownReport:
        """Stop nodes, then bridges, then release machines; forget the deployment."""
        with self._lifecycle:
            self._stopping = True
        if self._state is None:
            return TeardownReport(deployment=self.spec.name, exits=(), terminated_hosts=(), errors=())
        self._save(status="stopping")
        self._report("teardown", ROBOT, f"stopping deployment {self.spec.name}")
        exits = []
        for role in ("node", "bridge"):
            procs = [p for p in self._processes.values() if p.record.role == role]
            exits += _stop_all(procs, self._nodes, grace=self._grace)
        report = _release_hosts(self.state, self._provider, exits, self._report)
        self.store.remove(self.spec.name)
        self._report("down", ROBOT, f"deployment {self.spec.name} is down")
        return report

    # -- steps -----------------------------------------------------------------------------------

    def _provision(self, machine_name: str) -> None:
        machine = self.spec.machine(machine_name)
        provider = self._provider(machine.provider)
        self._report("requesting", machine.name, f"a {machine.provider} machine")
        # Local machines take ROS domains from a shared range: allocate them under the store's
        # lock. Remote machines have their own graphs, and may take minutes to create.
        lock = contextlib.nullcontext() if provider.capabilities.remote else self.store.locked()
        with lock:
            ctx = ProvisionContext(
                deployment=self.spec.name,
                state_dir=self.state_dir,
                used_domain_ids=self.store.used_domain_ids() | {self._robot_domain_id},
                progress=lambda stage, message: self._report(stage, machine.name, message),
                workspace=workspace_for(self.spec, machine.name) if provider.capabilities.remote else None,
                nodes=self.spec.nodes_on(machine.name),
            )
            host = provider.create(machine, ctx)
            # Recorded before anything else can fail, so `down` always finds what was created.
            self._save(hosts=(*self.state.hosts, host))
        provider.prepare(host, ctx)
        self._report("ready", machine.name, f"at {host.address}, bridge port {host.bridge_port}")

    def _start_bridges(self, plan: Plan) -> None:
        from fogros_dist.ros.node_names import bridge_node_name, full_node_name

        self._save(status="starting")
        # A remote machine's stats file is written on that machine, out of the robot's sight. The
        # robot bridge is only ready once every machine bridge's readiness token has reached it, so
        # its file stands for theirs (None below); meanwhile they are watched for an early exit.
        waiting: list[tuple[RunningProcess, Path | None]] = []
        connect = []
        for machine_plan in plan.machines:
            host = self._host(machine_plan.machine)
            provider = self._provider(host.provider)
            local_bind = "127.0.0.1" if host.address == "127.0.0.1" else "0.0.0.0"
            run_spec = BridgeRunSpec(
                deployment=self.spec.name,
                side="machine",
                machine=host.machine,
                listen=(f"{self.spec.bridge.protocol}/{local_bind}:{host.bridge_port}",),
                outbound=machine_plan.outbound,
                inbound=machine_plan.inbound,
                bridge=self.spec.bridge,
                distro=self.spec.distro,
                domain_id=int(dict(host.env).get("ROS_DOMAIN_ID", "0")),
                stats_path=str(Path(host.workdir) / "bridge-stats.json"),
                node_name=bridge_node_name(self.spec.name, machine=host.machine),
            )
            local_spec = self.state_dir / f"bridge-{host.machine}.json"
            local_spec.write_text(to_json(run_spec))
            remote_spec = provider.upload(host, local_spec, "bridge.json")
            proc = self._start(
                host, ProcessSpec(role="bridge", name="bridge", argv=provider.bridge_argv(host, remote_spec))
            )
            waiting.append((proc, None if provider.capabilities.remote else Path(run_spec.stats_path)))
            connect.append(f"{self.spec.bridge.protocol}/{host.address}:{host.bridge_port}")
        # On the robot's graph each offloaded node appears under its own name (plan checked it),
        # owning the robot-side endpoints of its topics: it publishes its topics_out there and
        # subscribes to its topics_in, so `ros2 node info` shows what the node really uses.
        proxies: list[str] = []
        publishers: dict[str, list[str]] = {t.name: [] for t in plan.robot_inbound}
        subscribers: dict[str, list[str]] = {t.name: [] for t in plan.robot_outbound}
        for node in self.spec.nodes:
            proxy = full_node_name(namespace=node.namespace, name=node.name)
            proxies.append(proxy)
            for topic in node.topics_out:
                publishers.get(topic.name, []).append(proxy)
            for topic in node.topics_in:
                subscribers.get(topic.name, []).append(proxy)
        robot_spec = BridgeRunSpec(
            deployment=self.spec.name,
            side="robot",
            machine=ROBOT,
            connect=tuple(connect),
            outbound=plan.robot_outbound,
            inbound=plan.robot_inbound,
            bridge=self.spec.bridge,
            distro=self.spec.distro,
            domain_id=self._robot_domain_id,
            stats_path=str(self.state_dir / "robot-bridge-stats.json"),
            node_name=bridge_node_name(self.spec.name),
            proxy_nodes=tuple(dict.fromkeys(proxies)),
            inbound_owners=tuple((name, tuple(nodes)) for name, nodes in publishers.items() if nodes),
            outbound_owners=tuple((name, tuple(nodes)) for name, nodes in subscribers.items() if nodes),
        )
        robot_spec_path = self.state_dir / "bridge-robot.json"
        robot_spec_path.write_text(to_json(robot_spec))
        robot_env = dict(os.environ, ROS_DOMAIN_ID=str(self._robot_domain_id), PYTHONUNBUFFERED="1")
        robot_proc = LocalProcess.start(
            role="bridge",
            name="robot-bridge",
            machine=ROBOT,
            argv=(sys.executable, "-m", "fogros_dist.net.bridge_main", "--spec", str(robot_spec_path)),
            env=robot_env,
            cwd=self.state_dir,
            log_dir=self.state_dir / "logs",
        )
        self._adopt(robot_proc)
        waiting.append((robot_proc, Path(robot_spec.stats_path)))
        self._save(stats_paths=tuple((p.record.machine, str(path)) for p, path in waiting if path))
        remote = [proc for proc, path in waiting if path is None]
        for proc, ready_file in waiting:
            if ready_file is not None:
                self._wait_ready(proc, ready_file, remote)
        self._report("bridged", ROBOT, f"robot <-> {len(plan.machines)} machine(s) over Zenoh")

    def _start_node(self, node: NodeSpec) -> None:
        host = self._host(node.machine)
        provider = self._provider(host.provider)
        shipped = self._ship_files(host, provider, node)
        argv = (
            *provider.resolve_node(host, package=node.package, executable=node.executable),
            *node_arguments(node, shipped),
        )
        env = node_environment(node, str(Path(host.workdir) / files_dir(node)) if node.files else None)
        self._launch[_key(node.machine, node.process_name)] = (argv, env)
        self._run_node(host, node, argv, env)

    def _ship_files(self, host: Host, provider: Provider, node: NodeSpec) -> dict[str, str]:
        """Upload the node's files to ``files/<process name>/``; their paths there, by name."""
        shipped = {}
        for item in node.files:
            remote = provider.upload(host, Path(item.source), f"{files_dir(node)}/{item.name}")
            shipped[item.name] = str(remote)
        if node.files:
            self._report("shipped", node.machine, f"{len(node.files)} file(s) for node {node.name}")
        return shipped

    def _run_node(
        self, host: Host, node: NodeSpec, argv: tuple[str, ...], env: tuple[tuple[str, str], ...]
    ) -> None:
        if node.log_cmd:
            self._report("command", node.machine, " ".join(shlex.quote(word) for word in argv))
        label = node.process_name
        proc = self._provider(host.provider).start(
            host, ProcessSpec(role="node", name=label, argv=argv, env=env)
        )
        self._adopt(proc, sink=screen_sink(node, self._output) if self._output is not None else None)
        self._report("started", node.machine, f"node {_full_name(node)} ({node.package}/{node.executable})")

    def _respawn_delay(self, key: str) -> float | None:
        """Seconds until the exited node ``key`` starts again, or None if it does not."""
        node = self._nodes.get(key)
        if node is None or not node.respawn or self._stopping:
            return None
        done = self._respawns.get(key, 0)
        if 0 <= node.respawn_max_retries <= done:
            self._report(
                "gave-up", node.machine, f"node {_full_name(node)}: respawned {done} time(s) already"
            )
            return None
        limit = "always" if node.respawn_max_retries < 0 else f"{done + 1} of {node.respawn_max_retries}"
        self._report(
            "respawning", node.machine, f"node {_full_name(node)} in {node.respawn_delay:g} s ({limit})"
        )
        return node.respawn_delay

    def _respawn(self, key: str) -> bool:
        """Start the node ``key`` again unless stopping has begun; False if it did not start."""
        node = self._nodes[key]
        with self._lifecycle:
            if self._stopping:
                return False
            self._respawns[key] = self._respawns.get(key, 0) + 1
            argv, env = self._launch[key]
            try:
                self._run_node(self._host(node.machine), node, argv, env)
            except FogError as err:
                self._report("error", node.machine, f"node {_full_name(node)} did not respawn: {err}")
                return False
            return True

    # -- helpers ---------------------------------------------------------------------------------

    def _start(self, host: Host, spec: ProcessSpec) -> RunningProcess:
        proc = self._provider(host.provider).start(host, spec)
        self._adopt(proc)
        return proc

    def _adopt(self, proc: RunningProcess, *, sink: OutputSink | None = None) -> None:
        """Track ``proc`` (its record replaces that of the process it respawns) and follow its
        output to ``sink`` (default: the deployment's output, if any)."""
        record = proc.record
        self._processes[_key(record.machine, record.name)] = proc
        others = [r for r in self.state.processes if (r.machine, r.name) != (record.machine, record.name)]
        self._save(processes=(*others, record))
        follow_to = sink or self._output
        if follow_to is not None:
            proc.follow(follow_to)

    def _wait_ready(self, proc: RunningProcess, ready_file: Path, watched: list[RunningProcess]) -> None:
        deadline = time.monotonic() + BRIDGE_READY_TIMEOUT_S
        while not ready_file.exists():
            for candidate in (*watched, proc):
                code = candidate.poll()
                if code is None:
                    continue
                report = _exit_report(candidate, code)
                tail = "; ".join(report.stderr_tail[-3:]) or "no stderr"
                where = candidate.record.machine
                msg = f"bridge on machine {where!r} failed to start: {report.describe()}: {tail}"
                raise ProcessFailed(msg, exit_code=code, stderr_tail=report.stderr_tail)
            if time.monotonic() > deadline:
                msg = (
                    f"bridge on machine {proc.record.machine!r} was not ready after "
                    f"{BRIDGE_READY_TIMEOUT_S:.0f} s: see 'fogros-dist logs {self.spec.name}'"
                )
                raise DeploymentError(msg)
            time.sleep(0.05)

    def _host(self, machine: str) -> Host:
        host = self.state.host(machine)
        if host is None:
            msg = f"machine {machine!r} has not been provisioned"
            raise DeploymentError(msg)
        return host

    def _provider(self, name: str) -> Provider:
        if name not in self._providers:
            self._providers[name] = get_provider(name)
        return self._providers[name]

    def _save(self, **changes: object) -> None:
        self._state = self.store.save(dataclasses.replace(self.state, **changes))  # type: ignore[arg-type]

    def _report(self, stage: str, machine: str, message: str) -> None:
        self._reporter(
            Stage(stage=stage, machine=machine, message=message, elapsed=time.monotonic() - self._t0)
        )

    def _fail_and_teardown(self) -> None:
        error = sys.exc_info()[1]
        if self._state is None:
            return
        self._save(status="failed", error=str(error))
        try:
            self.down()
        except FogError as err:
            self._report("teardown", ROBOT, f"teardown after failure also failed: {err}")


def teardown_recorded(
    name: str,
    *,
    store: StateStore | None = None,
    reporter: Reporter | None = None,
    grace: float = DEFAULT_GRACE_S,
) -> TeardownReport:
    """Tear down a recorded deployment from any process (`fogros-dist down`).

    If its supervisor still runs, it is asked to stop (SIGTERM) and does the teardown itself;
    otherwise (it crashed, or was killed) every recorded process is stopped here and every host
    released through its provider.
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
        deadline = time.monotonic() + grace * 2 + 10
        while time.monotonic() < deadline and name in store.names():
            time.sleep(0.1)
        if name not in store.names():
            return TeardownReport(deployment=name, exits=(), terminated_hosts=(), errors=())
        report("teardown", ROBOT, "supervisor did not finish: stopping what it recorded")
        # Only the supervisor itself: its process group may be the caller's shell job or test runner.
        if process_alive(supervisor):
            os.kill(supervisor.pid, signal.SIGKILL)
        state = store.load(name)
    providers: dict[str, Provider] = {}

    def provider_for(provider_name: str) -> Provider:
        if provider_name not in providers:
            providers[provider_name] = get_provider(provider_name)
        return providers[provider_name]

    nodes = {_key(node.machine, node.process_name): node for node in state.spec.nodes}
    exits = []
    for role in ("node", "bridge"):
        procs: list[RunningProcess] = []
        for record in state.processes:
            if record.role != role:
                continue
            host = state.host(record.machine)
            procs.append(
                LocalProcess(record) if host is None else provider_for(host.provider).attach(host, record)
            )
        exits += _stop_all(procs, nodes, grace=grace)
    result = _release_hosts(state, provider_for, exits, report)
    store.remove(name)
    report("down", ROBOT, f"deployment {name} is down")
    return result


def _release_hosts(
    state: DeploymentState,
    provider_for: Callable[[str], Provider],
    exits: list[ExitReport],
    report: Callable[[str, str, str], None],
) -> TeardownReport:
    terminated = []
    errors = []
    for host in state.hosts:
        try:
            provider_for(host.provider).terminate(host)
            terminated.append(host.machine)
            report("released", host.machine, f"{host.provider} machine released")
        except FogError as err:
            errors.append(str(err))
            report("error", host.machine, str(err))
    return TeardownReport(
        deployment=state.spec.name,
        exits=tuple(exits),
        terminated_hosts=tuple(terminated),
        errors=tuple(errors),
    )


def _exit_report(proc: RunningProcess, code: int | None) -> ExitReport:
    record = proc.record
    return ExitReport(
        role=record.role,
        name=record.name,
        machine=record.machine,
        exit_code=code,
        stderr_tail=proc.stderr_tail(10) if code not in (0, None) else (),
    )


def _stop_all(
    procs: Sequence[RunningProcess], nodes: Mapping[str, NodeSpec], *, grace: float
) -> list[ExitReport]:
    """Stop ``procs`` at once (as launch signals every node together), each node with its own
    timeouts (SIGINT first), anything else with SIGTERM and ``grace``; their exit reports."""

    def stop(proc: RunningProcess) -> ExitReport:
        node = nodes.get(_key(proc.record.machine, proc.record.name))
        if node is None or proc.record.role != "node":
            return _exit_report(proc, proc.stop(grace=grace))
        code = proc.stop(grace=node.sigkill_timeout, sigint_grace=node.sigterm_timeout)
        return _exit_report(proc, code)

    if not procs:
        return []
    with ThreadPoolExecutor(max_workers=len(procs), thread_name_prefix="fog-stop") as pool:
        return list(pool.map(stop, procs))


def _key(machine: str, process_name: str) -> str:
    return f"{machine}/{process_name}"


def _full_name(node: NodeSpec) -> str:
    return f"{node.namespace}/{node.name}"


def _own_record() -> ProcessRecord:
    pid = os.getpid()
    return ProcessRecord(
        role="supervisor",
        name="supervisor",
        machine=ROBOT,
        pid=pid,
        pgid=os.getpgid(pid),
        start_ticks=start_ticks(pid),
        stdout_path="",
        stderr_path="",
        argv=tuple(sys.argv),
    )
