"""The Provider seam: the small typed set of verbs every machine provider implements.

A provider turns a :class:`~fogros_dist.spec.MachineSpec` into a running :class:`~fogros_dist.spec.Host`,
starts supervised processes there, finds them again from their :class:`~fogros_dist.spec.ProcessRecord`
(after a crash, or from another CLI invocation), and terminates what it created. Capabilities are
declared up front so an unsupported request fails at plan time, not by crashing mid-provision.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, Protocol

from fogros_dist.spec import Host, MachineSpec, NodeSpec, ProcessRecord
from fogros_dist.workspace.selection import WorkspaceSelection

__all__ = [
    "Capabilities",
    "OutputSink",
    "ProcessSpec",
    "Progress",
    "Provider",
    "ProvisionContext",
    "RunningProcess",
]

# Receives one line of a process's output: (machine, process name, stream, text).
OutputSink = Callable[[str, str, Literal["stdout", "stderr"], str], None]


@dataclass(frozen=True, kw_only=True)
class Capabilities:
    """What a provider can do; the planner checks requests against these."""

    spot: bool = False
    gpu: bool = False
    image: bool = False
    remote: bool = False


@dataclass(frozen=True, kw_only=True)
class ProcessSpec:
    """A process to start on a host; ``argv[0]`` is resolved on the host, not on the robot."""

    role: Literal["node", "bridge"]
    name: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    # Its stdout and stderr files rotate before they pass this size (DeploymentSpec.log_max_bytes).
    log_max_bytes: int = 10 * 1024 * 1024


# Receives a provider's progress: (stage, message). Stages a user sees, in order where they apply:
# "requesting", "pending", "running", "ssh-ready", "synced", "bootstrapped", "started".
Progress = Callable[[str, str], None]


@dataclass(frozen=True, kw_only=True)
class ProvisionContext:
    """What a provider may use while creating and preparing a machine for a deployment."""

    deployment: str
    state_dir: Path
    # Domain IDs already taken by the robot and other deployments on this robot's store.
    used_domain_ids: frozenset[int] = frozenset()
    progress: Progress = lambda _stage, _message: None
    # The workspace packages the machine's nodes need, to push and build there (None: nothing).
    workspace: WorkspaceSelection | None = None
    # The nodes the machine will run (what its runtime must hold, e.g. torch).
    nodes: tuple[NodeSpec, ...] = ()
    # Set when the user stops the deployment (Ctrl-C, SIGTERM, `down`) while it comes up: every
    # wait (SSH, instance state, install, push, build, provider calls) checks it at least every
    # second and raises errors.Cancelled, so teardown can begin within 2 s.
    cancel: threading.Event = field(default_factory=threading.Event)
    # When the deployment's record was created (0: unknown). With the deployment and machine
    # names it makes a cloud request's idempotency token: the same for every retry within this
    # record, a new one for the next `up` of the name.
    created_at: float = 0.0


class RunningProcess(Protocol):
    """A handle on a supervised process, wherever it runs."""

    @property
    def record(self) -> ProcessRecord:
        """What identifies the process across restarts of the supervisor."""

    def poll(self) -> int | None:
        """Exit code if the process has ended (negative: killed by that signal), else None."""

    @property
    def unreachable(self) -> str | None:
        """Why the last check of the process could not reach its machine; None if it could."""

    def stop(self, *, grace: float, sigint_grace: float | None = None) -> int | None:
        """Stop the process group; return the exit code if known.

        With ``sigint_grace`` it is stopped as ``ros2 launch`` stops a node: SIGINT, SIGTERM after
        ``sigint_grace`` seconds, SIGKILL ``grace`` seconds later; without, SIGTERM first.
        """

    def stderr_tail(self, lines: int = 20) -> tuple[str, ...]:
        """The last ``lines`` lines the process wrote to stderr."""

    def follow(self, sink: OutputSink) -> None:
        """Stream the process's output lines to ``sink`` (on a background thread) until it ends."""


class Provider(Protocol):
    """A machine provider: Local (processes here), SSHHost, AWS, or a third-party plug-in."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def validate(self, machine: MachineSpec) -> None:
        """Check the machine's options; raise ConfigError naming a bad option and the fix."""

    def create(self, machine: MachineSpec, ctx: ProvisionContext) -> Host:
        """Provision (or reuse) the machine and return where it is. Idempotent per deployment."""

    def prepare(self, host: Host, ctx: ProvisionContext) -> None:
        """Make the machine able to run nodes and the bridge: push the workspace, install what is
        missing (idempotent and cached: a second `up` with nothing changed installs nothing)."""

    def resolve_node(self, host: Host, *, package: str, executable: str) -> tuple[str, ...]:
        """The argv prefix that runs ``package``/``executable`` on ``host``.

        Raises MissingExecutable naming the package, the executable and where it looked.
        """

    def bridge_argv(self, host: Host, spec_path: Path) -> tuple[str, ...]:
        """The argv that runs the machine-side bridge on ``host`` from a BridgeRunSpec file."""

    def upload(self, host: Host, local: Path, remote_name: str) -> Path:
        """Place a local file in the host's working directory; return its path on the host.

        ``remote_name`` is relative to the working directory and may name subdirectories
        (``files/<node>/params.yaml``); missing ones are created.
        """

    def start(self, host: Host, process: ProcessSpec) -> RunningProcess:
        """Start ``process`` on ``host`` in its own session/process group, output to log files."""

    def attach(self, host: Host, record: ProcessRecord) -> RunningProcess:
        """A handle on a process started earlier (possibly by another supervisor)."""

    def terminate(self, host: Host) -> None:
        """Release the machine and everything the provider created for it."""

    def reclaim(self, machine: MachineSpec, *, deployment: str) -> tuple[str, ...]:
        """Release what this provider may have created for ``machine`` of ``deployment`` that no
        Host records: its ``create`` was interrupted, or its supervisor killed, before it
        returned (found by the deployment's tags, not by memory). Idempotent, and quick when
        nothing exists.

        Returns:
            What is still left afterwards, one description each (empty: nothing).
        """

    def remaining(self, host: Host) -> tuple[str, ...]:
        """What of ``host`` still exists after :meth:`terminate`, one description each (empty:
        nothing), so `down` never says "down" while something it created lives on."""
