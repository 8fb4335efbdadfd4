"""The Local provider: each "machine" is a set of supervised process groups on this machine.

It is the embedded default and the model for the remote providers: a machine gets its own working
directory, its own ROS 2 domain on a loopback-only DDS configuration (so its graph is isolated from
the robot's and the bridge is the only path between them) and its own Zenoh port on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

from fogros_dist.errors import ConfigError, MissingExecutable, ProvisionError
from fogros_dist.providers.base import Capabilities, ProcessSpec, ProvisionContext
from fogros_dist.providers.local.process import LocalProcess
from fogros_dist.spec import Host, MachineSpec, ProcessRecord

__all__ = ["LocalProvider"]

# ROS 2 domain IDs 0..232 are valid with the default port mapping; the high range is rarely used
# by hand, so Local machines take theirs from it.
_DOMAIN_RANGE = range(120, 233)
_OPTIONS = {"domain_id", "python"}


class LocalProvider:
    """Processes on this machine, one working directory and one ROS domain per machine."""

    name: ClassVar[str] = "local"
    capabilities: ClassVar[Capabilities] = Capabilities()

    def validate(self, machine: MachineSpec) -> None:
        """Reject unknown options and out-of-range values, naming them."""
        for key, value in machine.options:
            if key not in _OPTIONS:
                msg = (
                    f"machine {machine.name!r}: option {key!r} is not supported by provider 'local' "
                    f"(supported: {', '.join(sorted(_OPTIONS))})"
                )
                raise ConfigError(msg)
            if key == "domain_id" and (not isinstance(value, int) or not 0 <= value <= 232):
                msg = f"machine {machine.name!r}: domain_id {value!r} is out of range: use 0..232"
                raise ConfigError(msg)

    def create(self, machine: MachineSpec, ctx: ProvisionContext) -> Host:
        """Make the machine's working directory and pick its ROS domain and Zenoh port."""
        self.validate(machine)
        workdir = ctx.state_dir / "machines" / machine.name
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        domain_id = _pick_domain(machine, ctx.used_domain_ids)
        # Imported here: the ROS layer is only needed once a machine is really created.
        from fogros_dist.ros.cyclone_config import loopback_config

        dds_config = workdir / "cyclonedds.xml"
        dds_config.write_text(loopback_config(domain_id))
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
        target = Path(host.workdir) / remote_name
        if local.resolve() != target.resolve():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, target)
        return target

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
        )

    def attach(self, host: Host, record: ProcessRecord) -> LocalProcess:
        """A handle on a process recorded earlier; it is signalled only if still the same process."""
        del host
        return LocalProcess(record)

    def terminate(self, host: Host) -> None:
        """Nothing outlives the processes here; the logs stay for `fogros-dist logs`."""
        if not Path(host.workdir).exists():
            return
        for leftover in ("cyclonedds.xml",):
            (Path(host.workdir) / leftover).unlink(missing_ok=True)

    @staticmethod
    def _env(host: Host) -> dict[str, str]:
        env = dict(os.environ)
        env.update(dict(host.env))
        # Output must reach the log files line by line, not at exit.
        env["PYTHONUNBUFFERED"] = "1"
        return env


def _python(host: Host) -> str:
    return dict(host.env).get("FOGROS_DIST_PYTHON", sys.executable)


def _pick_domain(machine: MachineSpec, used: frozenset[int]) -> int:
    wanted = machine.option("domain_id")
    if isinstance(wanted, int):
        return wanted
    for domain in _DOMAIN_RANGE:
        if domain not in used:
            return domain
    msg = (
        f"machine {machine.name!r}: every ROS domain in {_DOMAIN_RANGE.start}..{_DOMAIN_RANGE.stop - 1} "
        f"is taken by other deployments: run 'fogros-dist down' on some, or set option domain_id"
    )
    raise ProvisionError(msg)


def _free_port() -> int:
    # The port is free now; the bridge binds it a moment later. A race with another program is
    # possible but rare, and the bridge then fails with a clear "address in use".
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
