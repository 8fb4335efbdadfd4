"""The user's colcon workspace: which packages an offloaded node needs, and where they are.

On the robot (:mod:`~fogros_dist.workspace.packages`, :mod:`~fogros_dist.workspace.overlay`,
:mod:`~fogros_dist.workspace.selection`): the workspace a launch runs in is found from its
overlay; only the packages the offloaded nodes use, and their dependencies inside the workspace,
are selected to travel. On the machine, :mod:`~fogros_dist.workspace.build` turns colcon's output
into progress and its failures into one line.
"""

from __future__ import annotations

from fogros_dist.workspace.packages import WorkspacePackage, discover_packages
from fogros_dist.workspace.selection import WorkspaceSelection, select_packages

__all__ = ["WorkspacePackage", "WorkspaceSelection", "discover_packages", "select_packages"]
