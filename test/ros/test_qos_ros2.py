"""QoS discovered and mirrored with real ROS 2: an rclpy SensorDataQoS publisher bridged with no
QoS given, and a /tf_static-like latched topic that a `ros2 topic echo --qos-durability
transient_local` started late on the far side still prints.

Needs a sourced ROS 2 with rmw_cyclonedds_cpp; skipped without rclpy. DDS stays on loopback (the
session fixture sets CYCLONEDDS_URI, which rmw_cyclonedds_cpp reads too, and pins the RMW).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import zenoh
from ros_test_helpers import TIMEOUT, Inbox, Waiter

from fogros_dist.net.bridge import Bridge
from fogros_dist.net.zenoh_config import config_for
from fogros_dist.ros.dds import DdsGraph
from fogros_dist.ros.graph import RosGraph
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import BridgeRunSpec, QosSpec, TopicSpec

pytestmark = pytest.mark.ros
pytest.importorskip("rclpy")

from fogros_dist.ros.rclpy_graph import RclpyGraph  # noqa: E402  (after the skip)

STRING = "std_msgs/msg/String"
DEPLOYMENT = "qos-ros2"

# A LiDAR-like driver: best effort, depth 5 (rclpy's qos_profile_sensor_data), every 50 ms.
SENSOR_PUBLISHER = """
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.qos import qos_profile_sensor_data
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node("lidar_driver")
publisher = node.create_publisher(String, "/scan", qos_profile_sensor_data)
count = [0]
def tick():
    count[0] += 1
    publisher.publish(String(data=f"scan {count[0]}"))
node.create_timer(0.05, tick)
try:
    rclpy.spin(node)
except (KeyboardInterrupt, ExternalShutdownException):
    pass
"""

# A robot_state_publisher-like node: one message on a latched topic (transient local, depth 1,
# as /tf_static's StaticTransformBroadcaster uses), then it only stays alive.
LATCHED_PUBLISHER = """
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.qos import DurabilityPolicy, QoSProfile
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node("static_broadcaster")
qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
publisher = node.create_publisher(String, "/tf_static_like", qos)
publisher.publish(String(data="latched once"))
print("published", flush=True)
try:
    rclpy.spin(node)
except (KeyboardInterrupt, ExternalShutdownException):
    pass
"""


def _ros_process(script: str, domain_id: int) -> subprocess.Popen[str]:
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain_id), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _stop(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        process.terminate()
    try:
        out, err = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return out + err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stats(bridge: Bridge, name: str, direction: str) -> dict[str, object]:
    for topic in bridge.stats.snapshot()["topics"]:
        if topic["topic"] == name and topic["direction"] == direction:
            return dict(topic)
    raise AssertionError(f"no {direction} stats for {name}")


@contextmanager
def _bridge(spec: BridgeRunSpec, graph: RosGraph) -> Iterator[Bridge]:
    session = zenoh.open(config_for(spec))
    bridge = Bridge(spec=spec, graph=graph, session=session, types=MessageTypes("jazzy"))
    try:
        bridge.start(peer_timeout=TIMEOUT)
        yield bridge
    finally:
        bridge.close()
        session.close()


@dataclass
class Bridged:
    """Both sides of a running bridge pair: the robot's domain (an rclpy graph), the machine's
    (a DDS graph) and the machine bridge."""

    robot_domain: int
    machine_domain: int
    machine_bridge: Bridge


@pytest.fixture
def bridged(new_domain_id: Callable[[], int], tmp_path: Path) -> Iterator[Callable[[TopicSpec], Bridged]]:
    """``bridged(topic)`` runs a DDS machine bridge (inbound ``topic``) and an rclpy robot bridge
    (outbound ``topic``) in this process; everything is closed after the test."""
    with ExitStack() as stack:

        def make(topic: TopicSpec) -> Bridged:
            robot_domain, machine_domain = new_domain_id(), new_domain_id()
            endpoint = f"tcp/127.0.0.1:{_free_port()}"
            machine = BridgeRunSpec(
                deployment=DEPLOYMENT, side="machine", machine="gpu", listen=(endpoint,), inbound=(topic,),
                domain_id=machine_domain, graph="dds", stats_path=str(tmp_path / "machine.json"),
            )  # fmt: skip
            robot = BridgeRunSpec(
                deployment=DEPLOYMENT, side="robot", machine="robot", connect=(endpoint,), outbound=(topic,),
                domain_id=robot_domain, graph="rclpy", stats_path=str(tmp_path / "robot.json"),
            )  # fmt: skip
            machine_graph = DdsGraph(machine_domain)
            stack.callback(machine_graph.close)
            machine_bridge = stack.enter_context(_bridge(machine, machine_graph))
            robot_graph = RclpyGraph(robot_domain)
            stack.callback(robot_graph.close)
            stack.enter_context(_bridge(robot, robot_graph))
            return Bridged(
                robot_domain=robot_domain, machine_domain=machine_domain, machine_bridge=machine_bridge
            )

        yield make


def test_rclpy_discovers_a_sensor_data_publishers_qos(ros_domain_id: int, wait_for: Waiter) -> None:
    driver = _ros_process(SENSOR_PUBLISHER, ros_domain_id)
    graph = RclpyGraph(ros_domain_id)
    try:
        found = graph.discover_topic("/scan", 20.0)
        assert found is not None
        assert (found.type_name, found.publishers) == (STRING, 1)
        assert (found.qos.reliability, found.qos.durability, found.qos.depth) == (
            "best_effort",
            "volatile",
            5,
        )
    finally:
        graph.close()
        _stop(driver)


def test_a_sensor_data_publisher_crosses_with_no_qos_given(
    bridged: Callable[[TopicSpec], Bridged], types: MessageTypes
) -> None:
    link = bridged(TopicSpec(name="/scan", type=STRING))
    driver = _ros_process(SENSOR_PUBLISHER, link.robot_domain)
    app = DdsGraph(link.machine_domain)
    try:
        inbox = Inbox()
        app.subscribe(
            TopicSpec(name="/scan", type=STRING, qos=QosSpec(reliability="best_effort", depth=5)), inbox
        )
        assert types.deserialize(STRING, inbox.get(timeout=30.0)).data.startswith("scan ")
        found = app.discover_topic("/scan", TIMEOUT)  # the machine bridge's mirrored publisher
        assert found is not None
        assert (found.qos.reliability, found.qos.depth) == ("best_effort", 5)
    finally:
        app.close()
        _stop(driver)


def test_ros2_topic_echo_started_late_gets_a_latched_message_through_the_bridge(
    bridged: Callable[[TopicSpec], Bridged], wait_for: Waiter
) -> None:
    from ros2_lane import ros2_argv

    topic = TopicSpec(name="/tf_static_like", type=STRING)
    link = bridged(topic)
    broadcaster = _ros_process(LATCHED_PUBLISHER, link.robot_domain)
    try:
        # Published once, long before anyone listens on the machine's graph.
        assert wait_for(lambda: _stats(link.machine_bridge, topic.name, "inbound")["messages"] == 1, 30.0)
        echo = subprocess.run(
            ros2_argv(
                "topic", "echo", "--once", "--qos-durability", "transient_local",
                "--qos-reliability", "reliable", topic.name, STRING,
            ),
            env={**os.environ, "ROS_DOMAIN_ID": str(link.machine_domain)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )  # fmt: skip
        assert echo.returncode == 0, echo.stderr
        assert "data: latched once" in echo.stdout
    finally:
        _stop(broadcaster)


@pytest.fixture
def types() -> MessageTypes:
    return MessageTypes("jazzy")
