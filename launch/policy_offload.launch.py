"""Offload the imitation policy to a Local machine: `ros2 launch fogros_dist policy_offload.launch.py`.

Train a policy first (`fogros-dist train policy`; it lands in default_model_dir()/policy.pt, or
pass model:=PATH). Publish sensor_msgs/msg/JointState on /joint_states (joints x, y) and
geometry_msgs/msg/PoseStamped on /goal; one geometry_msgs/msg/TwistStamped comes back on /cmd per
joint state, stamped like it. Swap Local() for SSHHost(...) or AWS(...) to serve it from a GPU box.
"""

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration

from fogros_dist.launch import CloudNode, FogLaunchDescription
from fogros_dist.machines import Local
from fogros_dist.workloads.base import default_model_dir


def generate_launch_description() -> FogLaunchDescription:
    gpu = Local("gpu")
    return FogLaunchDescription(
        [
            DeclareLaunchArgument(
                "model",
                default_value=str(default_model_dir() / "policy.pt"),
                description="the trained policy (fogros-dist train policy --out PATH)",
            ),
            CloudNode(
                package="fogros_dist",
                executable="policy_node",
                name="policy_node",
                machine=gpu,
                parameters=[{"model": LaunchConfiguration("model")}],
                topics_in=[
                    "/joint_states:sensor_msgs/msg/JointState",
                    "/goal:geometry_msgs/msg/PoseStamped",
                ],
                topics_out=["/cmd:geometry_msgs/msg/TwistStamped"],
            ),
        ],
        deployment="policy-offload",
    )
