"""Which workspace packages each machine of a deployment needs (robot side, at plan time).

The workspace is, in order: the machine's own option ``workspace``, the deployment's
``workspace``, else the colcon workspaces of the overlay this process runs in (most recently
sourced first; the first one holding any of the machine's node packages is used). fogros_dist
itself never travels: every machine runs it from its own runtime.
"""

from __future__ import annotations

from pathlib import Path

from fogros_dist.errors import ConfigError
from fogros_dist.spec import DeploymentSpec
from fogros_dist.workspace import WorkspaceSelection, select_packages
from fogros_dist.workspace.overlay import overlay_workspaces

__all__ = ["workspace_for"]

# Provided by the machine's runtime (the pushed wheel), never built from a workspace.
_RUNTIME_PACKAGES = frozenset({"fogros_dist"})


def workspace_for(spec: DeploymentSpec, machine: str) -> WorkspaceSelection | None:
    """The workspace packages ``machine``'s nodes need, or None when none of them is in one.

    Raises:
        ConfigError: a workspace given explicitly is not a directory, or its packages are invalid.
    """
    wanted = [n.package for n in spec.nodes_on(machine) if n.package not in _RUNTIME_PACKAGES]
    if not wanted:
        return None
    option = spec.machine(machine).option("workspace")
    explicit = str(option) if option else spec.workspace
    if explicit:
        root = Path(explicit).expanduser()
        if not root.is_dir():
            where = f"machine {machine!r} option workspace" if option else "the deployment's workspace"
            msg = (
                f"{where} {explicit!r} is not a directory on this robot: give the root of a colcon workspace"
            )
            raise ConfigError(msg)
        return select_packages(root, wanted)
    for root in overlay_workspaces():
        found = select_packages(root, wanted)
        if found is not None:
            return found
    return None
