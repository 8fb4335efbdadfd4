"""The provider verbs for any machine reachable over SSH, driven from a Host record alone.

A provider that can hand over an :class:`~fogros_dist.remote.target.SSHTarget` (SSHHost: from
its options; AWS: once the instance runs) gets everything after that from here: ``establish``
(ssh-ready, probe, workdir, DDS config), ``prepare`` (runtime venv + workspace push, overlapped),
``resolve_node``, ``bridge_argv``, ``upload``, ``start``, ``attach`` and ``terminate``.

Everything needed to find the machine again is in the Host: connection details in ``Host.env``
under ``FOGROS_SSH_*`` keys (never passed to processes), the rest of ``Host.env`` is the
environment of the processes started there. So ``attach`` works from any process on the robot.

Cancellation: ``establish`` and ``prepare`` take the deployment's ``cancel`` event (keyword, None:
never) and every wait under them honours it within ~1 s (SSH wait, probe, runtime push and
install, workspace push and build), stopping what they started on the host. The event given to
``prepare`` (else ``establish``) is remembered per host, because the Provider verbs that follow
(``resolve_node``, ``start``) carry no context: they, and ``wait_synced``, give up on it too.
``terminate``, ``attach`` and the processes' handles never look at it: teardown follows a cancel.

Layout on the host (``remote_dir``, default ``~/.fogros_dist``)::

    bin/host_agent-<hash>.py           the agent (standard library only; one server per connection)
    wheels/                            pushed wheels (shared by venvs; never deleted by a push)
    venvs/<key>/                       runtime venvs, stamped with what they were built from
    deployments/<name>/<machine>/      Host.workdir: cyclonedds.xml, bridge.json, bridge stats
        logs/<process>.out|.err        output (kept until the deployment starts again)
        run/<process>.json|.exit       PID record and exit code
        workspace/                     the pushed workspace
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from fogros_dist.errors import ConfigError, MissingExecutable, ProvisionError
from fogros_dist.remote.agent import HostAgent, HostFacts, describe_gpus, gpus_to_json
from fogros_dist.remote.bootstrap import plan_runtime, start_install
from fogros_dist.remote.cancel import CHECK_EVERY_S, AnyOf, CancelEvent, cancelled, raise_if_cancelled
from fogros_dist.remote.process import RemoteProcess
from fogros_dist.remote.runner import RetryPolicy, SSHRunner
from fogros_dist.remote.sync import SyncMethod, SyncStats, human_bytes, push_directory
from fogros_dist.remote.target import SSHTarget, jumps_from_json, jumps_to_json
from fogros_dist.remote.wheelhouse import default_cache_dir
from fogros_dist.remote.workspace_build import WorkspaceBuild, workspace_dir
from fogros_dist.spec import Host, ProcessRecord
from fogros_dist.workspace.selection import WorkspaceSelection

__all__ = ["ENV_PREFIX", "RemoteMachines", "RemoteSettings", "target_from_host"]

ENV_PREFIX = "FOGROS_SSH_"
Progress = Callable[[str, str], None]


@dataclass(frozen=True, kw_only=True)
class RemoteSettings:
    """How to use a host once connected (the provider's options, parsed)."""

    remote_dir: str = "~/.fogros_dist"
    python: str = "python3"
    ros_setup: str = "auto"
    bridge_port: int = 0
    torch: bool = False
    sync: SyncMethod = "auto"


class RemoteMachines:
    """The SSH machines of one provider instance, with one shared connection per host."""

    def __init__(
        self, *, provider: str, retry: RetryPolicy | None = None, cache_dir: Path | None = None
    ) -> None:
        self._provider = provider
        self._retry = retry
        self._cache_dir = cache_dir
        self._lock = threading.Lock()
        self._agents: dict[str, HostAgent] = {}
        self._facts: dict[str, HostFacts] = {}
        self._pushes: dict[str, _Push] = {}
        # Each host's deployment cancel event, for the verbs that are given none.
        self._cancels: dict[str, CancelEvent] = {}

    # -- provision -------------------------------------------------------------------------------

    def establish(
        self,
        target: SSHTarget,
        settings: RemoteSettings,
        *,
        deployment: str,
        domain_id: int,
        progress: Progress,
        workspace: WorkspaceSelection | None = None,
        cancel: CancelEvent | None = None,
    ) -> Host:
        """Connect (stage ``ssh-ready``; ``waiting`` lines while attempts fail), probe the host,
        reset the deployment's workdir there, write its DDS config; return the Host.

        Args:
            cancel: the deployment's cancel event (None: never cancelled).

        Raises:
            ProvisionError: the host cannot be reached or lacks what fogros_dist needs (one line
                naming the machine and the fix).
            Cancelled: ``cancel`` was set first (the connection is closed again).
        """
        runner = SSHRunner(target, retry=self._retry)
        try:
            return self._establish(
                runner,
                settings,
                deployment=deployment,
                domain_id=domain_id,
                progress=progress,
                workspace=workspace,
                cancel=cancel,
            )
        except BaseException:
            # No Host yet, so no terminate will come: the connection (and the agent's session
            # on it) ends here.
            runner.close()
            raise

    def _establish(
        self,
        runner: SSHRunner,
        settings: RemoteSettings,
        *,
        deployment: str,
        domain_id: int,
        progress: Progress,
        workspace: WorkspaceSelection | None,
        cancel: CancelEvent | None,
    ) -> Host:
        target = runner.target
        runner.connect(cancel=cancel, progress=progress)
        trusted = f"; recorded new host key {runner.recorded_key.describe()}" if runner.recorded_key else ""
        trusted += "".join(
            f"; recorded new key of jump host {jump.where}: {key.describe()}"
            for jump, key in runner.recorded_jump_keys
        )
        progress("ssh-ready", f"{target.route}{trusted}")
        agent = HostAgent(runner, python=settings.python, remote_dir=settings.remote_dir)
        facts = agent.probe(
            workdir=f"deployments/{deployment}/{target.machine}",
            ros_setup=settings.ros_setup,
            bridge_port=settings.bridge_port,
            cancel=cancel,
        )
        _check_ros(target, facts)
        from fogros_dist.ros.cyclone_config import loopback_config

        workdir = PurePosixPath(facts.workdir)
        raise_if_cancelled(cancel, machine=target.machine, doing="writing the DDS config")
        with agent.runner.sftp(cancel=cancel).open(str(workdir / "cyclonedds.xml"), "wb") as handle:
            # Each host is its own ROS graph: DDS stays on its loopback, the bridge is the way out.
            handle.write(loopback_config(domain_id).encode())
        plan = plan_runtime(facts, torch=settings.torch, cache_dir=self.cache_dir)
        process_env = {
            "ROS_DOMAIN_ID": str(domain_id),
            "CYCLONEDDS_URI": f"file://{workdir / 'cyclonedds.xml'}",
            "RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp",
            "FOGROS_DIST_PYTHON": plan.python,
        }
        overlay = workspace_dir(facts.remote_dir, workspace) if workspace is not None else ""
        if overlay:
            # Where the node's own packages are built and installed on the host.
            process_env["FOGROS_DIST_WORKSPACE"] = overlay
        connection = {
            "ALIAS": target.alias,
            "HOSTNAME": target.hostname,
            "PORT": str(target.port),
            "USER": target.user,
            "IDENTITY": target.identity_file,
            "KNOWN_HOSTS": target.known_hosts,
            # The jump hosts, so that every later connection (attach, down) takes the same route.
            "JUMPS": jumps_to_json(target.jumps),
            # What the probe saw, for `list` (JSON: name, memory, driver per GPU).
            "GPUS": gpus_to_json(facts.gpus),
            # The host's address on this connection: the machine bridge listens there only.
            "SERVER_ADDRESS": facts.ssh_server_address,
            "PYTHON": settings.python,
            "REMOTE_DIR": facts.remote_dir,
            "ROS_SETUP": facts.ros_setup,
            "VENV": plan.venv,
            # The host's build of the robot's workspace: its install/setup.bash is sourced.
            "OVERLAY": overlay,
            "TORCH": "1" if settings.torch else "",
            "SYNC": settings.sync,
        }
        host = Host(
            machine=target.machine,
            provider=self._provider,
            address=target.hostname,
            workdir=facts.workdir,
            resource_id=f"{self._provider}:{target.where}{facts.workdir}",
            bridge_port=facts.bridge_port,
            env=(
                *sorted(process_env.items()),
                *sorted((ENV_PREFIX + key, value) for key, value in connection.items()),
            ),
        )
        with self._lock:
            self._agents[host.resource_id] = agent
            self._facts[host.resource_id] = facts
            if cancel is not None:
                self._cancels[host.resource_id] = cancel
        ros = f"ROS 2 {facts.ros_distro}" if facts.ros_setup else "no ROS 2 (DDS adapter)"
        progress(
            "running",
            f"{target.hostname}: Python {facts.python_version} {facts.machine}, {ros}, "
            f"{describe_gpus(facts.gpus)}, ROS domain {domain_id}, bridge port {facts.bridge_port}",
        )
        return host

    def prepare(
        self,
        host: Host,
        *,
        workspace: WorkspaceSelection | None,
        progress: Progress,
        cancel: CancelEvent | None = None,
    ) -> None:
        """Install the runtime (unless current); push the workspace's packages and build them.

        The workspace runs in the background: the bridge needs only the runtime, so it starts
        while the packages are still on their way and building; the first node waits for them
        (see :meth:`start`). Reports ``bootstrapped`` or ``cached``, ``synced`` (files and bytes
        sent), then ``building <pkg> (n/m)`` and ``built``, or ``build cached``.

        Args:
            cancel: the deployment's cancel event (None: never cancelled); it also stops the
                background push and build, and is remembered for the verbs that follow.

        Raises:
            ProvisionError: the install failed.
            Cancelled: ``cancel`` was set first; the install (if it ran) is gone from the host.
        """
        with self._lock:
            if cancel is not None:
                self._cancels[host.resource_id] = cancel
        agent = self.agent(host)
        facts = self._facts.get(host.resource_id) or self._reprobe(host, agent, cancel)
        conn = _connection(host)
        plan = plan_runtime(facts, torch=bool(conn["TORCH"]), cache_dir=self.cache_dir)
        install = None
        if not plan.current:
            what = "fogros_dist" if plan.deps_current else "fogros_dist and its dependencies"
            progress("bootstrapping", f"installing {what} into {plan.venv}")
            install = start_install(
                agent, facts, plan, cache_dir=self.cache_dir, machine=host.machine, cancel=cancel
            )
        runtime_ready = threading.Event()
        if workspace is not None and conn.get("OVERLAY"):
            job = WorkspaceBuild(
                agent=agent,
                facts=facts,
                machine=host.machine,
                selection=workspace,
                workspace=conn["OVERLAY"],
                host_workdir=host.workdir,
                venv_python=plan.python,
                ros_setup=conn["ROS_SETUP"],
                env=_process_env(host),
                sync=_sync_method(conn["SYNC"]),
            )
            with self._lock:
                self._pushes[host.resource_id] = _Push(job, runtime_ready, progress, cancel=cancel)
        else:
            progress("synced", "no workspace packages to push: the nodes' packages are the machine's own")
        try:
            if install is None:
                progress("cached", f"runtime in {plan.venv} is up to date: nothing installed")
                return
            seconds = install.wait(cancel=cancel)
        finally:
            # The build needs the runtime's colcon where the host has none; it may go on now (or
            # find out that the install failed, which the install's own error reports).
            runtime_ready.set()
        progress(
            "bootstrapped",
            f"runtime in {plan.venv}: {install.files_sent} files ({human_bytes(install.bytes_sent)}) "
            f"pushed, installed in {seconds:.1f} s",
        )
        # The stamps changed: a later prepare in this process must not trust the old probe.
        with self._lock:
            self._facts.pop(host.resource_id, None)

    def wait_synced(self, host: Host, *, cancel: CancelEvent | None = None) -> None:
        """Block until the workspace push and build that :meth:`prepare` started are done.

        Args:
            cancel: stop waiting when set (default: the event :meth:`prepare` was given).

        Raises:
            ProvisionError: the push or the build failed (rsync's, SFTP's or colcon's reason is
                named).
            Cancelled: the push or build was cancelled (it is stopped on the host).
        """
        with self._lock:
            push = self._pushes.get(host.resource_id)
            cancel = cancel or self._cancels.get(host.resource_id)
        if push is not None:
            push.result(cancel=cancel)

    # -- processes -------------------------------------------------------------------------------

    def resolve_node(self, host: Host, *, package: str, executable: str) -> tuple[str, ...]:
        """The argv that runs ``package``/``executable`` on the host, checked there.

        Raises:
            MissingExecutable: not found on the host (where it looked is named).
        """
        # The node may come from the workspace being built: resolve it once the overlay is there.
        self.wait_synced(host)
        python = _env(host)["FOGROS_DIST_PYTHON"]
        launcher = (python, "-m", "fogros_dist.node_launcher")
        done = self.agent(host).run(
            [*launcher, "--check", package, executable],
            env=_process_env(host),
            setup=_setup_files(host),
            path_prepend=_path_prepend(host),
            what=f"resolve {package}/{executable}",
            cancel=self._cancel_of(host),
        )
        if done["code"] != 0:
            lines = [line for line in str(done["stderr"]).splitlines() if line.strip()]
            reason = lines[-1].removeprefix("fogros-dist: ") if lines else f"exit code {done['code']}"
            msg = f"machine {host.machine!r}: {reason}"
            raise MissingExecutable(msg)
        return (*launcher, package, executable, "--")

    def bridge_argv(self, host: Host, spec_path: Path) -> tuple[str, ...]:
        """The machine bridge, run by the host's runtime venv."""
        python = _env(host)["FOGROS_DIST_PYTHON"]
        return (python, "-m", "fogros_dist.net.bridge_main", "--spec", str(spec_path))

    def upload(self, host: Host, local: Path, remote_name: str) -> Path:
        """Copy ``local`` to ``remote_name`` under the host's workdir (subdirectories created);
        return its path there."""
        remote = f"{host.workdir}/{remote_name}"
        cancel = self._cancel_of(host)
        if "/" in remote_name:
            parent = remote.rsplit("/", 1)[0]
            self.agent(host).run(["mkdir", "-p", parent], what=f"make room for {remote_name}", cancel=cancel)
        raise_if_cancelled(cancel, machine=host.machine, doing=f"uploading {local.name}")
        try:
            self.agent(host).runner.sftp(cancel=cancel).put(str(local), remote)
        except OSError as err:
            msg = f"machine {host.machine!r}: cannot upload {local.name} to {remote} ({err})"
            raise ProvisionError(msg) from err
        return Path(remote)

    def _remove_mesh(self, host: Host) -> None:
        """Tear down the fleet mesh recorded on ``host`` (net/wireguard_host.MESH_INTERFACE_ENV),
        if any: its supervisor may have died before it could.

        Raises:
            ProvisionError: a step failed (named); every step was tried.
        """
        from fogros_dist.net.wireguard_host import MESH_INTERFACE_ENV, WireGuardError, tear_down

        interface = dict(host.env).get(MESH_INTERFACE_ENV)
        if not interface:
            return

        def run(argv: list[str], *, stdin: str | None = None) -> tuple[int, str, str]:
            return self.run_command(host, argv, stdin=stdin)

        try:
            tear_down(run, interface, host=host.machine)
        except WireGuardError as err:
            raise ProvisionError(str(err)) from err

    def push_dataset(self, host: Host, local: Path) -> tuple[str, SyncStats]:
        """Delta-sync the robot's folder ``local`` (a dataset: rosbag2 bags) to
        ``<remote dir>/datasets/<name>-<digest of its robot path>`` on the host, which stays
        between runs, so a second run sends only what changed (rsync where the host has it, else
        SFTP); files the robot no longer has go there too. Returns its path there and what was sent.

        Raises:
            ProvisionError: the push failed (rsync's or SFTP's reason is named).
            Cancelled: the deployment was cancelled meanwhile.
        """
        conn = _connection(host)
        digest = hashlib.sha256(str(local).encode()).hexdigest()[:12]
        remote = f"{conn['REMOTE_DIR']}/datasets/{local.name}-{digest}"
        agent = self.agent(host)
        cancel = self._cancel_of(host)
        facts = self._facts.get(host.resource_id) or self._reprobe(host, agent, cancel)
        agent.run(["mkdir", "-p", remote], what=f"make room for {local.name}", cancel=cancel)
        stats = push_directory(
            agent,
            local=local,
            remote=remote,
            remote_has_rsync=facts.rsync,
            method=_sync_method(conn["SYNC"]),
            excludes=(),  # a dataset travels whole, whatever its files are called
            cancel=cancel,
        )
        return remote, stats

    def run_command(
        self, host: Host, argv: list[str], *, stdin: str | None = None, timeout: float = 120.0
    ) -> tuple[int, str, str]:
        """Run ``argv`` on the host as the SSH user, ``stdin`` fed to it (never logged); its exit
        code and output. For short administrative commands (a fleet's VPN), not for processes."""
        done = self.agent(host).runner.run(
            argv,
            stdin=(stdin or "").encode(),
            timeout=timeout,
            check=False,
            what=argv[0],
            cancel=self._cancel_of(host),
        )
        return done.exit_code, done.stdout, done.stderr

    def download(self, host: Host, remote: str, local: Path) -> Path:
        """Copy the host's file ``remote`` (an absolute path there) to ``local`` on the robot
        (written next to it first, then renamed: never half a file)."""
        cancel = self._cancel_of(host)
        raise_if_cancelled(cancel, machine=host.machine, doing=f"downloading {remote}")
        local.parent.mkdir(parents=True, exist_ok=True)
        partial = local.with_name(local.name + ".part")
        try:
            self.agent(host).runner.sftp(cancel=cancel).get(remote, str(partial))
        except OSError as err:
            partial.unlink(missing_ok=True)
            msg = f"machine {host.machine!r}: cannot download {remote} ({err})"
            raise ProvisionError(msg) from err
        partial.replace(local)
        return local

    def start(
        self,
        host: Host,
        *,
        role: str,
        name: str,
        argv: tuple[str, ...],
        env: tuple[tuple[str, str], ...],
        log_max_bytes: int = 0,
    ) -> RemoteProcess:
        """Start a supervised process on the host with the machine's environment; its output is
        rotated at ``log_max_bytes`` (0: the agent's default).

        Raises:
            DeploymentError: it could not be executed there.
            Cancelled: the deployment's cancel event was set first (a process that started
                meanwhile is recorded in the run directory, where ``terminate`` stops it).
        """
        if role == "node":
            self.wait_synced(host)
        agent = self.agent(host)
        process_env = _process_env(host)
        process_env.update(dict(env))
        # Output must reach the log files line by line, not at exit.
        process_env["PYTHONUNBUFFERED"] = "1"
        rundir = f"{host.workdir}/run"
        found = agent.start(
            {
                "name": name,
                "rundir": rundir,
                "logdir": f"{host.workdir}/logs",
                "cwd": host.workdir,
                "env": process_env,
                "path_prepend": _path_prepend(host),
                "setup": _setup_files(host),
                "argv": list(argv),
                "log_max_bytes": log_max_bytes,
            },
            what=f"{role} {name!r}",
            cancel=self._cancel_of(host),
        )
        record = ProcessRecord(
            role="bridge" if role == "bridge" else "node",
            name=name,
            machine=host.machine,
            pid=int(found["pid"]),
            pgid=int(found["pgid"]),
            start_ticks=int(found["start_ticks"]),
            stdout_path=str(found["stdout"]),
            stderr_path=str(found["stderr"]),
            argv=tuple(argv),
        )
        # Its own output only: a node started again appends to the log of its earlier run.
        begins = (int(found.get("stdout_from", 0)), int(found.get("stderr_from", 0)))
        return RemoteProcess(agent=agent, record=record, rundir=rundir, from_start=True, begins=begins)

    def attach(self, host: Host, record: ProcessRecord) -> RemoteProcess:
        """A handle on a process started earlier, possibly by another supervisor (no I/O yet)."""
        return RemoteProcess(
            agent=self.agent(host), record=record, rundir=f"{host.workdir}/run", from_start=False
        )

    def terminate(self, host: Host) -> None:
        """Stop anything still running from the deployment's workdir, remove its DDS config, and
        close the connection. Logs, workspace and the runtime stay for the next `up`.

        Raises:
            ProvisionError: the host cannot be reached.
        """
        with self._lock:
            push = self._pushes.pop(host.resource_id, None)
            self._cancels.pop(host.resource_id, None)
        if push is not None:
            # A push or build still under way (up failed, or was interrupted, before any node
            # started) is stopped, and ends before the host does.
            push.cancel()
            push.join()
        agent = self.agent(host)
        agent.reap(f"{host.workdir}/run", grace=2.0)
        self._remove_mesh(host)
        # The deployment's key material goes with it (a new `up` makes a new CA anyway).
        agent.run(["rm", "-rf", f"{host.workdir}/cyclonedds.xml", f"{host.workdir}/tls"], what="clean up")
        with self._lock:
            self._agents.pop(host.resource_id, None)
            self._facts.pop(host.resource_id, None)
        agent.close()
        agent.runner.close()

    # -- connections -----------------------------------------------------------------------------

    @property
    def cache_dir(self) -> Path:
        """The robot's cache for wheels."""
        return self._cache_dir or default_cache_dir()

    def agent(self, host: Host) -> HostAgent:
        """The agent of ``host``, over a shared connection (made on first use)."""
        with self._lock:
            agent = self._agents.get(host.resource_id)
            if agent is None:
                conn = _connection(host)
                runner = SSHRunner(target_from_host(host), retry=self._retry)
                agent = HostAgent(runner, python=conn["PYTHON"], remote_dir=conn["REMOTE_DIR"])
                self._agents[host.resource_id] = agent
            return agent

    def close(self) -> None:
        """Close every connection."""
        with self._lock:
            agents = list(self._agents.values())
            self._agents.clear()
        for agent in agents:
            agent.close()
            agent.runner.close()

    def _cancel_of(self, host: Host) -> CancelEvent | None:
        with self._lock:
            return self._cancels.get(host.resource_id)

    def _reprobe(self, host: Host, agent: HostAgent, cancel: CancelEvent | None) -> HostFacts:
        facts = agent.probe(
            workdir="", ros_setup=_connection(host)["ROS_SETUP"] or "none", bridge_port=0, cancel=cancel
        )
        return _with_workdir(facts, host.workdir)


class _Push:
    """A machine's workspace on a thread of its own: push, wait for the runtime, build.

    It stops when the deployment's ``cancel`` is set or when :meth:`cancel` is called (by
    ``terminate``, after an `up` that failed for another reason: the deployment's event is not
    the provider's to set). :meth:`result` waits and re-raises its error.
    """

    # How long result() waits, after a cancel, for the push to stop what it started on the host.
    _STOPPING_S = 1.5

    def __init__(
        self,
        job: WorkspaceBuild,
        runtime_ready: threading.Event,
        progress: Progress,
        *,
        cancel: CancelEvent | None,
    ) -> None:
        self._job = job
        self._runtime_ready = runtime_ready
        self._progress = progress
        self._stop = threading.Event()
        self._cancel = AnyOf((self._stop,) if cancel is None else (self._stop, cancel))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="workspace-push", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        machine = self._job.machine
        try:
            stats: SyncStats = self._job.push(self._progress, cancel=self._cancel)
            packages = ", ".join(self._job.selection.names)
            self._progress("synced", f"workspace ({packages}): {stats.describe()}")
            while not self._runtime_ready.wait(CHECK_EVERY_S):
                raise_if_cancelled(self._cancel, machine=machine, doing="waiting for the runtime to build")
            raise_if_cancelled(self._cancel, machine=machine, doing="waiting for the runtime to build")
            self._job.build(self._progress, self._cancel)
        except BaseException as err:  # re-raised in the caller's thread by result()
            self._error = err

    def cancel(self) -> None:
        """Stop waiting, and stop the push or the build if it runs."""
        self._stop.set()

    def join(self) -> None:
        """Wait for the push to end, whatever its outcome."""
        self._thread.join()

    def result(self, *, cancel: CancelEvent | None = None) -> None:
        """Wait for the push; raise what it raised.

        Raises:
            Cancelled: ``cancel`` was set (the push's own Cancelled once it has stopped what it
                started, or this one if it takes longer than a moment).
        """
        while self._thread.is_alive():
            self._thread.join(CHECK_EVERY_S)
            if cancel is not None and cancel.is_set():
                self._thread.join(self._STOPPING_S)
                if self._thread.is_alive():
                    raise cancelled(self._job.machine, "waiting for the workspace push and build")
        if self._error is not None:
            raise self._error


def target_from_host(host: Host) -> SSHTarget:
    """The SSH target recorded in ``host`` (no config file is read again).

    Raises:
        ConfigError: the Host was not made by this module (its connection keys are missing).
    """
    conn = _connection(host)
    return SSHTarget(
        machine=host.machine,
        alias=conn["ALIAS"],
        hostname=conn["HOSTNAME"],
        port=int(conn["PORT"]),
        user=conn["USER"],
        identity_file=conn["IDENTITY"],
        known_hosts=conn["KNOWN_HOSTS"],
        # The key was recorded (or refused) when the machine was created; never again silently.
        trust_new_host=False,
        jumps=jumps_from_json(conn.get("JUMPS", ""), machine=host.machine, known_hosts=conn["KNOWN_HOSTS"]),
    )


def _env(host: Host) -> dict[str, str]:
    return dict(host.env)


def _connection(host: Host) -> dict[str, str]:
    found = {k.removeprefix(ENV_PREFIX): v for k, v in host.env if k.startswith(ENV_PREFIX)}
    missing = [key for key in ("HOSTNAME", "PORT", "USER", "PYTHON", "REMOTE_DIR") if key not in found]
    if missing:
        msg = (
            f"machine {host.machine!r}: its record lacks {ENV_PREFIX}{missing[0]}: it was not created "
            f"by an SSH-based provider of this version; tear it down with the version that made it"
        )
        raise ConfigError(msg)
    return found


def _process_env(host: Host) -> dict[str, str]:
    return {k: v for k, v in host.env if not k.startswith(ENV_PREFIX)}


def _path_prepend(host: Host) -> list[str]:
    # The venv's console scripts come first on PATH, as if it were activated.
    venv = _connection(host).get("VENV", "")
    return [f"{venv}/bin"] if venv else []


def _setup_files(host: Host) -> list[str]:
    conn = _connection(host)
    ros = conn.get("ROS_SETUP", "")
    overlay = conn.get("OVERLAY", "")
    # The workspace's overlay as built on the host ("?": only if it exists), over ROS 2.
    return [*([ros] if ros else []), *([f"?{overlay}/install/setup.bash"] if overlay else [])]


def _sync_method(value: str) -> SyncMethod:
    if value == "rsync":
        return "rsync"
    if value == "sftp":
        return "sftp"
    return "auto"


def _check_ros(target: SSHTarget, facts: HostFacts) -> None:
    if not facts.ros_setup:
        return
    if not facts.bash:
        msg = (
            f"machine {target.machine!r}: {target.hostname} has ROS 2 ({facts.ros_setup}) but no bash to "
            f"source it: install bash there, or set ros_setup='none'"
        )
        raise ProvisionError(msg)
    if not facts.rmw_cyclonedds:
        msg = (
            f"machine {target.machine!r}: ROS 2 {facts.ros_distro} on {target.hostname} has no "
            f"rmw_cyclonedds_cpp, which fogros_dist's DDS settings need: install "
            f"ros-{facts.ros_distro}-rmw-cyclonedds-cpp there, or set ros_setup='none'"
        )
        raise ProvisionError(msg)


def _with_workdir(facts: HostFacts, workdir: str) -> HostFacts:
    import dataclasses

    changes: dict[str, Any] = {"workdir": workdir}
    return dataclasses.replace(facts, **changes)
