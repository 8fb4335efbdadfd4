"""Offload the grasp planner to a Local machine: `ros2 launch fogros_dist grasp_offload.launch.py`.

Publish depth images (sensor_msgs/msg/Image, 32FC1 meters or 16UC1 millimeters) on /camera/depth
and sensor_msgs/msg/CameraInfo on /camera/camera_info; ranked grasps come back on /grasps
(geometry_msgs/msg/PoseArray, camera frame, best first, with the image's header) and their
predicted qualities on /grasps/quality. Train the model first (`fogros-dist train grasp`, saved
under ~/.cache/fogros_dist/models), or point the node at one with the `model` parameter. Swap
Local() for SSHHost(...) or AWS(...) to plan on a real GPU machine.
"""

from fogros_dist.launch import CloudNode, FogLaunchDescription
from fogros_dist.machines import Local


def generate_launch_description() -> FogLaunchDescription:
    gpu = Local("gpu")
    return FogLaunchDescription(
        [
            CloudNode(
                package="fogros_dist",
                executable="grasp_planner",
                name="grasp_planner",
                machine=gpu,
                # parameters=[{"model": "/path/to/grasp.pt", "top_k": 5}],
                topics_in=[
                    "/camera/camera_info:sensor_msgs/msg/CameraInfo",
                    "/camera/depth:sensor_msgs/msg/Image",
                ],
                topics_out=[
                    "/grasps:geometry_msgs/msg/PoseArray",
                    "/grasps/quality:std_msgs/msg/Float32MultiArray",
                ],
            ),
        ],
        deployment="grasp-offload",
    )
