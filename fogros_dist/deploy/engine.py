"""The deployment engine: plan -> provision -> bridge -> start -> (supervise) -> teardown.

The record comes first and goes last: it is written before anything exists, each machine is
recorded as ``pending`` before its provider starts creating it and as a Host once it exists, and
every process as soon as it runs, so `down` can always undo a deployment, including one whose
supervisor was killed half-way through `up`. Whatever stops it (Ctrl-C, SIGTERM, `down`, a
failure) goes through the one teardown (:mod:`fogros_dist.deploy.teardown`). ``cancel()`` makes
any stage of `up` give up within about a second. The engine is plain Python: the CLI and the
launch adapters drive it and only render its progress.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fogros_dist.deploy.node_command import files_dir, node_arguments, node_environment, screen_sink
from fogros_dist.deploy.plan import ROBOT, Plan, bridged_services, bridged_topics, make_plan
from fogros_dist.deploy.stages import Reporter, Stage
from fogros_dist.deploy.state import DeploymentState, StateStore
from fogros_dist.deploy.teardown import (
    ExitReport,
    TeardownReport,
    exit_report,
    process_key,
    teardown,
    teardown_recorded,
)
from fogros_dist.deploy.workspace import workspace_for
from fogros_dist.errors import Cancelled, DeploymentError, FogError, ProcessFailed
from fogros_dist.providers.base import OutputSink, ProcessSpec, Provider, ProvisionContext, RunningProcess
from fogros_dist.providers.local.process import LocalProcess, start_ticks
from fogros_dist.registry import get_provider
from fogros_dist.spec import BridgeRunSpec, BridgeSpec, DeploymentSpec, Host, NodeSpec, ProcessRecord, to_json

if TYPE_CHECKING:
    from fogros_dist.net.zenoh_config import MachineLink

__all__ = ["ROBOT", "Deployment", "ExitReport", "Stage", "TeardownReport", "teardown_recorded"]

# How long a bridge may take from start to "ready" before `up` gives up on it.
BRIDGE_READY_TIMEOUT_S = 30.0
DEFAULT_GRACE_S = 5.0
# A bridge that dies is started again after these delays (seconds), then the deployment fails.
BRIDGE_RESTART_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0)


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
        self._nodes = {process_key(node.machine, node.process_name): node for node in spec.nodes}
        # What each node needs to start again (respawn): its argv and environment on the machine.
        self._launch: dict[str, tuple[tuple[str, ...], tuple[tuple[str, str], ...]]] = {}
        self._respawns: dict[str, int] = {}
        # Held while a node (re)starts and when stopping begins, so no respawn outlives `down`.
        self._lifecycle = threading.Lock()
        self._stopping = False
        # Set by cancel(): every stage of `up` gives up within about a second.
        self._cancel = threading.Event()
        # What the providers watch while machines are created: set by cancel(), and by the first
        # machine that fails while others are being provisioned in parallel.
        self._stop_provisioning = threading.Event()
        # Machines provisioned in parallel update the record (pending, hosts) one at a time.
        self._state_lock = threading.RLock()
        self._report_lock = threading.Lock()
        # Why the deployment failed ("" while it has not): the record keeps it after teardown.
        self._failure = ""
        self._bridge_restarts: dict[str, int] = {}

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
        """Plan, record, provision, start bridges and nodes; return the running state.

        Raises:
            ConfigError: the spec is invalid (nothing is recorded or created).
            DeploymentError: the name is recorded by a live deployment (which is left alone).
            Cancelled: :meth:`cancel` was called; what had been created is torn down and the
                record removed.
            FogError: a step failed; what had been created is torn down and the record stays,
                ``failed``, with the reason, until `down` or the next `up` of the name.
        """
        self._t0 = time.monotonic()
        plan = make_plan(self.spec)
        self._report(
            "planned",
            ROBOT,
            f"deployment {self.spec.name}: {len(plan.machines)} machine(s), {len(self.spec.nodes)} node(s)",
        )
        self._plan = plan
        state = DeploymentState(
            spec=self.spec,
            status="provisioning",
            created_at=time.time(),
            updated_at=time.time(),
            robot_domain_id=self._robot_domain_id,
            supervisor=_own_record(),
        )
        with self.store.locked():
            # Refused when the name is taken: then nothing of the other deployment is touched,
            # and this one has no state, so its teardown does nothing.
            self.store.create(state)
        self._state = self.store.load(self.spec.name)
        try:
            self._provision_all()
            self._check_cancelled("starting the bridges")
            self._start_bridges(plan)
            for node in self.spec.nodes:
                self._check_cancelled("starting the nodes")
                self._start_node(node)
            self._save(status="running")
        except BaseException as err:
            self._fail_and_teardown(err)
            raise
        self._report("running", ROBOT, f"deployment {self.spec.name} is up")
        return self.state

    def cancel(self) -> None:
        """Make `up` give up at its next check (every stage checks at least every second); the
        caller then tears down with :meth:`down`, as after any failure. Safe from signal handlers
        and other threads."""
        self._cancel.set()
        self._stop_provisioning.set()

    def wait(self, stop: threading.Event) -> int:
        """Supervise until every node has exited for good, the deployment fails, or ``stop`` is set.

        The failure policy: a node with ``respawn`` starts again ``respawn_delay`` seconds after it
        exits, however it exited (as launch does), at most ``respawn_max_retries`` times (-1:
        always), never once ``stop`` is set or ``down`` has begun; a node without it that exits
        non-zero fails the deployment; a bridge that exits starts again after each of
        BRIDGE_RESTART_DELAYS_S, then fails the deployment. Meanwhile the record says
        ``degraded``; every exit is recorded and reported with its code and stderr tail. A failed
        deployment keeps its reason for :meth:`down`, which keeps the record.

        Returns:
            0 if stopped on request or every node exited cleanly, else 1.
        """
        reported: set[str] = set()
        restart_at: dict[str, float] = {}
        while not stop.wait(0.2):
            for key, when in list(restart_at.items()):
                if time.monotonic() >= when and not stop.is_set():
                    del restart_at[key]
                    started = self._restart_bridge(key) if key in self._bridge_keys() else self._respawn(key)
                    if started:
                        reported.discard(key)
                    elif self._failure:
                        return 1
                    if not restart_at:
                        self._save(status="running")
            nodes_left = sum(1 for key in restart_at if key not in self._bridge_keys())
            for key, proc in list(self._processes.items()):
                code = proc.poll()
                if code is None:
                    nodes_left += proc.record.role == "node"
                    continue
                if key in reported:
                    continue
                reported.add(key)
                report = exit_report(proc, code)
                self._record_exit(report)
                self._report("exited", proc.record.machine, report.describe())
                for line in report.stderr_tail if code != 0 else ():
                    self._report("stderr", proc.record.machine, line)
                delay = (
                    self._bridge_restart_delay(key)
                    if proc.record.role == "bridge"
                    else self._respawn_delay(key)
                )
                if delay is not None:
                    restart_at[key] = time.monotonic() + delay
                    nodes_left += proc.record.role == "node"
                    self._save(status="degraded")
                    continue
                if proc.record.role == "bridge" or code != 0:
                    self._failure = _failure_reason(report)
                    self._report("failed", proc.record.machine, self._failure)
                    return 1
            if nodes_left == 0 and not restart_at:
                return 0
        return 0

    def restart_node(self, key: str) -> bool:
        """Start the exited node ``key`` (``<machine>/<process name>``) again, as a respawn does,
        for callers that supervise the nodes themselves; False if stopping has begun or it did not
        start (reported)."""
        return self._respawn(key)

    def node_exit_codes(self) -> dict[str, int | None]:
        """Each node process's exit code (None while it runs), by ``<machine>/<process name>``:
        for callers that supervise the nodes themselves (fleet training) instead of :meth:`wait`."""
        return {key: proc.poll() for key, proc in self._processes.items() if proc.record.role == "node"}

    def node_unreachable(self, key: str) -> str | None:
        """Why the last check of node process ``key`` could not reach its machine (None: it could):
        a supervisor need not wait for a process it cannot hear from."""
        return self._processes[key].unreachable

    def provider_of(self, machine: str) -> tuple[Host, Provider]:
        """The Host of ``machine`` and its provider, once provisioned (e.g. to upload a file)."""
        host = self._host(machine)
        return host, self._provider(host.provider)

    def record_host_env(self, machine: str, key: str, value: str) -> None:
        """Record ``key=value`` in ``machine``'s Host (``""``: remove it), so that whatever tears
        the deployment down, this supervisor or a later `down` after it died, sees it. For what a
        layer above the engine sets up on a host and its provider must undo (a fleet's mesh)."""
        with self._state_lock:
            host = self._host(machine)
            env = tuple((k, v) for k, v in host.env if k != key) + (((key, value),) if value else ())
            hosts = tuple(
                dataclasses.replace(h, env=env) if h.machine == machine else h for h in self.state.hosts
            )
            self._save(hosts=hosts)

    def down(self) -> TeardownReport:
        """Stop nodes, then bridges, then release machines (those under way too); forget the
        deployment, or keep it ``failed`` with its reason (see :mod:`~fogros_dist.deploy.teardown`).
        Idempotent."""
        with self._lifecycle:
            self._stopping = True
        if self._state is None:
            return TeardownReport(deployment=self.spec.name, exits=(), terminated_hosts=(), errors=())
        if self.spec.name not in self.store.names():
            # Already torn down (a second call, or `down` from another process finished it).
            return TeardownReport(deployment=self.spec.name, exits=(), terminated_hosts=(), errors=())
        return teardown(
            self.store.load(self.spec.name),
            store=self.store,
            provider_for=self._provider,
            report=self._report,
            grace=self._grace,
            handles=self._processes,
            failure=self._failure,
        )

    # -- steps -----------------------------------------------------------------------------------

    def _provision_all(self) -> None:
        """Every machine: Local ones first, one at a time (they share the store's lock and take
        a second); remote ones in parallel threads, since each waits minutes on its own cloud or
        SSH host (a fleet's runtime installs then overlap instead of adding up). The first
        failure stops the others at their next cancel check; it is what `up` raises."""
        remote: list[str] = []
        for machine in self.spec.machines:
            if self._provider(machine.provider).capabilities.remote:
                remote.append(machine.name)
                continue
            self._check_cancelled("provisioning")
            self._provision(machine.name)
        if len(remote) <= 1:
            for name in remote:
                self._check_cancelled("provisioning")
                self._provision(name)
            return
        self._check_cancelled("provisioning")
        errors: dict[str, BaseException] = {}

        def provision(name: str) -> None:
            try:
                self._provision(name)
            except BaseException as err:  # handed to the main thread below
                with self._state_lock:
                    errors.setdefault(name, err)
                self._stop_provisioning.set()

        threads = [
            threading.Thread(target=provision, args=(name,), name=f"provision-{name}", daemon=True)
            for name in remote
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
        except BaseException:
            # Ctrl-C (or SIGTERM) reaches this thread only: stop the others, wait for them, so
            # that every machine they created is recorded before the teardown runs.
            self._stop_provisioning.set()
            for thread in threads:
                thread.join()
            raise
        # Spec order, whatever order the machines came up in.
        order = {machine.name: i for i, machine in enumerate(self.spec.machines)}
        with self._state_lock:
            self._save(hosts=tuple(sorted(self.state.hosts, key=lambda h: order.get(h.machine, len(order)))))
        failed = [errors[name] for name in remote if name in errors]
        if not failed:
            return
        # A machine stopped because another failed says only that: raise the failure itself.
        first = next((err for err in failed if not isinstance(err, Cancelled)), failed[0])
        raise first

    def _provision(self, machine_name: str) -> None:
        machine = self.spec.machine(machine_name)
        provider = self._provider(machine.provider)
        self._report("requesting", machine.name, f"a {machine.provider} machine")
        # Local machines take ROS domains from a shared range: allocate them under the store's
        # lock. Remote machines have their own graphs, and may take minutes to create.
        lock = contextlib.nullcontext() if provider.capabilities.remote else self.store.locked()
        # Recorded before the provider creates anything: if this process dies now, `down` asks
        # the provider to reclaim what it finds by the deployment's tags.
        with self._state_lock:
            self._save(pending=(*self.state.pending, machine.name))
        with lock:
            ctx = ProvisionContext(
                deployment=self.spec.name,
                state_dir=self.state_dir,
                used_domain_ids=self.store.used_domain_ids() | {self._robot_domain_id},
                progress=lambda stage, message: self._report(stage, machine.name, message),
                workspace=workspace_for(self.spec, machine.name) if provider.capabilities.remote else None,
                nodes=self.spec.nodes_on(machine.name),
                cancel=self._stop_provisioning,
                created_at=self.state.created_at,
            )
            host = provider.create(machine, ctx)
            # Recorded before anything else can fail, so `down` always finds what was created.
            with self._state_lock:
                pending = tuple(m for m in self.state.pending if m != machine.name)
                self._save(hosts=(*self.state.hosts, host), pending=pending)
        self._check_cancelled(f"preparing machine {machine.name!r}")
        provider.prepare(host, ctx)
        self._report("ready", machine.name, f"at {host.address}, bridge port {host.bridge_port}")

    def _bridge_links(self, plan: Plan) -> tuple[dict[str, tuple[MachineLink, BridgeSpec]], BridgeSpec]:
        """Each machine's link and bridge settings, and the robot bridge's settings.

        A link is mTLS unless it is a Local machine's on loopback or ``protocol = "tcp"`` was
        asked for (net/zenoh_config.py ``machine_link``); a machine bridge listens only on the
        address the robot reaches (behind NAT, the host's end of its SSH connection). Where any
        link runs mTLS, the deployment's own CA is made here (its key is never written) and
        issues the robot's credentials (``<state dir>/tls/robot/``) and each machine's
        (``<state dir>/tls/machines/<m>/``, 0700, keys 0600), which go to a remote machine over
        its verified SSH channel into ``<workdir>/tls/``; a Local machine's bridge reads them
        where they are. A plaintext link that leaves loopback is reported as a warning.
        """
        from fogros_dist.net.tls import CA_FILE, CERT_FILE, KEY_FILE, DeploymentAuthority, private_dir
        from fogros_dist.net.zenoh_config import machine_link

        links: dict[str, MachineLink] = {}
        for machine_plan in plan.machines:
            host = self._host(machine_plan.machine)
            remote = self._provider(host.provider).capabilities.remote
            link = machine_link(
                protocol=self.spec.bridge.protocol,
                address=host.address,
                port=host.bridge_port,
                # The SSH layer records the host's end of its connection (remote/machine.py).
                listen_address=dict(host.env).get("FOGROS_SSH_SERVER_ADDRESS", ""),
                remote=remote,
            )
            links[host.machine] = link
            if not link.secure and (remote or link.exposed):
                self._report(
                    "warning",
                    host.machine,
                    f"bridge link is plaintext TCP (protocol 'tcp'): anyone who reaches {link.listen} "
                    f"on {host.machine} can read and inject its topics; leave protocol unset for mTLS",
                )
        plain = dataclasses.replace(self.spec.bridge, tls_dir="")
        settings = {machine: (link, plain) for machine, link in links.items()}
        if not any(link.secure for link in links.values()):
            return settings, plain
        tls_root = private_dir(self.state_dir / "tls")
        authority = DeploymentAuthority(deployment=self.spec.name)
        robot = authority.issue(tls_root / "robot", name=ROBOT)
        for machine, link in links.items():
            if not link.secure:
                continue
            host = self._host(machine)
            provider = self._provider(host.provider)
            issued = authority.issue(tls_root / "machines" / machine, name=machine, addresses=link.names)
            tls_dir = issued.directory
            if provider.capabilities.remote:
                for name in (KEY_FILE, CERT_FILE, CA_FILE):
                    tls_dir = provider.upload(host, issued.directory / name, f"tls/{name}").parent
            settings[machine] = (link, dataclasses.replace(plain, tls_dir=str(tls_dir)))
        return settings, dataclasses.replace(plain, tls_dir=str(robot.directory))

    def _start_bridges(self, plan: Plan) -> None:
        from fogros_dist.ros.node_names import bridge_node_name, full_node_name

        self._save(status="starting")
        # A remote machine's stats file is written on that machine, out of the robot's sight. The
        # robot bridge is only ready once every machine bridge's readiness token has reached it, so
        # its file stands for theirs (None below); meanwhile they are watched for an early exit.
        waiting: list[tuple[RunningProcess, Path | None]] = []
        connect = []
        links, robot_bridge = self._bridge_links(plan)
        for machine_plan in plan.machines:
            host = self._host(machine_plan.machine)
            provider = self._provider(host.provider)
            link, machine_bridge = links[host.machine]
            run_spec = BridgeRunSpec(
                deployment=self.spec.name,
                side="machine",
                machine=host.machine,
                listen=(link.listen,),
                outbound=machine_plan.outbound,
                inbound=machine_plan.inbound,
                bridge=machine_bridge,
                distro=self.spec.distro,
                domain_id=int(dict(host.env).get("ROS_DOMAIN_ID", "0")),
                stats_path=str(Path(host.workdir) / "bridge-stats.json"),
                node_name=bridge_node_name(self.spec.name, machine=host.machine),
                interfaces=plan.spec.interfaces,
                # Its nodes' servers answer the robot's calls; the robot's serve its nodes' calls.
                local_services=machine_plan.services,
                remote_services=machine_plan.robot_services,
                service_machines=tuple((s.name, ROBOT) for s in machine_plan.robot_services),
            )
            local_spec = self.state_dir / f"bridge-{host.machine}.json"
            local_spec.write_text(to_json(run_spec))
            remote_spec = provider.upload(host, local_spec, "bridge.json")
            proc = self._start(
                host,
                ProcessSpec(
                    role="bridge",
                    name="bridge",
                    argv=provider.bridge_argv(host, remote_spec),
                    log_max_bytes=self.spec.log_max_bytes,
                ),
            )
            waiting.append((proc, None if provider.capabilities.remote else Path(run_spec.stats_path)))
            connect.append(link.connect)
        # On the robot's graph each offloaded node appears under its own name (plan checked it),
        # owning the robot-side endpoints of its topics: it publishes its topics_out there and
        # subscribes to its topics_in, so `ros2 node info` shows what the node really uses.
        proxies: list[str] = []
        publishers: dict[str, list[str]] = {t.name: [] for t in plan.robot_inbound}
        subscribers: dict[str, list[str]] = {t.name: [] for t in plan.robot_outbound}
        # Each service a node serves is served on the robot by that node's stand-in, so `ros2
        # node info` and `ros2 param` find it there.
        servers: dict[str, list[str]] = {s.name: [] for s in plan.robot_remote_services}
        for node in self.spec.nodes:
            proxy = full_node_name(namespace=node.namespace, name=node.name)
            proxies.append(proxy)
            topics_in, topics_out = bridged_topics(node)
            for topic in topics_out:
                publishers.get(topic.name, []).append(proxy)
            for topic in topics_in:
                subscribers.get(topic.name, []).append(proxy)
            for service in bridged_services(node)[0]:
                servers.get(service.name, []).append(proxy)
        robot_spec = BridgeRunSpec(
            deployment=self.spec.name,
            side="robot",
            machine=ROBOT,
            connect=tuple(connect),
            outbound=plan.robot_outbound,
            inbound=plan.robot_inbound,
            bridge=robot_bridge,
            distro=self.spec.distro,
            domain_id=self._robot_domain_id,
            stats_path=str(self.state_dir / "robot-bridge-stats.json"),
            node_name=bridge_node_name(self.spec.name),
            interfaces=plan.spec.interfaces,
            proxy_nodes=tuple(dict.fromkeys(proxies)),
            inbound_owners=tuple((name, tuple(nodes)) for name, nodes in publishers.items() if nodes),
            outbound_owners=tuple((name, tuple(nodes)) for name, nodes in subscribers.items() if nodes),
            remote_services=plan.robot_remote_services,
            local_services=plan.robot_local_services,
            service_owners=tuple((name, tuple(nodes)) for name, nodes in servers.items() if nodes),
            service_machines=tuple((s.name, m.machine) for m in plan.machines for s in m.services),
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
            log_max_bytes=self.spec.log_max_bytes,
        )
        self._adopt(robot_proc)
        waiting.append((robot_proc, Path(robot_spec.stats_path)))
        self._save(stats_paths=tuple((p.record.machine, str(path)) for p, path in waiting if path))
        remote = [proc for proc, path in waiting if path is None]
        for proc, ready_file in waiting:
            if ready_file is not None:
                self._wait_ready(proc, ready_file, remote)
        kinds = sorted({"mTLS" if link.secure else "plain TCP" for link, _ in links.values()})
        self._report(
            "bridged", ROBOT, f"robot <-> {len(plan.machines)} machine(s) over Zenoh ({', '.join(kinds)})"
        )

    def _start_node(self, node: NodeSpec) -> None:
        host = self._host(node.machine)
        provider = self._provider(host.provider)
        shipped = self._ship_files(host, provider, node)
        argv = (
            *provider.resolve_node(host, package=node.package, executable=node.executable),
            *node_arguments(node, shipped),
        )
        env = node_environment(node, str(Path(host.workdir) / files_dir(node)) if node.files else None)
        self._launch[process_key(node.machine, node.process_name)] = (argv, env)
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
            host,
            ProcessSpec(role="node", name=label, argv=argv, env=env, log_max_bytes=self.spec.log_max_bytes),
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

    def _bridge_keys(self) -> set[str]:
        return {key for key, proc in self._processes.items() if proc.record.role == "bridge"}

    def _bridge_restart_delay(self, key: str) -> float | None:
        """Seconds until the exited bridge ``key`` starts again, or None when it has used up its
        restarts (or stopping has begun)."""
        done = self._bridge_restarts.get(key, 0)
        if self._stopping or done >= len(BRIDGE_RESTART_DELAYS_S):
            return None
        delay = BRIDGE_RESTART_DELAYS_S[done]
        machine = key.split("/", 1)[0]
        self._report(
            "restarting", machine, f"bridge in {delay:g} s ({done + 1} of {len(BRIDGE_RESTART_DELAYS_S)})"
        )
        return delay

    def _restart_bridge(self, key: str) -> bool:
        """Start the bridge ``key`` again with the command it had; False if it did not start."""
        old = self._processes[key].record
        with self._lifecycle:
            if self._stopping:
                return False
            self._bridge_restarts[key] = self._bridge_restarts.get(key, 0) + 1
            try:
                if old.machine == ROBOT:
                    proc: RunningProcess = LocalProcess.start(
                        role="bridge",
                        name=old.name,
                        machine=ROBOT,
                        argv=old.argv,
                        env=dict(os.environ, ROS_DOMAIN_ID=str(self._robot_domain_id), PYTHONUNBUFFERED="1"),
                        cwd=self.state_dir,
                        log_dir=self.state_dir / "logs",
                        log_max_bytes=self.spec.log_max_bytes,
                    )
                else:
                    host = self._host(old.machine)
                    spec = ProcessSpec(
                        role="bridge", name=old.name, argv=old.argv, log_max_bytes=self.spec.log_max_bytes
                    )
                    proc = self._provider(host.provider).start(host, spec)
            except FogError as err:
                self._failure = f"bridge on machine {old.machine!r} could not be restarted: {err}"
                self._report("failed", old.machine, self._failure)
                return False
            self._adopt(proc)
        self._report("restarted", old.machine, "bridge")
        return True

    def _record_exit(self, report: ExitReport) -> None:
        """The exit goes into the record; the dead process's record goes (a respawn adds its own)."""
        gone = (report.machine, report.name)
        self._save(
            exits=(*self.state.exits, report.record()),
            processes=tuple(r for r in self.state.processes if (r.machine, r.name) != gone),
        )

    # -- helpers ---------------------------------------------------------------------------------

    def _start(self, host: Host, spec: ProcessSpec) -> RunningProcess:
        proc = self._provider(host.provider).start(host, spec)
        self._adopt(proc)
        return proc

    def _adopt(self, proc: RunningProcess, *, sink: OutputSink | None = None) -> None:
        """Track ``proc`` (its record replaces that of the process it respawns) and follow its
        output to ``sink`` (default: the deployment's output, if any)."""
        record = proc.record
        self._processes[process_key(record.machine, record.name)] = proc
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
                report = exit_report(candidate, code)
                tail = "; ".join(report.stderr_tail[-3:]) or "no stderr"
                where = candidate.record.machine
                msg = f"bridge on machine {where!r} failed to start: {report.describe()}: {tail}"
                raise ProcessFailed(msg, exit_code=code, stderr_tail=report.stderr_tail)
            self._check_cancelled("waiting for the bridges")
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
        with self._state_lock:
            self._state = self.store.save(dataclasses.replace(self.state, **changes))  # type: ignore[arg-type]

    def _report(self, stage: str, machine: str, message: str) -> None:
        event = Stage(stage=stage, machine=machine, message=message, elapsed=time.monotonic() - self._t0)
        # One reporter call at a time: machines provisioned in parallel report from their threads.
        with self._report_lock:
            self._reporter(event)

    def _fail_and_teardown(self, error: BaseException) -> None:
        if self._state is None:
            return
        # A stop the user asked for is not a failure: its record goes with the teardown.
        stopped = isinstance(error, Cancelled | KeyboardInterrupt)
        self._failure = "" if stopped else str(error) or type(error).__name__
        if self._failure:
            self._save(error=self._failure)
        self.down()

    def _check_cancelled(self, what: str) -> None:
        if self._cancel.is_set():
            msg = f"deployment {self.spec.name!r}: stopped on request while {what}"
            raise Cancelled(msg)
        if self._stop_provisioning.is_set():
            msg = f"deployment {self.spec.name!r}: stopped while {what}, since another machine failed"
            raise Cancelled(msg)


def _failure_reason(report: ExitReport) -> str:
    """Why a process's exit failed the deployment, in one line (with its last stderr line)."""
    last = next((line.strip() for line in reversed(report.stderr_tail) if line.strip()), "")
    return report.describe() + (f": {last}" if last else "")


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
