"""Whether this interpreter has fogros_dist's runtime, and the one command that installs it.

A colcon build of fogros_dist puts the package on ROS 2's Python path, but not its dependencies
from PyPI: ``ros2 launch`` of a launch file with a CloudNode would then die on the first missing
import. Checked where ROS 2 first imports fogros_dist (the launch face), so the user gets one line
naming the fix instead.
"""

from __future__ import annotations

import importlib.util
import sys

from fogros_dist.errors import MissingDependency

__all__ = ["RUNTIME_MODULES", "missing_runtime", "require_runtime"]

# What the launch face, the deployment engine and the bridge import (distribution: module).
RUNTIME_MODULES = {
    "cyclonedds": "cyclonedds",
    "eclipse-zenoh": "zenoh",
    "rosbags": "rosbags",
    "numpy": "numpy",
    "catkin-pkg": "catkin_pkg",
    "packaging": "packaging",
    # The bridge's codecs (net/codecs.py).
    "simplejpeg": "simplejpeg",
    "zstandard": "zstandard",
    "pillow": "PIL",
}


def missing_runtime() -> list[str]:
    """The runtime distributions this interpreter cannot import (none: [])."""
    return [dist for dist, module in RUNTIME_MODULES.items() if importlib.util.find_spec(module) is None]


def require_runtime() -> None:
    """Raise MissingDependency naming what is missing and the command that installs it."""
    missing = missing_runtime()
    if missing:
        msg = (
            f"fogros_dist's runtime is not installed for {sys.executable} (missing: {', '.join(missing)}): "
            f"run 'ros2 run fogros_dist install_runtime' once, then launch again"
        )
        raise MissingDependency(msg)
