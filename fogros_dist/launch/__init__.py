"""The ROS 2 launch face: ``CloudNode`` and ``FogLaunchDescription``.

These adapters stay thin: they resolve launch substitutions into a plain
:class:`~fogros_dist.spec.DeploymentSpec` and hand it to :mod:`fogros_dist.deploy`. Importing this
package needs ROS 2 (launch_ros imports rclpy).
"""

from __future__ import annotations

from fogros_dist.launch.actions import FogDeployment
from fogros_dist.launch.cloud_node import CloudNode
from fogros_dist.launch.description import FogLaunchDescription
from fogros_dist.launch.events import DeploymentDown, DeploymentFailed, DeploymentUp

__all__ = [
    "CloudNode",
    "DeploymentDown",
    "DeploymentFailed",
    "DeploymentUp",
    "FogDeployment",
    "FogLaunchDescription",
]
