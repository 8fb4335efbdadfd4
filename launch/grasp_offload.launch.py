"""Offload the grasp planner: `ros2 launch fogros_dist grasp_offload.launch.py`.

Publish depth images (sensor_msgs/msg/Image, 32FC1 meters or 16UC1 millimeters) on /camera/depth
and sensor_msgs/msg/CameraInfo on /camera/camera_info; ranked grasps come back on /grasps
(geometry_msgs/msg/PoseArray, camera frame, best first, with the image's header) and their
predicted qualities on /grasps/quality.

The robot's model travels with the deployment: this robot's cached grasp.pt (under
~/.cache/fogros_dist/models; trained now, a small one with progress, if there is none; `fogros-dist
train grasp` trains the full one) is shipped to the machine, where the node finds it in
$FOGROS_DIST_NODE_FILES. Nothing is looked up in the machine's own cache, so the same file works
on Local(), SSHHost(...) and AWS(..., instance_type="g5.xlarge"): swap the machine below. On a GPU
machine the runtime gets torch (the node needs it) and AWS picks an image with the NVIDIA driver.
"""

import sys

from fogros_dist.demo import ensure_model
from fogros_dist.launch import CloudNode, FogLaunchDescription
from fogros_dist.machines import Local
from fogros_dist.workloads.base import default_model_dir
from fogros_dist.workloads.grasp.node import MODEL_FILE


def _robot_model() -> str:
    """The robot's grasp model, trained first if this robot has none."""
    path, _metrics, _seconds = ensure_model(
        default_model_dir(), report=lambda line: print(f"[grasp_offload] {line}", file=sys.stderr, flush=True)
    )
    return str(path)


def generate_launch_description() -> FogLaunchDescription:
    # or SSHHost("gpu", "lab-gpu"), or AWS("gpu", instance_type="g5.xlarge", region="us-west-2")
    gpu = Local("gpu")
    return FogLaunchDescription(
        [
            CloudNode(
                package="fogros_dist",
                executable="grasp_planner",
                name="grasp_planner",
                machine=gpu,
                files={MODEL_FILE: _robot_model()},
                # parameters=[{"top_k": 5, "device": "cuda"}],
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
