"""`ros2 launch` end to end for what is not a topic: a user's rclpy node on a Local machine serves
a service, an action and its parameters, and the robot reaches all three with ROS 2's own tools.

The node (the test's own, on ROS 2's Python) multiplies ``a + b`` by its ``gain`` parameter on
``/add_two_ints`` and counts Fibonacci numbers on the ``/fibonacci`` action with feedback. From the
robot's domain: the real ``ros2 service call``, ``ros2 param list/get/set`` and a plain rclpy
ActionClient; nothing of fogros_dist runs on the robot's side of these calls but the bridge.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from launch_helpers import LaunchRun, ament_prefix_with, node_launch_env, start_ros2_launch, write_launch_file
from ros2_lane import ros2_argv, ros2_interpreter

pytestmark = pytest.mark.ros
pytest.importorskip("rclpy")
pytest.importorskip("launch_ros")

ADD = "example_interfaces/srv/AddTwoInts"
FIBONACCI = "example_interfaces/action/Fibonacci"
DEPLOYMENT = "calc-offload"

_CALC = """
import time

import rclpy
from example_interfaces.action import Fibonacci
from example_interfaces.srv import AddTwoInts
from rclpy.action import ActionServer
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node


class Calc(Node):
    def __init__(self):
        super().__init__("calc_default")
        self.declare_parameter("gain", 1)
        self.create_service(AddTwoInts, "/add_two_ints", self.add)
        self.fibonacci = ActionServer(self, Fibonacci, "/fibonacci", self.count)

    def add(self, request, response):
        response.sum = (request.a + request.b) * self.get_parameter("gain").value
        return response

    def count(self, goal):
        sequence = [0, 1]
        for _ in range(goal.request.order - 1):
            sequence.append(sequence[-1] + sequence[-2])
            goal.publish_feedback(Fibonacci.Feedback(sequence=sequence))
            time.sleep(0.1)
        goal.succeed()
        return Fibonacci.Result(sequence=sequence)


def main():
    rclpy.init()
    node = Calc()
    executor = MultiThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except KeyboardInterrupt:
        print("stopped by KeyboardInterrupt", flush=True)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


main()
"""

# A plain rclpy action client on the robot: one goal, every feedback printed, then the result.
_ACTION_CLIENT = """
import rclpy
from example_interfaces.action import Fibonacci
from rclpy.action import ActionClient

rclpy.init()
node = rclpy.create_node("fibonacci_client")
client = ActionClient(node, Fibonacci, "/fibonacci")
assert client.wait_for_server(timeout_sec=30.0), "no action server"
sent = client.send_goal_async(Fibonacci.Goal(order=6), feedback_callback=lambda f: print(
    "feedback", list(f.feedback.sequence), flush=True))
rclpy.spin_until_future_complete(node, sent, timeout_sec=30.0)
handle = sent.result()
assert handle is not None and handle.accepted, "goal not accepted"
done = handle.get_result_async()
rclpy.spin_until_future_complete(node, done, timeout_sec=30.0)
print("result", list(done.result().result.sequence), flush=True)
"""


@pytest.fixture
def launch_env(ros2_env: dict[str, str], tmp_path: Path, robot_domain: int) -> dict[str, str]:
    """The user's shell: ROS 2, fogros_dist's overlay and the prefix with ``fogcalc``'s ``calc``."""
    prefix = ament_prefix_with(tmp_path, "fogcalc", "calc", _CALC)
    return node_launch_env(ros2_env, prefix, tmp_path / "home", robot_domain)


def _ros2(env: dict[str, str], *args: str, timeout: float = 90.0) -> str:
    """The real ``ros2 ARGS...`` in the robot's domain; its stdout, after asserting it succeeded."""
    done = subprocess.run(
        ros2_argv(*args), env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"ros2 {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def _wait_up(run: LaunchRun, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while f"deployment {DEPLOYMENT} is up" not in run.text():
        assert run.popen.poll() is None, run.text()
        assert time.monotonic() < deadline, run.text()
        time.sleep(0.5)


def test_ros2_service_call_param_and_an_action_client_reach_a_cloud_node(
    launch_env: dict[str, str], tmp_path: Path
) -> None:
    launch_file = write_launch_file(
        tmp_path / "calc.launch.py",
        [
            "from fogros_dist.launch import CloudNode, FogLaunchDescription",
            "from fogros_dist.machines import Local",
            "def generate_launch_description():",
            "    return FogLaunchDescription([CloudNode(package='fogcalc', executable='calc',",
            "        name='calc', machine=Local('gpu'), output='screen', parameters=[{'gain': 2}],",
            f"        services=['/add_two_ints:{ADD}'], actions=['/fibonacci:{FIBONACCI}'])],",
            f"        deployment={DEPLOYMENT!r})",
        ],
    )
    run = start_ros2_launch(launch_file, launch_env)
    try:
        _wait_up(run)
        called = _ros2(launch_env, "service", "call", "/add_two_ints", ADD, "{a: 20, b: 1}")
        assert "sum=42" in called, called

        listed = _ros2(launch_env, "param", "list", "/calc")
        assert "gain" in listed, listed
        got = _ros2(launch_env, "param", "get", "/calc", "gain")
        assert "Integer value is: 2" in got, got
        changed = _ros2(launch_env, "param", "set", "/calc", "gain", "3")
        assert "Set parameter successful" in changed, changed
        called = _ros2(launch_env, "service", "call", "/add_two_ints", ADD, "{a: 20, b: 1}")
        assert "sum=63" in called, called

        client = subprocess.run(
            [ros2_interpreter(), "-c", _ACTION_CLIENT],
            env=launch_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert client.returncode == 0, client.stdout + client.stderr
        lines = client.stdout.splitlines()
        feedback = [line for line in lines if line.startswith("feedback ")]
        # One feedback per step, each a longer prefix of the sequence, then the whole sequence.
        assert feedback[-1] == "feedback [0, 1, 1, 2, 3, 5, 8]", client.stdout
        assert len(feedback) >= 3, client.stdout
        assert lines[-1] == "result [0, 1, 1, 2, 3, 5, 8]", client.stdout
    finally:
        code = run.stop()
    text = run.text()
    assert code == 0, text
    assert f"deployment {DEPLOYMENT} is down" in text, text
    assert "Traceback" not in text, text
