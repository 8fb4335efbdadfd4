"""The ROS 2 launch face: ``CloudNode``, ``FogLaunchDescription`` and ``FogTraining``.

These adapters stay thin: each CloudNode resolves itself in its launch context as launch_ros
resolves a Node (``resolve``), joins its deployment (``collector``), and the deployment's
``FogDeployment`` action hands the plain :class:`~fogros_dist.spec.DeploymentSpec` to
:mod:`fogros_dist.deploy`. Importing this package needs ROS 2 (launch_ros imports rclpy).
"""

from __future__ import annotations

from fogros_dist.runtime_check import require_runtime

# Before anything below imports a dependency: ROS 2's Python may lack them all (one line, the fix).
require_runtime()

from fogros_dist.launch.actions import FogDeployment  # noqa: E402
from fogros_dist.launch.cloud_node import CloudNode  # noqa: E402
from fogros_dist.launch.description import FogLaunchDescription  # noqa: E402
from fogros_dist.launch.events import DeploymentDown, DeploymentFailed, DeploymentUp  # noqa: E402
from fogros_dist.launch.training import FogTraining  # noqa: E402

__all__ = [
    "CloudNode",
    "DeploymentDown",
    "DeploymentFailed",
    "DeploymentUp",
    "FogDeployment",
    "FogLaunchDescription",
    "FogTraining",
]
