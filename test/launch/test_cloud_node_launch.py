"""`ros2 launch` end to end: a namespaced, parameterised, remapped CloudNode in a GroupAction.

The node is a real rclpy node of the test's own making, offloaded to a Local machine. Its
parameter comes from a YAML file the launch file names (shipped with the node), its topics are
remapped by SetRemap and the node's own remappings under PushRosNamespace, and it answers through
the bridge. It handles only KeyboardInterrupt, as most rclpy nodes do: stopped with SIGINT first
(as `ros2 launch` stops nodes) it ends without a traceback.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from launch_helpers import (
    ament_prefix_with,
    node_launch_env,
    run_ros2_launch,
    start_ros2_launch,
    write_launch_file,
)

pytestmark = pytest.mark.ros
pytest.importorskip("rclpy")
pytest.importorskip("launch_ros")

STRING = "std_msgs/msg/String"
# The node: greets each request with its `greeting` parameter; prints how it stopped.
_GREETER = """
import rclpy
from rclpy.node import Node
from std_msgs.msg import String


class Greeter(Node):
    def __init__(self):
        super().__init__("greeter_default")
        self.declare_parameter("greeting", "hi")
        self.declare_parameter("suffix", "")
        self.pub = self.create_publisher(String, "out", 10)
        self.create_subscription(String, "in", self.on_request, 10)
        self.get_logger().info(
            f"full name {self.get_fully_qualified_name()}, greeting={self.greeting()!r}"
        )

    def greeting(self):
        return self.get_parameter("greeting").value

    def on_request(self, msg):
        suffix = self.get_parameter("suffix").value
        self.pub.publish(String(data=f"{self.greeting()} {msg.data}{suffix}"))


def main():
    rclpy.init()
    node = Greeter()
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        print("stopped by KeyboardInterrupt", flush=True)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


main()
"""


@pytest.fixture
def launch_env(ros2_env: dict[str, str], tmp_path: Path, robot_domain: int) -> dict[str, str]:
    """The user's shell: ROS 2, fogros_dist's overlay and the prefix with ``fogtest``'s ``greeter``."""
    prefix = ament_prefix_with(tmp_path, "fogtest", "greeter", _GREETER)
    return node_launch_env(ros2_env, prefix, tmp_path / "home", robot_domain)


def _ask(robot_domain: int, *, context: object, timeout: float = 60.0) -> str:
    """Publish requests on the robot's /robot1/requests until a reply comes on /robot1/replies."""
    from fogros_dist.ros.dds import DdsGraph
    from fogros_dist.ros.types import MessageTypes
    from fogros_dist.spec import TopicSpec

    types = MessageTypes("jazzy")
    replies: list[str] = []
    got = threading.Event()

    def on_reply(cdr: bytes) -> None:
        replies.append(types.deserialize(STRING, cdr).data)
        got.set()

    graph = DdsGraph(robot_domain, distro="jazzy")
    try:
        pub = graph.publisher(TopicSpec(name="/robot1/requests", type=STRING))
        graph.subscribe(TopicSpec(name="/robot1/replies", type=STRING), on_reply)
        deadline = time.monotonic() + timeout
        while not got.wait(0.3):
            assert time.monotonic() < deadline, f"no reply on /robot1/replies: {context}"
            pub.publish(types.serialize(STRING, types.message_class(STRING)(data="robot")))
    finally:
        graph.close()
    return replies[0]


def test_namespaced_parameterised_remapped_node_in_a_group_answers_and_stops_cleanly(
    launch_env: dict[str, str], tmp_path: Path, robot_domain: int
) -> None:
    params = tmp_path / "greeter.yaml"
    params.write_text('/robot1/greeter:\n  ros__parameters:\n    greeting: "hello from yaml"\n')
    launch_file = write_launch_file(
        tmp_path / "group.launch.py",
        [
            "from launch.actions import GroupAction",
            "from launch_ros.actions import PushRosNamespace, SetParameter, SetRemap",
            "from fogros_dist.launch import CloudNode, FogLaunchDescription",
            "from fogros_dist.machines import Local",
            "def generate_launch_description():",
            "    return FogLaunchDescription([GroupAction([",
            "        PushRosNamespace('robot1'),",
            "        SetRemap(src='in', dst='requests'),",
            "        SetParameter(name='suffix', value='!'),",
            "        CloudNode(package='fogtest', executable='greeter', name='greeter',",
            "            machine=Local('gpu'), output='screen',",
            f"            parameters=[{str(params)!r}], remappings=[('out', 'replies')],",
            f"            topics_in=['requests:{STRING}'], topics_out=['replies:{STRING}']),",
            "    ])], deployment='group-offload')",
        ],
    )
    run = start_ros2_launch(launch_file, launch_env)
    try:
        reply = _ask(robot_domain, context=run)
    finally:
        code = run.stop()
    text = run.text()
    assert reply == "hello from yaml robot!", text
    # The node's own log line, streamed back: its full name and the parameter from the file.
    assert "[cloud:gpu]" in text
    assert "full name /robot1/greeter, greeting='hello from yaml'" in text
    assert code == 0, text
    logs = (
        Path(launch_env["FOGROS_DIST_HOME"]) / "deployments" / "group-offload" / "machines" / "gpu" / "logs"
    )
    assert (logs / "robot1.greeter.out").read_text().strip().endswith("stopped by KeyboardInterrupt")
    assert "Traceback" not in (logs / "robot1.greeter.err").read_text()


def test_an_argument_that_cannot_apply_remotely_fails_in_one_line(
    launch_env: dict[str, str], tmp_path: Path
) -> None:
    launch_file = write_launch_file(
        tmp_path / "cwd.launch.py",
        [
            "from fogros_dist.launch import CloudNode",
            "from launch import LaunchDescription",
            "from fogros_dist.machines import Local",
            "def generate_launch_description():",
            "    return LaunchDescription([CloudNode(package='fogtest', executable='greeter',",
            "        machine=Local('gpu'), cwd='/tmp')])",
        ],
    )
    done = run_ros2_launch(launch_file, launch_env)
    assert done.returncode != 0
    assert "cwd= is not supported for a node on another machine" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
