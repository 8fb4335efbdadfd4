"""Offload edge_detector to a Local machine: `ros2 launch fogros_dist offload_edge_detector.launch.py`.

Publish sensor_msgs/msg/Image on /camera/image; the edges come back on /camera/edges. Swap Local()
for SSHHost(...) or AWS(...) to run the node on a real GPU machine.
"""

from fogros_dist.launch import CloudNode, FogLaunchDescription
from fogros_dist.machines import Local


def generate_launch_description() -> FogLaunchDescription:
    gpu = Local("gpu")
    return FogLaunchDescription(
        [
            CloudNode(
                package="fogros_dist",
                executable="edge_detector",
                name="edge_detector",
                machine=gpu,
                topics_in=["/camera/image:sensor_msgs/msg/Image"],
                topics_out=["/camera/edges:sensor_msgs/msg/Image"],
            ),
        ],
        deployment="edge-offload",
    )
