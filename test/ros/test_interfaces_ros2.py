"""The user's own interface types with a real ROS 2: ``example_interfaces/msg/Int32`` from the
sourced installation, and ``lab_msgs`` built with colcon against it, each published by rclpy on
the robot's graph and received on the machine's through two bridges that know the types only from
the spec's interface definitions. Skipped without rclpy (the ROS lane).
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bridge_threads import free_port, run_bridges
from cyclonedds.builtin import BuiltinDataReader, BuiltinTopicDcpsPublication
from cyclonedds.core import Policy
from interface_packages import BOX, DETECTION, source_package
from ros_test_helpers import Inbox, wait_for

from fogros_dist.ros.dds import DdsGraph
from fogros_dist.ros.interfaces import InterfaceIndex, needed_interfaces, register_interfaces
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import BridgeRunSpec, InterfaceDef, TopicSpec, from_json, to_json

pytestmark = pytest.mark.ros
pytest.importorskip("rclpy")

DEPLOYMENT = "test-interfaces-ros2"
INT32 = "example_interfaces/msg/Int32"
DISTRO = os.environ.get("ROS_DISTRO", "jazzy")

# A plain rclpy publisher, as a robot's own node: the message class and topic come from argv.
PUBLISHER = """
import sys
import rclpy
from rclpy.executors import ExternalShutdownException
kind, topic = sys.argv[1], sys.argv[2]
rclpy.init()
node = rclpy.create_node("publisher")
if kind == "int32":
    from example_interfaces.msg import Int32 as Msg
else:
    from lab_msgs.msg import Detection as Msg
publisher = node.create_publisher(Msg, topic, 10)
def tick():
    msg = Msg()
    if kind == "int32":
        msg.data = 42
    else:
        msg.header.frame_id = "camera"
        msg.box.width = 64.0
        msg.label = "from rclpy"
        msg.score = 0.5
    publisher.publish(msg)
node.create_timer(0.05, tick)
try:
    rclpy.spin(node)
except (KeyboardInterrupt, ExternalShutdownException):
    pass
"""


def test_int32_from_the_installed_ros2_is_bridged(new_domain_id: Callable[[], int], tmp_path: Path) -> None:
    index = InterfaceIndex.from_environment()
    found = needed_interfaces([INT32], types=MessageTypes(DISTRO), index=index)
    assert [d.name for d in found] == [INT32]
    installed = [p / "share/example_interfaces/msg/Int32.msg" for p in index.prefixes]
    assert any(path.is_file() and path.read_text() == found[0].text for path in installed)
    received = _bridge_from_rclpy(
        new_domain_id,
        tmp_path,
        topic=TopicSpec(name="/count", type=INT32),
        interfaces=found,
        env=dict(os.environ),
    )
    assert received.data == 42


def test_colcon_built_package_is_bridged_from_rclpy(
    new_domain_id: Callable[[], int], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from ros2_lane import ros2_interpreter, sourced
    from workspace_helpers import colcon_build

    workspace = tmp_path / "ws"
    source_package(workspace / "src")
    install = colcon_build(workspace, env=dict(os.environ), python=ros2_interpreter())
    env = sourced(install / "setup.bash")
    # Found both ways: the source workspace being offloaded, and the install it built.
    from_source = needed_interfaces(
        [DETECTION], types=MessageTypes(DISTRO), index=InterfaceIndex(workspaces=(workspace,))
    )
    from_install = needed_interfaces(
        [DETECTION], types=MessageTypes(DISTRO), index=InterfaceIndex.from_environment(environ=env)
    )
    assert [d.name for d in from_source] == [d.name for d in from_install] == [BOX, DETECTION]
    assert [d.text for d in from_source] == [d.text for d in from_install]
    caplog.set_level(logging.INFO, logger="fogros_dist.bridge")
    received = _bridge_from_rclpy(
        new_domain_id,
        tmp_path,
        topic=TopicSpec(name="/detections", type=DETECTION),
        interfaces=from_source,
        env=env,
    )
    assert (received.label, received.box.width, received.header.frame_id) == ("from rclpy", 64.0, "camera")
    # This process never sourced the workspace: its rclpy cannot import lab_msgs, so 'auto' took dds.
    assert "graph 'auto' uses the dds adapter: lab_msgs/msg/Detection is not built" in caplog.text


def _bridge_from_rclpy(
    new_domain_id: Callable[[], int],
    tmp_path: Path,
    *,
    topic: TopicSpec,
    interfaces: tuple[InterfaceDef, ...],
    env: dict[str, str],
) -> Any:
    """Publish ``topic`` from a real rclpy node on the robot's graph; return the first message the
    machine's graph receives through both bridges, after checking the type hash rmw announced."""
    from ros2_lane import ros2_interpreter

    endpoint = f"tcp/127.0.0.1:{free_port()}"
    robot_domain, machine_domain = new_domain_id(), new_domain_id()
    common: dict[str, Any] = {"deployment": DEPLOYMENT, "distro": DISTRO, "interfaces": interfaces}
    machine = BridgeRunSpec(
        side="machine", machine="gpu", listen=(endpoint,), inbound=(topic,), domain_id=machine_domain,
        graph="dds", stats_path=str(tmp_path / "machine-stats.json"), **common,
    )  # fmt: skip
    robot = BridgeRunSpec(
        side="robot", machine="robot", connect=(endpoint,), outbound=(topic,), domain_id=robot_domain,
        graph="auto", stats_path=str(tmp_path / "robot-stats.json"), **common,
    )  # fmt: skip
    machine, robot = (from_json(BridgeRunSpec, to_json(s)) for s in (machine, robot))
    types = MessageTypes(DISTRO)
    register_interfaces(types, interfaces)
    assert topic.type is not None
    publisher = subprocess.Popen(
        [ros2_interpreter(), "-c", PUBLISHER, "int32" if topic.type == INT32 else "detection", topic.name],
        env={**env, "ROS_DOMAIN_ID": str(robot_domain), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with run_bridges(machine, robot):
            robot_view = DdsGraph(robot_domain, types=types)
            machine_app = DdsGraph(machine_domain, types=types)
            try:
                inbox = Inbox()
                machine_app.subscribe(topic, inbox)
                cdr = inbox.get(timeout=60.0)
                # What rmw_cyclonedds_cpp announces for the type is the hash computed here.
                assert _announced_type_hash(robot_view, topic.name) == types.resolve(topic.type).type_hash
                return types.deserialize(topic.type, cdr)
            finally:
                robot_view.close()
                machine_app.close()
    finally:
        publisher.terminate()
        out, err = publisher.communicate(timeout=10.0)
        assert publisher.returncode in (0, -15), out + err


def _announced_type_hash(graph: DdsGraph, topic_name: str) -> str:
    reader = BuiltinDataReader(graph._participant, BuiltinTopicDcpsPublication)
    found: list[Any] = []

    def seen() -> bool:
        found.extend(
            e
            for e in reader.take(N=64)
            if getattr(e, "topic_name", "") == f"rt{topic_name}" and b"typehash=" in _user_data(e)
        )
        return bool(found)

    try:
        assert wait_for(seen, 10.0), f"no publication of rt{topic_name} with a type hash was discovered"
    finally:
        reader.__del__()
    text = _user_data(found[0]).decode()
    return text.split("typehash=", 1)[1].split(";", 1)[0]


def _user_data(endpoint: Any) -> bytes:
    # cyclonedds' Qos has `in` and `[]` but no get().
    policy = endpoint.qos[Policy.Userdata] if Policy.Userdata in endpoint.qos else None  # noqa: SIM401
    return bytes(policy.data) if policy is not None else b""
