"""Which deployment each CloudNode joins, and what each deployment has collected so far.

Launch visits entities depth-first and synchronously: every CloudNode it reaches (whose
condition holds, in whatever GroupAction or included file) resolves itself and registers with
its deployment's :class:`DeploymentCollector` in that one pass; the deployment starts on the next
turn of the event loop, so it sees them all. A CloudNode reached later (in a TimerAction or an
event handler) finds its deployment started and is refused.

The state is kept per launch context (one per ``LaunchService``), in the context's globals, so two
launches in one process never share it.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fogros_dist.errors import ConfigError
from fogros_dist.spec import DeploymentSpec, MachineSpec, NodeSpec

__all__ = ["DeploymentCollector", "LaunchDeployments", "launch_deployments", "unique_deployment_name"]

_CONTEXT_KEY = "fogros_dist_launch_deployments"
# Unnamed deployments are numbered per process: two in one launch (or one test run) never collide.
_unnamed = itertools.count(1)


def unique_deployment_name() -> str:
    """A deployment name no other unnamed deployment of this process has: ``launch-<pid>-<n>``."""
    return f"launch-{os.getpid()}-{next(_unnamed)}"


class DeploymentCollector:
    """The machines and nodes one deployment has collected, until it starts."""

    def __init__(self, *, name: str, workspace: str = "") -> None:
        self.name = name
        self.workspace = workspace
        self.started = False
        self._machines: dict[str, MachineSpec] = {}
        self._nodes: list[NodeSpec] = []
        self._staging: Path | None = None
        self._staged_nodes = itertools.count(1)

    def add(self, node: NodeSpec, machine: MachineSpec) -> None:
        """Register ``node`` (to run on ``machine``).

        Raises:
            ConfigError: the deployment has started already, or another machine has that name.
        """
        if self.started:
            msg = (
                f"CloudNode {node.namespace}/{node.name} was reached after deployment {self.name!r} "
                f"started (in a TimerAction or an event handler?): put every CloudNode where launch "
                f"reaches it when the launch file is loaded"
            )
            raise ConfigError(msg)
        known = self._machines.setdefault(machine.name, machine)
        if known != machine:
            msg = f"two different machines are both named {machine.name!r}: give each machine its own name"
            raise ConfigError(msg)
        self._nodes.append(node)

    def staging_dir(self) -> Path:
        """A fresh directory on the robot for one node's generated files (parameter YAML); all of
        them are removed by :meth:`cleanup`."""
        if self._staging is None:
            self._staging = Path(tempfile.mkdtemp(prefix=f"fogros-{self.name}-"))
        node_dir = self._staging / str(next(self._staged_nodes))
        node_dir.mkdir()
        return node_dir

    def close(self) -> DeploymentSpec:
        """The deployment as collected; no node may register after this."""
        self.started = True
        # The robot's own distro (setup.bash sets ROS_DISTRO) decides the message definitions.
        distro = os.environ.get("ROS_DISTRO")
        spec = DeploymentSpec(
            name=self.name,
            machines=tuple(self._machines.values()),
            nodes=tuple(self._nodes),
            workspace=self.workspace,
        )
        return dataclasses.replace(spec, distro=distro) if distro else spec

    def cleanup(self) -> None:
        """Remove the generated files (once the deployment is down)."""
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None


class LaunchDeployments:
    """One launch context's deployments, and the FogLaunchDescriptions being visited right now."""

    def __init__(self) -> None:
        self._stack: list[str] = []
        self._workspaces: dict[str, str] = {}
        self._collectors: dict[str, DeploymentCollector] = {}
        self._default: str | None = None

    def enter(self, name: str, *, workspace: str = "") -> None:
        """A FogLaunchDescription called ``name`` is being visited: CloudNodes reached now (in its
        included files too) join it."""
        self._stack.append(name)
        if workspace:
            self._workspaces[name] = workspace

    def leave(self, name: str) -> None:
        """The FogLaunchDescription called ``name`` has been visited."""
        if self._stack and self._stack[-1] == name:
            self._stack.pop()

    def name_for(self, tagged: str | None) -> str:
        """The deployment a CloudNode joins: the FogLaunchDescription that holds it (``tagged``),
        else the one being visited, else this launch's own unnamed deployment."""
        if tagged is not None:
            return tagged
        if self._stack:
            return self._stack[-1]
        if self._default is None:
            self._default = unique_deployment_name()
        return self._default

    def collector(self, name: str) -> tuple[DeploymentCollector, bool]:
        """Deployment ``name``'s collector, and whether it was made just now."""
        found = self._collectors.get(name)
        if found is not None:
            return found, False
        made = DeploymentCollector(name=name, workspace=self._workspaces.get(name, ""))
        self._collectors[name] = made
        return made, True


def launch_deployments(context: Any) -> LaunchDeployments:
    """The deployments of launch context ``context`` (made on first use)."""
    found = context.get_locals_as_dict().get(_CONTEXT_KEY)
    if isinstance(found, LaunchDeployments):
        return found
    made = LaunchDeployments()
    context.extend_globals({_CONTEXT_KEY: made})
    return made
