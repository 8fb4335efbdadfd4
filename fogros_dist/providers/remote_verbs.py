"""The provider verbs every SSH-reached machine shares, whichever provider created it.

SSHHost and AWS differ only in how a machine comes to exist (``create``) and goes away
(``terminate``); once it runs, preparing it, resolving nodes, uploading files and supervising
processes all go through :class:`~fogros_dist.remote.machine.RemoteMachines`. A provider inherits
these verbs and sets ``self._machines``.
"""

from __future__ import annotations

from pathlib import Path

from fogros_dist.providers.base import ProcessSpec, ProvisionContext
from fogros_dist.remote.machine import RemoteMachines
from fogros_dist.remote.process import RemoteProcess
from fogros_dist.remote.sync import SyncStats
from fogros_dist.spec import Host, ProcessRecord

__all__ = ["RemoteMachineVerbs"]


class RemoteMachineVerbs:
    """``prepare``, ``resolve_node``, ``bridge_argv``, ``upload``, ``start`` and ``attach`` over SSH."""

    _machines: RemoteMachines

    def prepare(self, host: Host, ctx: ProvisionContext) -> None:
        """Install the runtime (unless cached) while pushing ``ctx.workspace`` (only changes);
        ``ctx.cancel`` stops either within about a second (Cancelled), and the verbs after it
        (``resolve_node``, ``start``) give up on it too."""
        self._machines.prepare(host, workspace=ctx.workspace, progress=ctx.progress, cancel=ctx.cancel)

    def resolve_node(self, host: Host, *, package: str, executable: str) -> tuple[str, ...]:
        """Resolve the executable on the machine; MissingExecutable naming where it looked."""
        return self._machines.resolve_node(host, package=package, executable=executable)

    def bridge_argv(self, host: Host, spec_path: Path) -> tuple[str, ...]:
        """The machine bridge, run by the machine's runtime venv."""
        return self._machines.bridge_argv(host, spec_path)

    def upload(self, host: Host, local: Path, remote_name: str) -> Path:
        """Copy a file into the machine's working directory."""
        return self._machines.upload(host, local, remote_name)

    def push_dataset(self, host: Host, local: Path) -> tuple[str, SyncStats]:
        """Delta-sync a robot folder into the machine's dataset cache; its path there, what was sent."""
        return self._machines.push_dataset(host, local)

    def run_command(
        self, host: Host, argv: list[str], *, stdin: str | None = None, timeout: float = 120.0
    ) -> tuple[int, str, str]:
        """Run a short command on the machine (exit code, stdout, stderr); ``stdin`` never logged."""
        return self._machines.run_command(host, argv, stdin=stdin, timeout=timeout)

    def download(self, host: Host, remote: str, local: Path) -> Path:
        """Copy a file of the machine (absolute path there) to the robot."""
        return self._machines.download(host, remote, local)

    def start(self, host: Host, process: ProcessSpec) -> RemoteProcess:
        """Start a supervised process there (its own session, output to files on the machine)."""
        return self._machines.start(
            host,
            role=process.role,
            name=process.name,
            argv=process.argv,
            env=process.env,
            log_max_bytes=process.log_max_bytes,
        )

    def attach(self, host: Host, record: ProcessRecord) -> RemoteProcess:
        """A handle on a process started earlier, possibly by another supervisor."""
        return self._machines.attach(host, record)
