"""The runtime on a host: a venv with fogros_dist and its pinned dependencies, installed offline.

One venv per (dependencies, host Python, ROS or not) lives at ``<remote_dir>/venvs/<key>``, with
two stamps: ``.fogros-deps`` (the hash of the wheels it was built from) and ``.fogros-self`` (the
hash of the fogros_dist wheel in it). The host's probe reports both stamps, so when nothing changed
the robot decides "cached" without building, pushing or running anything. Otherwise it pushes
only what is missing (the wheelhouse only if the dependencies changed) and starts the install as
a supervised process on the host, which the caller may overlap with the workspace push. A
cancelled install is stopped on the host (its process group: the venv is only stamped once
complete, so the next `up` installs it from scratch).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fogros_dist.errors import Cancelled, FogError, ProvisionError
from fogros_dist.remote.agent import HostAgent, HostFacts
from fogros_dist.remote.cancel import CancelEvent, cancelled, raise_if_cancelled
from fogros_dist.remote.selfwheel import SelfWheel, build_self_wheel
from fogros_dist.remote.sync import push_directory
from fogros_dist.remote.wheelhouse import (
    TargetPython,
    ensure_wheelhouse,
    runtime_requirements,
    wheelhouse_key,
)

__all__ = ["INSTALL_TIMEOUT_S", "Install", "RuntimePlan", "plan_runtime", "start_install"]

# torch alone is ~200 MB of wheel; a slow host may take minutes to unpack it.
INSTALL_TIMEOUT_S = 1800.0
# A hyphen cannot appear in a ROS node name, so no node of the deployment can collide with it.
_INSTALL_NAME = "fogros-bootstrap"
# Each wait request on the host is this short, so a cancelled wait leaves nothing waiting there.
_POLL_S = 1.0
# A cancelled install gets this long to exit on SIGTERM (pip does at once) before SIGKILL.
_STOP_GRACE_S = 0.5


@dataclass(frozen=True, kw_only=True)
class RuntimePlan:
    """Which venv a host needs and whether it already has it."""

    venv: str
    deps_key: str
    self_wheel: SelfWheel
    requirements: tuple[str, ...]
    target: TargetPython
    system_site_packages: bool
    deps_current: bool
    self_current: bool

    @property
    def python(self) -> str:
        """The venv's interpreter on the host."""
        return f"{self.venv}/bin/python"

    @property
    def current(self) -> bool:
        """Nothing to install."""
        return self.deps_current and self.self_current


@dataclass(frozen=True, kw_only=True)
class Install:
    """An install running on the host; ``bytes_sent`` is what was pushed for it."""

    agent: HostAgent
    rundir: str
    log: str
    bytes_sent: int
    files_sent: int
    started: float

    def wait(self, *, cancel: CancelEvent | None = None) -> float:
        """Block until the install ends; return its duration.

        Args:
            cancel: when set, stop the install on the host and raise Cancelled; None: never.

        Raises:
            ProvisionError: it failed (its last error line and its log on the host are named), or
                did not finish within INSTALL_TIMEOUT_S.
            Cancelled: ``cancel`` was set first; the install process is gone from the host
                (unless the host could not be reached: the message says so).
        """
        deadline = self.started + INSTALL_TIMEOUT_S
        while True:
            left = deadline - time.monotonic()
            try:
                state = self.agent.wait(
                    self.rundir, _INSTALL_NAME, timeout=max(0.1, min(left, _POLL_S)), cancel=cancel
                )
            except FogError as err:
                if cancel is not None and cancel.is_set():
                    raise self.interrupt() from err
                raise
            if state["state"] != "running":
                break
            if cancel is not None and cancel.is_set():
                raise self.interrupt()
            if left <= 0:
                msg = (
                    f"machine {self.agent.runner.target.machine!r}: the runtime install did not finish "
                    f"within {INSTALL_TIMEOUT_S:.0f} s: see {self.log} on the host"
                )
                raise ProvisionError(msg)
        if state.get("code") != 0:
            lines = [line for line in self.agent.tail(self.log, 20) if line.strip() and "WARNING" not in line]
            reason = lines[-1].strip() if lines else f"exit code {state.get('code')}"
            msg = (
                f"machine {self.agent.runner.target.machine!r}: the runtime install failed on the host "
                f"({reason}): see {self.log} there"
            )
            raise ProvisionError(msg)
        return time.monotonic() - self.started

    def interrupt(self) -> Cancelled:
        """Stop the install on the host (SIGTERM to its process group, SIGKILL shortly after);
        return the Cancelled that says so."""
        machine = self.agent.runner.target.machine
        try:
            self.agent.stop(self.rundir, _INSTALL_NAME, grace=_STOP_GRACE_S)
        except FogError as err:
            return cancelled(machine, f"installing the runtime (it could not be stopped on the host: {err})")
        return cancelled(machine, "installing the runtime (stopped on the host)")


def plan_runtime(facts: HostFacts, *, torch: bool, cache_dir: Path) -> RuntimePlan:
    """Decide which venv the host needs (cheap: hashes only, nothing is downloaded).

    Raises:
        ProvisionError: the requirements or fogros_dist's metadata cannot be found.
    """
    target = TargetPython(
        version=facts.python_version,
        implementation=facts.implementation,
        machine=facts.machine,
        libc=facts.libc,
    )
    # colcon always comes along (~6 MB): whether the host needs it for a workspace build is only
    # known once the host has been probed for its own, and the venv should not change with that.
    requirements = runtime_requirements(torch=torch, target=target, build_tools=True)
    # A host with ROS 2 gets a venv that sees the system's packages: ROS's Python modules
    # import apt-installed ones (yaml, numpy...).
    system_site = bool(facts.ros_setup)
    deps_key = hashlib.sha256(
        f"{wheelhouse_key(requirements, target)}\nsystem-site={system_site}".encode()
    ).hexdigest()
    self_wheel = build_self_wheel(cache_dir=cache_dir)
    venv = f"{facts.remote_dir}/venvs/{deps_key[:16]}"
    deps_stamp, self_stamp = facts.stamps(deps_key[:16])
    return RuntimePlan(
        venv=venv,
        deps_key=deps_key,
        self_wheel=self_wheel,
        requirements=requirements,
        target=target,
        system_site_packages=system_site,
        deps_current=deps_stamp == deps_key,
        self_current=deps_stamp == deps_key and self_stamp == self_wheel.key,
    )


def start_install(
    agent: HostAgent,
    facts: HostFacts,
    plan: RuntimePlan,
    *,
    cache_dir: Path,
    machine: str,
    cancel: CancelEvent | None = None,
) -> Install:
    """Push what the install needs (only what changed) and start it on the host.

    Raises:
        ProvisionError: the wheels could not be had or pushed, or the install could not start.
        Cancelled: ``cancel`` was set first (nothing is left running on the host: the install
            is stopped if it had started).
    """
    started = time.monotonic()
    wheels_dir = f"{facts.remote_dir}/wheels"
    bytes_sent = 0
    files_sent = 0
    requirements_name = ""
    pip_wheel = ""
    if not plan.deps_current:
        house = ensure_wheelhouse(
            requirements=plan.requirements,
            target=plan.target,
            cache_dir=cache_dir,
            machine=machine,
            cancel=cancel,
        )
        if not house.pip_wheel:
            msg = (
                f"machine {machine!r}: the wheelhouse {house.directory} has no pip wheel: delete it and retry"
            )
            raise ProvisionError(msg)
        # Wheels never change under one name, so nothing is deleted: venvs of other robots and
        # versions on this host keep finding theirs.
        raise_if_cancelled(cancel, machine=machine, doing="preparing the runtime's wheels")
        stats = push_directory(
            agent,
            local=house.directory,
            remote=wheels_dir,
            remote_has_rsync=facts.rsync,
            delete=False,
            cancel=cancel,
        )
        bytes_sent += stats.bytes_sent
        files_sent += stats.files_sent
        requirements_name, pip_wheel = house.requirements, house.pip_wheel
    else:
        pip_wheel = _pip_wheel_on_host(agent, wheels_dir, cancel)
    spec = {
        "venv": plan.venv,
        "wheels": wheels_dir,
        "requirements": requirements_name,
        "pip_wheel": pip_wheel,
        "self_wheel": plan.self_wheel.filename,
        "deps_key": plan.deps_key,
        "self_key": plan.self_wheel.key,
        "system_site_packages": plan.system_site_packages,
    }
    raise_if_cancelled(cancel, machine=machine, doing="pushing the runtime")
    sftp = agent.runner.sftp(cancel=cancel)
    sftp.put(str(plan.self_wheel.path), f"{wheels_dir}/{plan.self_wheel.filename}")
    bytes_sent += plan.self_wheel.path.stat().st_size
    files_sent += 1
    spec_path = f"{facts.workdir}/bootstrap.json"
    with tempfile.NamedTemporaryFile("w", suffix=".json") as handle:
        json.dump(spec, handle)
        handle.flush()
        sftp.put(handle.name, spec_path)
    rundir = f"{facts.workdir}/run"
    logdir = f"{facts.workdir}/logs"
    raise_if_cancelled(cancel, machine=machine, doing="pushing the runtime")
    install = Install(
        agent=agent,
        rundir=rundir,
        log=f"{logdir}/{_INSTALL_NAME}.err",
        bytes_sent=bytes_sent,
        files_sent=files_sent,
        started=started,
    )
    try:
        _start(agent, facts, spec_path=spec_path, rundir=rundir, logdir=logdir, cancel=cancel)
    except FogError as err:
        if cancel is not None and cancel.is_set():
            # The start may have gone through before the answer was abandoned.
            raise install.interrupt() from err
        raise
    return install


def _start(
    agent: HostAgent,
    facts: HostFacts,
    *,
    spec_path: str,
    rundir: str,
    logdir: str,
    cancel: CancelEvent | None,
) -> None:
    agent.start(
        {
            "name": _INSTALL_NAME,
            "rundir": rundir,
            "logdir": logdir,
            "cwd": facts.remote_dir,
            "env": {},
            "setup": [],
            "argv": [facts.python_executable, agent.path(facts), "install", "--spec", spec_path],
        },
        what="the runtime install",
        cancel=cancel,
    )


def _pip_wheel_on_host(agent: HostAgent, wheels_dir: str, cancel: CancelEvent | None) -> str:
    # Only fogros_dist changed: the deps venv exists, so the pip wheel it was built with is there.
    done = agent.run(
        ["sh", "-c", 'cd "$1" && ls pip-*.whl | tail -n 1', "sh", wheels_dir], what="find pip", cancel=cancel
    )
    name = str(done["stdout"]).strip()
    if not name:
        msg = (
            f"machine {agent.runner.target.machine!r}: no pip wheel in {wheels_dir} on the host: "
            f"remove the venvs there ({wheels_dir.rsplit('/', 1)[0]}/venvs) and retry"
        )
        raise ProvisionError(msg)
    return name
