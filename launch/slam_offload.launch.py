"""Offload LiDAR SLAM to a Local machine: `ros2 launch fogros_dist slam_offload.launch.py`.

Publish sensor_msgs/msg/PointCloud2 on /points (a spinning LiDAR, ideally with a per-point
``time`` or ``t`` field for deskewing); nav_msgs/msg/Odometry comes back on /odom for every scan,
and the map (PointCloud2 in ``odom``) on /map every ``map_every`` scans. Swap Local() for
SSHHost(...) or AWS(...) to run the odometry on a bigger machine.
"""

from fogros_dist.launch import CloudNode, FogLaunchDescription
from fogros_dist.machines import Local


def generate_launch_description() -> FogLaunchDescription:
    machine = Local("slam")
    return FogLaunchDescription(
        [
            CloudNode(
                package="fogros_dist",
                executable="slam_node",
                name="slam_node",
                machine=machine,
                parameters=[{"map_every": 10, "map_voxel": 0.25, "max_map_points": 100000}],
                topics_in=["/points:sensor_msgs/msg/PointCloud2"],
                topics_out=["/odom:nav_msgs/msg/Odometry", "/map:sensor_msgs/msg/PointCloud2"],
            ),
        ],
        deployment="slam-offload",
    )
