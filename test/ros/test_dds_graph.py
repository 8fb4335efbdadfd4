"""DdsGraph on real Cyclone DDS (loopback only): the ROS 2 wire format, QoS, discovery, domains."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cyclonedds.builtin import BuiltinDataReader, BuiltinTopicDcpsPublication
from cyclonedds.core import Policy
from ros_test_helpers import TIMEOUT, Inbox, Waiter, make_image, string_cdr

from fogros_dist.errors import BridgeError, ConfigError
from fogros_dist.ros.dds import DdsGraph
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import QosSpec, TopicSpec

STRING = "std_msgs/msg/String"
IMAGE = "sensor_msgs/msg/Image"


@pytest.fixture
def types() -> MessageTypes:
    return MessageTypes("jazzy")


@pytest.fixture
def graphs(ros_domain_id: int) -> Iterator[Callable[..., DdsGraph]]:
    """Opens DdsGraphs (default: on this test's domain) and closes them all afterwards."""
    opened: list[DdsGraph] = []

    def open_graph(domain_id: int = ros_domain_id, distro: str = "jazzy") -> DdsGraph:
        graph = DdsGraph(domain_id, distro=distro)
        opened.append(graph)
        return graph

    yield open_graph
    for graph in opened:
        graph.close()


def test_string_on_chatter_arrives_byte_exact(
    graphs: Callable[..., DdsGraph], types: MessageTypes, wait_for: Waiter
) -> None:
    talker, listener = graphs(), graphs()
    topic = TopicSpec(name="/chatter", type=STRING)
    inbox = Inbox()
    subscription = listener.subscribe(topic, inbox)
    publisher = talker.publisher(topic)
    assert wait_for(lambda: publisher.matched_count() == 1 and subscription.matched_count() == 1, TIMEOUT)

    for text in ("hello", "hello world", "", "ünïcode ✓"):  # lengths 14..27: every padding case
        cdr = string_cdr(types, text)
        publisher.publish(cdr)
        assert inbox.get() == cdr
    assert inbox.threads == {"dds-sub /chatter"}


def test_wire_names_qos_and_type_hash_match_rmw_cyclonedds(
    graphs: Callable[..., DdsGraph], wait_for: Waiter
) -> None:
    talker, observer = graphs(), graphs()
    talker.publisher(TopicSpec(name="/chatter", type=STRING, qos=QosSpec(durability="transient_local")))
    reader = BuiltinDataReader(observer._participant, BuiltinTopicDcpsPublication)
    found: list[Any] = []

    def seen() -> bool:
        found.extend(e for e in reader.take(N=64) if getattr(e, "topic_name", "") == "rt/chatter")
        return bool(found)

    try:
        assert wait_for(seen, TIMEOUT)
        endpoint = found[0]
        assert endpoint.type_name == "std_msgs::msg::dds_::String_"
        hash_ = MessageTypes("jazzy").resolve(STRING).type_hash
        assert endpoint.qos[Policy.Userdata] == Policy.Userdata(data=f"typehash={hash_};".encode())
        assert endpoint.qos[Policy.Durability] == Policy.Durability.TransientLocal
        assert endpoint.qos[Policy.DataRepresentation] == Policy.DataRepresentation(
            use_cdrv0_representation=True
        )
    finally:
        reader.__del__()


def test_humble_endpoints_send_no_type_hash(graphs: Callable[..., DdsGraph], wait_for: Waiter) -> None:
    talker, listener = graphs(distro="humble"), graphs(distro="humble")
    topic = TopicSpec(name="/chatter", type=STRING)
    subscription = listener.subscribe(topic, Inbox())
    publisher = talker.publisher(topic)
    assert wait_for(lambda: subscription.matched_count() == 1, TIMEOUT)
    matched = publisher._writer.get_matched_subscriptions()  # type: ignore[union-attr]
    data = publisher._writer.get_matched_subscription_data(matched[0])  # type: ignore[union-attr]
    assert Policy.Userdata not in data.qos or data.qos[Policy.Userdata].data == b""


def test_six_megabyte_image_round_trip(
    graphs: Callable[..., DdsGraph], types: MessageTypes, wait_for: Waiter
) -> None:
    camera, planner = graphs(), graphs()
    topic = TopicSpec(name="/camera/image_raw", type=IMAGE, qos=QosSpec(depth=2))
    inbox = Inbox()
    subscription = planner.subscribe(topic, inbox)
    publisher = camera.publisher(topic)
    assert wait_for(lambda: subscription.matched_count() == 1, TIMEOUT)
    for size in (6 * 1024 * 1024, 1920 * 1080 * 3 + 1):  # the second needs padding
        cdr = types.serialize(IMAGE, make_image(types, size))
        publisher.publish(cdr)
        assert inbox.get() == cdr


def test_discover_type_finds_a_remote_publisher_only(graphs: Callable[..., DdsGraph]) -> None:
    talker, bridge = graphs(), graphs()
    talker.publisher(TopicSpec(name="/camera/image_raw", type=IMAGE))
    assert bridge.discover_type("/camera/image_raw", TIMEOUT) == IMAGE
    # Its own publishers do not count: the bridge must learn types from the robot's nodes.
    bridge.publisher(TopicSpec(name="/grasps", type=STRING))
    assert bridge.discover_type("/grasps", 0.2) is None
    assert talker.discover_type("/grasps", TIMEOUT) == STRING
    assert bridge.discover_type("/nobody", 0.1) is None


def test_best_effort_delivers_and_does_not_satisfy_a_reliable_reader(
    graphs: Callable[..., DdsGraph], types: MessageTypes, wait_for: Waiter
) -> None:
    talker, listener = graphs(), graphs()
    best_effort = TopicSpec(name="/scan", type=STRING, qos=QosSpec(reliability="best_effort"))
    reliable = TopicSpec(name="/scan", type=STRING, qos=QosSpec(reliability="reliable"))
    inbox, strict_inbox = Inbox(), Inbox()
    subscription = listener.subscribe(best_effort, inbox)
    strict = listener.subscribe(reliable, strict_inbox)
    publisher = talker.publisher(best_effort)
    assert wait_for(lambda: subscription.matched_count() == 1, TIMEOUT)
    cdr = string_cdr(types, "scan")
    publisher.publish(cdr)
    assert inbox.get() == cdr
    # DDS request/offer: a reliable reader never matches a best-effort writer (as in ROS 2).
    assert strict.matched_count() == 0
    assert publisher.matched_count() == 1
    assert strict_inbox.empty()


def test_transient_local_late_joiner_gets_the_last_message(
    graphs: Callable[..., DdsGraph], types: MessageTypes, wait_for: Waiter
) -> None:
    talker, late = graphs(), graphs()
    latched = QosSpec(durability="transient_local", depth=1)
    publisher = talker.publisher(TopicSpec(name="/map", type=STRING, qos=latched))
    for text in ("map v1", "map v2"):
        publisher.publish(string_cdr(types, text))

    inbox = Inbox()
    late.subscribe(TopicSpec(name="/map", type=STRING, qos=latched), inbox)
    assert inbox.get() == string_cdr(types, "map v2")

    # A volatile late joiner gets only what is published after it matched.
    volatile_inbox = Inbox()
    volatile = late.subscribe(TopicSpec(name="/map", type=STRING, qos=QosSpec(depth=1)), volatile_inbox)
    assert wait_for(lambda: volatile.matched_count() == 1, TIMEOUT)
    publisher.publish(string_cdr(types, "map v3"))
    assert volatile_inbox.get() == string_cdr(types, "map v3")
    assert inbox.get() == string_cdr(types, "map v3")


def test_different_domains_do_not_see_each_other(
    graphs: Callable[..., DdsGraph],
    new_domain_id: Callable[[], int],
    types: MessageTypes,
    wait_for: Waiter,
) -> None:
    here, there = new_domain_id(), new_domain_id()
    listener, local_talker, foreign_talker = graphs(here), graphs(here), graphs(there)
    topic = TopicSpec(name="/chatter", type=STRING)
    inbox = Inbox()
    subscription = listener.subscribe(topic, inbox)
    foreign = foreign_talker.publisher(topic)
    local = local_talker.publisher(topic)
    # Discovery in `here` has completed, and found only the local talker.
    assert wait_for(lambda: subscription.matched_count() == 1 and local.matched_count() == 1, TIMEOUT)
    foreign.publish(string_cdr(types, "from there"))
    local.publish(string_cdr(types, "from here"))
    assert inbox.get() == string_cdr(types, "from here")
    assert foreign.matched_count() == 0
    assert subscription.matched_count() == 1
    assert foreign_talker.discover_type("/chatter", 0.1) is None


def test_callback_errors_are_logged_and_later_messages_still_arrive(
    graphs: Callable[..., DdsGraph],
    types: MessageTypes,
    wait_for: Waiter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    talker, listener = graphs(), graphs()
    topic = TopicSpec(name="/chatter", type=STRING)
    inbox = Inbox()

    def flaky(cdr: bytes) -> None:
        if cdr == string_cdr(types, "boom"):
            raise RuntimeError("boom")
        inbox(cdr)

    subscription = listener.subscribe(topic, flaky)
    publisher = talker.publisher(topic)
    assert wait_for(lambda: subscription.matched_count() == 1, TIMEOUT)
    publisher.publish(string_cdr(types, "boom"))
    publisher.publish(string_cdr(types, "after"))
    assert inbox.get() == string_cdr(types, "after")
    assert "callback for /chatter raised; the message is dropped" in caplog.text


def test_close_stops_callbacks_and_leaves_no_thread(
    graphs: Callable[..., DdsGraph], types: MessageTypes, wait_for: Waiter
) -> None:
    talker, listener = graphs(), graphs()
    topic = TopicSpec(name="/chatter", type=STRING)
    inbox = Inbox()
    subscription = listener.subscribe(topic, inbox)
    publisher = talker.publisher(topic)
    assert wait_for(lambda: publisher.matched_count() == 1, TIMEOUT)
    subscription.close()
    subscription.close()  # idempotent
    assert subscription.matched_count() == 0
    assert wait_for(lambda: publisher.matched_count() == 0, TIMEOUT)
    publisher.publish(string_cdr(types, "nobody listens"))
    assert inbox.empty()
    listener.close()
    talker.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("dds-sub")]
    with pytest.raises(BridgeError, match=r"publisher on /chatter is closed"):
        publisher.publish(string_cdr(types, "late"))
    with pytest.raises(BridgeError, match=r"DDS graph on domain \d+ is closed: open a new DdsGraph"):
        talker.publisher(topic)


def test_close_from_inside_the_callback(
    graphs: Callable[..., DdsGraph], types: MessageTypes, wait_for: Waiter
) -> None:
    talker, listener = graphs(), graphs()
    topic = TopicSpec(name="/chatter", type=STRING)
    closed = threading.Event()
    holder: list[object] = []

    def close_myself(cdr: bytes) -> None:
        holder[0].close()  # type: ignore[attr-defined]
        closed.set()

    holder.append(listener.subscribe(topic, close_myself))
    publisher = talker.publisher(topic)
    assert wait_for(lambda: publisher.matched_count() == 1, TIMEOUT)
    publisher.publish(string_cdr(types, "bye"))
    assert closed.wait(TIMEOUT)
    assert wait_for(lambda: not [t for t in threading.enumerate() if t.name == "dds-sub /chatter"], TIMEOUT)


def test_invalid_inputs_fail_with_one_clear_line(
    graphs: Callable[..., DdsGraph], types: MessageTypes
) -> None:
    graph = graphs()
    with pytest.raises(ConfigError, match=r"topic /x has no message type: set TopicSpec.type"):
        graph.publisher(TopicSpec(name="/x"))
    with pytest.raises(ConfigError, match=r"topic name 'x' is relative"):
        graph.subscribe(TopicSpec(name="x", type=STRING), Inbox())
    with pytest.raises(ConfigError, match=r"did you mean 'sensor_msgs/msg/Image'"):
        graph.publisher(TopicSpec(name="/x", type="sensor_msgs/msg/Imag"))
    publisher = graph.publisher(TopicSpec(name="/x", type=IMAGE))
    with pytest.raises(
        BridgeError, match=r"14 bytes published on /x are not a valid CDR sensor_msgs/msg/Image"
    ):
        publisher.publish(string_cdr(types, "hello"))
    with pytest.raises(ConfigError, match=r"ROS domain id 300 is out of range: use 0..232"):
        DdsGraph(300)


def test_domain_id_comes_from_ros_domain_id(ros_domain_id: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROS_DOMAIN_ID", str(ros_domain_id))
    with DdsGraph() as graph:
        assert graph.domain_id == ros_domain_id
    monkeypatch.setenv("ROS_DOMAIN_ID", "robot")
    with pytest.raises(ConfigError, match=r"ROS_DOMAIN_ID='robot' is not an integer"):
        DdsGraph()


def test_messages_cross_the_wire_to_another_process_and_back(
    graphs: Callable[..., DdsGraph], ros_domain_id: int, types: MessageTypes, wait_for: Waiter
) -> None:
    """Participants in one process share Cyclone's in-process path; this one goes over UDP."""
    routes = [f"{STRING}:/ping:/pong", f"{IMAGE}:/image_in:/image_out"]
    peer = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("dds_echo_peer.py")), str(ros_domain_id), *routes],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert peer.stdout is not None
        assert peer.stdout.readline().strip() == "ready"
        graph = graphs()
        qos = QosSpec(depth=4)
        pongs, images = Inbox(), Inbox()
        subscriptions = [
            graph.subscribe(TopicSpec(name="/pong", type=STRING, qos=qos), pongs),
            graph.subscribe(TopicSpec(name="/image_out", type=IMAGE, qos=qos), images),
        ]
        ping = graph.publisher(TopicSpec(name="/ping", type=STRING, qos=qos))
        image = graph.publisher(TopicSpec(name="/image_in", type=IMAGE, qos=qos))
        endpoints = [*subscriptions, ping, image]
        assert wait_for(lambda: all(e.matched_count() == 1 for e in endpoints), TIMEOUT)

        for text in ("hello", "hello world", "", "ünïcode ✓"):
            cdr = string_cdr(types, text)
            ping.publish(cdr)
            assert pongs.get() == cdr
        for size in (6 * 1024 * 1024, 1000 * 1000 + 1):
            cdr = types.serialize(IMAGE, make_image(types, size))
            image.publish(cdr)
            assert images.get() == cdr
    finally:
        peer.communicate(input="", timeout=TIMEOUT)
    assert peer.returncode == 0
