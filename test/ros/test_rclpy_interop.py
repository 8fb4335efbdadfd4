"""Real ROS 2 (rclpy + rmw_cyclonedds_cpp) against DdsGraph, and the RclpyGraph adapter.

Needs a sourced ROS 2 with rmw_cyclonedds_cpp; skipped without rclpy. DDS stays on loopback: the
session fixture sets CYCLONEDDS_URI (which rmw_cyclonedds_cpp reads too) and pins the RMW.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from cyclonedds.builtin import BuiltinDataReader, BuiltinTopicDcpsPublication
from cyclonedds.core import Policy
from ros_test_helpers import TIMEOUT, Inbox, Waiter, make_image, string_cdr

from fogros_dist.ros.dds import DdsGraph
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import QosSpec, TopicSpec

pytestmark = pytest.mark.ros
pytest.importorskip("rclpy")

from fogros_dist.ros.rclpy_graph import RclpyGraph  # noqa: E402  (after the skip)

STRING = "std_msgs/msg/String"
IMAGE = "sensor_msgs/msg/Image"

# A plain ROS 2 talker, as any robot runs it: std_msgs/String on /chatter every 50 ms.
TALKER = """
import rclpy
from rclpy.executors import ExternalShutdownException
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node("talker")
publisher = node.create_publisher(String, "/chatter", 10)
count = [0]
def tick():
    count[0] += 1
    publisher.publish(String(data=f"hello {count[0]}"))
node.create_timer(0.05, tick)
try:
    rclpy.spin(node)
except (KeyboardInterrupt, ExternalShutdownException):
    pass
"""

# A plain ROS 2 listener: prints the first message on /chatter and exits.
LISTENER = """
import rclpy
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node("listener")
got = []
node.create_subscription(String, "/chatter", lambda msg: got.append(msg.data), 10)
print("ready", flush=True)
while not got:
    rclpy.spin_once(node, timeout_sec=0.1)
print(got[0], flush=True)
"""


def ros_process(script: str, domain_id: int) -> subprocess.Popen[str]:
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain_id), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


@pytest.fixture
def dds(ros_domain_id: int) -> Iterator[DdsGraph]:
    graph = DdsGraph(ros_domain_id)
    yield graph
    graph.close()


@pytest.fixture
def rclpy_graph(ros_domain_id: int) -> Iterator[RclpyGraph]:
    graph = RclpyGraph(ros_domain_id)
    yield graph
    graph.close()


@pytest.fixture
def types() -> MessageTypes:
    return MessageTypes("jazzy")


def test_ros2_talker_is_heard_by_dds_graph(
    dds: DdsGraph, ros_domain_id: int, types: MessageTypes, wait_for: Waiter
) -> None:
    talker = ros_process(TALKER, ros_domain_id)
    try:
        assert dds.discover_type("/chatter", TIMEOUT) == STRING
        inbox = Inbox()
        dds.subscribe(TopicSpec(name="/chatter", type=STRING), inbox)
        cdr = inbox.get()
        message = types.deserialize(STRING, cdr)
        assert message.data.startswith("hello ")  # type: ignore[attr-defined]
        # rmw pads to 4 bytes without counting the padding in the header: bytes arrive as sent.
        assert len(cdr) % 4 == 0

        # The type hash rmw_cyclonedds_cpp announces is the one rosbags computes.
        reader = BuiltinDataReader(dds._participant, BuiltinTopicDcpsPublication)
        found: list[Any] = []

        def seen() -> bool:
            found.extend(e for e in reader.take(N=64) if getattr(e, "topic_name", "") == "rt/chatter")
            return bool(found)

        try:
            assert wait_for(seen, TIMEOUT)
        finally:
            reader.__del__()
        user_data = found[0].qos[Policy.Userdata].data
        assert user_data == f"typehash={types.resolve(STRING).type_hash};".encode()
    finally:
        stop(talker)


def test_dds_graph_is_heard_by_ros2_listener(
    dds: DdsGraph, ros_domain_id: int, types: MessageTypes, wait_for: Waiter
) -> None:
    listener = ros_process(LISTENER, ros_domain_id)
    try:
        assert listener.stdout is not None
        assert listener.stdout.readline().strip() == "ready"
        publisher = dds.publisher(TopicSpec(name="/chatter", type=STRING))
        assert wait_for(lambda: publisher.matched_count() == 1, TIMEOUT)
        publisher.publish(string_cdr(types, "hello from a robot without ROS"))
        out, err = listener.communicate(timeout=TIMEOUT)
        assert out.strip() == "hello from a robot without ROS", err
        assert listener.returncode == 0
    finally:
        stop(listener)


def test_rclpy_graph_and_dds_graph_exchange_raw_cdr(
    dds: DdsGraph, rclpy_graph: RclpyGraph, types: MessageTypes, wait_for: Waiter
) -> None:
    qos = QosSpec(depth=2)
    to_ros, to_dds = Inbox(), Inbox()
    ros_sub = rclpy_graph.subscribe(TopicSpec(name="/image_a", type=IMAGE, qos=qos), to_ros)
    dds_sub = dds.subscribe(TopicSpec(name="/image_b", type=IMAGE, qos=qos), to_dds)
    dds_pub = dds.publisher(TopicSpec(name="/image_a", type=IMAGE, qos=qos))
    ros_pub = rclpy_graph.publisher(TopicSpec(name="/image_b", type=IMAGE, qos=qos))
    endpoints = [ros_sub, dds_sub, dds_pub, ros_pub]
    assert wait_for(lambda: all(e.matched_count() == 1 for e in endpoints), TIMEOUT)

    frame = types.serialize(IMAGE, make_image(types, 6 * 1024 * 1024))  # 4-byte aligned
    dds_pub.publish(frame)
    assert to_ros.get() == frame
    ros_pub.publish(frame)
    assert to_dds.get() == frame
    assert to_ros.threads == {f"rclpy-graph {rclpy_graph.node_name}"}


def test_unaligned_messages_keep_their_content_both_ways(
    dds: DdsGraph, rclpy_graph: RclpyGraph, types: MessageTypes, wait_for: Waiter
) -> None:
    to_ros, to_dds = Inbox(), Inbox()
    rclpy_graph.subscribe(TopicSpec(name="/a", type=STRING), to_ros)
    dds.subscribe(TopicSpec(name="/b", type=STRING), to_dds)
    dds_pub = dds.publisher(TopicSpec(name="/a", type=STRING))
    ros_pub = rclpy_graph.publisher(TopicSpec(name="/b", type=STRING))
    assert wait_for(lambda: dds_pub.matched_count() == 1 and ros_pub.matched_count() == 1, TIMEOUT)

    cdr = string_cdr(types, "hello")  # 14 bytes: DDS pads to 16
    dds_pub.publish(cdr)
    ros_pub.publish(cdr)
    for received in (to_ros.get(), to_dds.get()):
        assert types.deserialize(STRING, received).data == "hello"  # type: ignore[attr-defined]
        assert received[4:14] == cdr[4:14]
        assert len(received) == 16


def test_rclpy_graph_discovers_types_and_closes_cleanly(
    dds: DdsGraph, ros_domain_id: int, wait_for: Waiter
) -> None:
    dds.publisher(TopicSpec(name="/camera/image_raw", type=IMAGE))
    graph = RclpyGraph(ros_domain_id)
    thread_name = f"rclpy-graph {graph.node_name}"
    try:
        assert graph.discover_type("/camera/image_raw", TIMEOUT) == IMAGE
        graph.publisher(TopicSpec(name="/own", type=STRING))
        assert graph.discover_type("/own", 0.2) is None
        assert graph.discover_type("/nobody", 0.1) is None
        inbox = Inbox()
        subscription = graph.subscribe(TopicSpec(name="/x", type=STRING), inbox)
        subscription.close()
        assert subscription.matched_count() == 0
    finally:
        graph.close()
    graph.close()  # idempotent
    assert thread_name not in [t.name for t in threading.enumerate()]


def test_rclpy_graph_rejects_bad_topics(rclpy_graph: RclpyGraph) -> None:
    from fogros_dist.errors import ConfigError, UnknownMessageType

    with pytest.raises(ConfigError, match=r"topic /x has no message type"):
        rclpy_graph.publisher(TopicSpec(name="/x"))
    with pytest.raises(UnknownMessageType, match=r"'nope_msgs/msg/Nope' is not installed .*build package"):
        rclpy_graph.publisher(TopicSpec(name="/x", type="nope_msgs/msg/Nope"))
    with pytest.raises(ConfigError, match=r"topic name 'x' is relative"):
        rclpy_graph.subscribe(TopicSpec(name="x", type=STRING), Inbox())
