"""The Local provider: each "machine" is a set of supervised process groups on this machine.

It is the embedded default and the model for the remote providers: a machine gets its own working
directory, its own ROS 2 domain on a loopback-only DDS configuration (so its graph is isolated from
the robot's and the bridge is the only path between them) and its own Zenoh port on 127.0.0.1.
Domains are claimed host-wide (:mod:`.claims`), so the Local machines of other homes and other
users on this host never share one; ``terminate`` gives the claim back.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

from fogros_dist.errors import ConfigError, DeploymentError, MissingExecutable, ProvisionError
from fogros_dist.logs import module_logger
from fogros_dist.providers.base import Capabilities, ProcessSpec, ProvisionContext
from fogros_dist.providers.local.claims import DomainClaims
from fogros_dist.providers.local.process import LocalProcess
from fogros_dist.spec import Host, MachineSpec, ProcessRecord

__all__ = ["LocalProvider"]

_log = module_logger(__name__)

# ROS 2 domain IDs 0..232 are valid with the default port mapping; the high range is rarely used
# by hand, so Local machines take theirs from it.
_DOMAIN_RANGE = range(120, 233)
_OPTIONS = {"domain_id", "python"}
# The engine's record of a deployment, in its state directory: a claim whose owner is gone stays
# valid while this file records the machine on the claimed domain.
_STATE_FILE = "state.json"


class LocalProvider:
    """Processes on this machine, one working directory and one ROS domain per machine."""

    name: ClassVar[str] = "local"
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, *, claims: DomainClaims | None = None) -> None:
        self._claims = claims or DomainClaims()

    def validate(self, machine: MachineSpec) -> None:
        """Reject unknown options and out-of-range values, naming them."""
        for key, value in machine.options:
            if key not in _OPTIONS:
                msg = (
                    f"machine {machine.name!r}: option {key!r} is not supported by provider 'local' "
                    f"(supported: {', '.join(sorted(_OPTIONS))})"
                )
                raise ConfigError(msg)
            # bool is an int in Python: `domain_id = true` must not pass as domain 1.
            wrong = isinstance(value, bool) or not isinstance(value, int)
            if key == "domain_id" and (wrong or not 0 <= value <= 232):  # type: ignore[operator]
                msg = f"machine {machine.name!r}: domain_id {value!r} is invalid: use a number 0..232"
                raise ConfigError(msg)
            if key == "python" and (not isinstance(value, str) or not value or "\0" in value):
                msg = f"machine {machine.name!r}: python {value!r} is invalid: give an interpreter's path"
                raise ConfigError(msg)

    def create(self, machine: MachineSpec, ctx: ProvisionContext) -> Host:
        """Make the machine's working directory (0700) and claim its ROS domain host-wide.

        Raises:
            ConfigError: a bad option or machine name.
            ProvisionError: no domain is free, or the working directory cannot be made.
        """
        self.validate(machine)
        workdir = _workdir(ctx.state_dir, machine.name)
        wanted = machine.option("domain_id")
        candidates = [wanted] if isinstance(wanted, int) else list(_DOMAIN_RANGE)
        state_file = ctx.state_dir / _STATE_FILE
        domain_id = self._claims.claim(
            state_file=state_file,
            deployment=ctx.deployment,
            machine=machine.name,
            candidates=candidates,
            # An explicit domain is the user's choice; only other claims can refuse it.
            avoid=frozenset() if isinstance(wanted, int) else ctx.used_domain_ids,
        )
        # Imported here: the ROS layer is only needed once a machine is really created.
        from fogros_dist.ros.cyclone_config import loopback_config

        dds_config = workdir / "cyclonedds.xml"
        try:
            for directory in (ctx.state_dir, workdir.parent, workdir, workdir / "logs"):
                directory.mkdir(mode=0o700, exist_ok=True)
            dds_config.write_text(loopback_config(domain_id))
        except OSError as err:
            self._claims.release(state_file=state_file, machine=machine.name)
            msg = f"machine {machine.name!r}: cannot make its working directory {workdir}: {err.strerror}"
            raise ProvisionError(msg) from err
        python = str(machine.option("python", sys.executable))
        ctx.progress("running", f"local, ROS domain {domain_id}, workdir {workdir}")
        return Host(
            machine=machine.name,
            provider=self.name,
            address="127.0.0.1",
            workdir=str(workdir),
            resource_id=f"local:{os.getpid()}:{machine.name}",
            bridge_port=_free_port(),
            env=(
                ("ROS_DOMAIN_ID", str(domain_id)),
                ("CYCLONEDDS_URI", f"file://{dds_config}"),
                ("RMW_IMPLEMENTATION", "rmw_cyclonedds_cpp"),
                ("FOGROS_DIST_PYTHON", python),
            ),
        )

    def prepare(self, host: Host, ctx: ProvisionContext) -> None:
        """Nothing to push or install: the nodes run from this machine's own environment."""
        del host, ctx

    def resolve_node(self, host: Host, *, package: str, executable: str) -> tuple[str, ...]:
        """Resolve the executable with the machine's own environment; MissingExecutable if absent."""
        launcher = (_python(host), "-m", "fogros_dist.node_launcher")
        result = subprocess.run(
            [*launcher, "--check", package, executable],
            env=self._env(host),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines()
            reason = lines[-1].removeprefix("fogros-dist: ") if lines else f"exit code {result.returncode}"
            msg = f"machine {host.machine!r}: {reason}"
            raise MissingExecutable(msg)
        return (*launcher, package, executable, "--")

    def bridge_argv(self, host: Host, spec_path: Path) -> tuple[str, ...]:
        """Run the bridge with the machine's interpreter."""
        return (_python(host), "-m", "fogros_dist.net.bridge_main", "--spec", str(spec_path))

    def upload(self, host: Host, local: Path, remote_name: str) -> Path:
        """Copy ``local`` to ``remote_name`` under the working directory (subdirectories created;
        a no-op if it is already there)."""
        workdir = Path(host.workdir)
        target = workdir / remote_name
        if Path(remote_name).is_absolute() or ".." in Path(remote_name).parts:
            msg = f"machine {host.machine!r}: {remote_name!r} would leave its working directory {workdir}"
            raise DeploymentError(msg)
        try:
            if local.resolve() != target.resolve():
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                shutil.copyfile(local, target)
        except OSError as err:
            msg = f"machine {host.machine!r}: cannot copy {local} to {target}: {err.strerror}"
            raise DeploymentError(msg) from err
        return target

    def download(self, host: Host, remote: str, local: Path) -> Path:
        """The machine's file ``remote`` at ``local`` (the same file system: a copy, if needed)."""
        source = Path(remote)
        try:
            if source.resolve() != local.resolve():
                local.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, local)
        except OSError as err:
            msg = f"machine {host.machine!r}: cannot copy {source} to {local}: {err.strerror}"
            raise DeploymentError(msg) from err
        return local

    def start(self, host: Host, process: ProcessSpec) -> LocalProcess:
        """Start the process in its own session with the machine's environment."""
        env = self._env(host)
        env.update(dict(process.env))
        return LocalProcess.start(
            role=process.role,
            name=process.name,
            machine=host.machine,
            argv=process.argv,
            env=env,
            cwd=Path(host.workdir),
            log_dir=Path(host.workdir) / "logs",
            log_max_bytes=process.log_max_bytes,
        )

    def attach(self, host: Host, record: ProcessRecord) -> LocalProcess:
        """A handle on a process recorded earlier; it is signalled only if still the same process."""
        del host
        return LocalProcess(record)

    def terminate(self, host: Host) -> None:
        """Give the machine's ROS domain back; the logs stay for `fogros-dist logs`."""
        workdir = Path(host.workdir)
        # The workdir is <state dir>/machines/<machine> (create() made it so).
        try:
            self._claims.release(state_file=workdir.parent.parent / _STATE_FILE, machine=host.machine)
        except ProvisionError as err:
            # Not a resource: once the record is gone the claim is stale and the next claim skips it.
            _log.warning("machine %r: %s", host.machine, err)
        if not workdir.exists():
            return
        for leftover in ("cyclonedds.xml",):
            (workdir / leftover).unlink(missing_ok=True)

    def reclaim(self, machine: MachineSpec, *, deployment: str) -> tuple[str, ...]:
        """Give back a domain this process claimed for a machine whose Host was never recorded
        (and this user's stale claims); nothing else exists before the Host."""
        try:
            self._claims.release_unrecorded(deployment=deployment, machine=machine.name)
        except ProvisionError as err:
            _log.warning("machine %r: %s", machine.name, err)
        return ()

    def remaining(self, host: Host) -> tuple[str, ...]:
        """A Local machine is only its processes, which the engine checks itself."""
        del host
        return ()

    @staticmethod
    def _env(host: Host) -> dict[str, str]:
        env = dict(os.environ)
        env.update(dict(host.env))
        # Output must reach the log files line by line, not at exit.
        env["PYTHONUNBUFFERED"] = "1"
        return env


def _python(host: Host) -> str:
    return dict(host.env).get("FOGROS_DIST_PYTHON", sys.executable)


def _workdir(state_dir: Path, machine: str) -> Path:
    """``<state_dir>/machines/<machine>``; refuses a name that would lead anywhere else (plan
    checks names too, but a provider is also called without a plan)."""
    if not machine or machine in (".", "..") or any(c in machine for c in "/\\\0"):
        msg = f"machine name {machine!r} is invalid: it names a directory; use e.g. 'gpu-1'"
        raise ConfigError(msg)
    return state_dir / "machines" / machine


def _free_port() -> int:
    # The port is free now; the bridge binds it a moment later. A race with another program is
    # possible but rare, and the bridge then fails with a clear "address in use".
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
