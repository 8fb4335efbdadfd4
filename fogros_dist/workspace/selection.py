"""The packages of a workspace that travel to a machine: what its nodes use, and what those need.

A node's package travels when it is a package of the workspace; so does every workspace package
it depends on, transitively. Dependencies outside the workspace (rclpy, std_msgs, numpy) are the
machine's to have: ``rosdep`` installs them where it can. The selection is ordered so that a
package comes after everything it depends on, as colcon builds them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fogros_dist.errors import ConfigError
from fogros_dist.workspace.packages import WorkspacePackage, discover_packages

__all__ = ["WorkspaceSelection", "select_packages"]


@dataclass(frozen=True, kw_only=True)
class WorkspaceSelection:
    """Packages of the workspace at ``root`` (absolute, on the robot) that a machine needs."""

    root: str
    packages: tuple[WorkspacePackage, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The packages' names, dependencies first."""
        return tuple(p.name for p in self.packages)

    @property
    def paths(self) -> tuple[str, ...]:
        """The packages' directories relative to the root (what the push includes)."""
        return tuple(p.path for p in self.packages)

    @property
    def key(self) -> str:
        """Names this workspace on a machine: the same robot workspace always builds in one place
        there, whichever deployment brings it."""
        import socket

        digest = hashlib.sha256(f"{socket.gethostname()}:{self.root}".encode()).hexdigest()[:12]
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(self.root).name) or "ws"
        return f"{name}-{digest}"


def select_packages(root: Path, wanted: Iterable[str]) -> WorkspaceSelection | None:
    """The workspace packages among ``wanted`` and their in-workspace dependencies, dependencies
    first; None when none of ``wanted`` is a package of this workspace.

    Raises:
        ConfigError: ``root`` is not a directory, a package.xml is invalid, or packages depend on
            each other in a cycle.
    """
    if not root.is_dir():
        msg = f"workspace {str(root)!r} is not a directory on this robot: give the root of a colcon workspace"
        raise ConfigError(msg)
    packages = discover_packages(root)
    roots = [name for name in dict.fromkeys(wanted) if name in packages]
    if not roots:
        return None
    ordered: list[WorkspacePackage] = []
    state: dict[str, str] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = " -> ".join((*chain[chain.index(name) :], name))
            msg = f"workspace {root}: packages depend on each other in a cycle ({cycle}): break it"
            raise ConfigError(msg)
        state[name] = "visiting"
        package = packages[name]
        for dependency in package.depends:
            if dependency in packages:
                visit(dependency, (*chain, name))
        state[name] = "done"
        ordered.append(package)

    for name in roots:
        visit(name, ())
    return WorkspaceSelection(root=str(root.resolve()), packages=tuple(ordered))
