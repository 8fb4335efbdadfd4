"""fogros_dist: fog robotics for ROS 2.

Mark a node for the cloud in a launch file; fogros_dist provisions the machine, runs the node there
and bridges its topics back over Zenoh. See docs/ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
