"""The packages of a colcon workspace, read from their ``package.xml`` files with catkin_pkg.

Found the way colcon and catkin find them: every directory holding a ``package.xml``, below the
workspace root, skipping hidden directories and any directory marked ``COLCON_IGNORE``,
``AMENT_IGNORE`` or ``CATKIN_IGNORE`` (colcon marks its own build/, install/ and log/ so).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fogros_dist.errors import ConfigError

__all__ = ["WorkspacePackage", "discover_packages"]


@dataclass(frozen=True, kw_only=True)
class WorkspacePackage:
    """One package of the workspace.

    ``path`` is its directory relative to the workspace root (POSIX); ``depends`` names every
    package it depends on to build or run (build, buildtool, exec, build_export and plain
    ``depend`` tags whose condition holds), inside the workspace or not.
    """

    name: str
    path: str
    build_type: str
    depends: tuple[str, ...]


def discover_packages(root: Path, *, ros_version: str = "2") -> dict[str, WorkspacePackage]:
    """Every package under ``root``, by name.

    Args:
        root: the workspace root (the directory colcon is run in).
        ros_version: the value of ``$ROS_VERSION`` that package.xml conditions are evaluated with.

    Raises:
        ConfigError: a package.xml is invalid, or two packages have the same name (both named).
    """
    from catkin_pkg.package import InvalidPackage, parse_package
    from catkin_pkg.packages import find_package_paths

    found: dict[str, WorkspacePackage] = {}
    conditions = {"ROS_VERSION": ros_version, "ROS_DISTRO": os.environ.get("ROS_DISTRO", "")}
    for rel in sorted(find_package_paths(str(root))):
        manifest = root / rel / "package.xml"
        try:
            package = parse_package(str(manifest))
        except InvalidPackage as err:
            # catkin_pkg's first line only repeats the file name.
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            reason = "; ".join(lines[1:] or lines)
            msg = f"{manifest} is not a valid package.xml ({reason}): fix it, as colcon would need too"
            raise ConfigError(msg) from err
        package.evaluate_conditions(conditions)
        other = found.get(package.name)
        if other is not None:
            msg = (
                f"workspace {root} has two packages named {package.name!r} ({other.path} and {rel}): "
                f"rename one, or mark one COLCON_IGNORE"
            )
            raise ConfigError(msg)
        depends = [
            dependency.name
            for group in (
                package.build_depends,
                package.buildtool_depends,
                package.build_export_depends,
                package.buildtool_export_depends,
                package.exec_depends,
            )
            for dependency in group
            if dependency.evaluated_condition is not False
        ]
        found[package.name] = WorkspacePackage(
            name=package.name,
            path=Path(rel).as_posix(),
            build_type=str(package.get_build_type()),
            depends=tuple(dict.fromkeys(depends)),
        )
    return found
