"""Which colcon workspaces the current process runs in, from the overlay it has sourced.

Sourcing ``<ws>/install/setup.bash`` puts ``<ws>/install`` on ``COLCON_PREFIX_PATH`` and each
package's prefix (``<ws>/install/<pkg>``, or ``<ws>/install`` with ``--merge-install``) on
``AMENT_PREFIX_PATH``. colcon marks every install base it makes with ``.colcon_install_layout``;
the workspace root is the directory above it, as colcon's defaults lay it out. A ROS 2
installation from packages has no such marker, so it is never taken for the user's workspace.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["install_base_of", "overlay_workspaces"]

_LAYOUT_MARKER = ".colcon_install_layout"


def install_base_of(prefix: Path) -> Path | None:
    """The colcon install base that ``prefix`` (an install base or a package's prefix) lies in."""
    for candidate in (prefix, prefix.parent):
        if (candidate / _LAYOUT_MARKER).is_file():
            return candidate
    return None


def overlay_workspaces(environ: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """The roots of the colcon workspaces on the overlay, most recently sourced first.

    Args:
        environ: the environment to read (default: this process's).
    """
    env = os.environ if environ is None else environ
    prefixes = [
        Path(entry)
        for name in ("COLCON_PREFIX_PATH", "AMENT_PREFIX_PATH")
        for entry in env.get(name, "").split(os.pathsep)
        if entry
    ]
    roots: list[Path] = []
    for prefix in prefixes:
        base = install_base_of(prefix)
        if base is None:
            continue
        root = base.resolve().parent
        if root not in roots:
            roots.append(root)
    return tuple(roots)
