"""The bridge on real Zenoh and real Cyclone DDS: robot domain <-> Zenoh (loopback) <-> machine domain."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zenoh
from net_test_helpers import (
    DEPLOYMENT,
    IMAGE,
    STRING,
    TIMEOUT,
    Inbox,
    Link,
    free_tcp_port,
    string_cdr,
    wait_for,
)

from fogros_dist.errors import BridgeError, ConfigError
from fogros_dist.net.bridge import (
    ATTACHMENT,
    Bridge,
    query_stats,
    wait_for_peer_bridge,
)
from fogros_dist.net.zenoh_config import build_config
from fogros_dist.ros.dds import DdsGraph
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import BridgeRunSpec, QosSpec, TopicSpec

CHATTER = TopicSpec(name="/chatter", type=STRING)


def _topic_stats(bridge: Bridge, name: str, direction: str) -> dict[str, object]:
    for topic in bridge.stats.snapshot()["topics"]:
        if topic["topic"] == name and topic["direction"] == direction:
            return dict(topic)
    raise AssertionError(f"no {direction} stats for {name}")


def _matched(publisher: object, count: int = 1) -> Callable[[], bool]:
    return lambda: publisher.matched_count() >= count  # type: ignore[attr-defined]


def _deliver(publisher: object, inbox: Inbox, cdr: bytes, *, attempts: int) -> None:
    """Publish ``cdr`` until the machine side receives it (late copies of earlier ones skipped)."""
    for _ in range(attempts):
        publisher.publish(cdr)  # type: ignore[attr-defined]
        deadline = time.monotonic() + (TIMEOUT if attempts == 1 else 0.5)
        while (left := deadline - time.monotonic()) > 0:
            try:
                if inbox.get(timeout=left) == cdr:
                    return
            except queue.Empty:
                break
    msg = f"{cdr!r} never reached the machine side after {attempts} attempt(s)"
    raise AssertionError(msg)


@pytest.mark.parametrize(
    "qos",
    [QosSpec(), QosSpec(reliability="best_effort", depth=5), QosSpec(durability="transient_local", depth=1)],
    ids=["reliable", "best_effort", "transient_local"],
)
def test_robot_to_machine_bytes_equal_rosbags_and_are_counted(
    bridge_link: Callable[..., Link], types: MessageTypes, qos: QosSpec
) -> None:
    chatter = TopicSpec(name="/chatter", type=STRING, qos=qos)
    link = bridge_link(robot_out=[chatter], machine_in=[chatter])
    inbox = Inbox()
    subscription = link.machine.app.subscribe(chatter, inbox)
    publisher = link.robot.app.publisher(chatter)
    # Robot app -> robot bridge, and machine bridge -> machine app, are both matched.
    assert wait_for(_matched(publisher))
    assert wait_for(lambda: subscription.matched_count() == 1)

    sent = [string_cdr(types, text) for text in ("hello", "hello world", "", "ünïcode ✓")]
    # Best effort may drop a sample on a loaded machine: there the test resends until it arrives.
    best_effort = qos.reliability == "best_effort"
    for cdr in sent:
        _deliver(publisher, inbox, cdr, attempts=20 if best_effort else 1)

    if not best_effort:
        # The stats files are rewritten periodically: wait until the robot's counts the last one.
        assert wait_for(
            lambda: _topic_stats(link.robot.bridge, "/chatter", "outbound")["messages"] >= len(sent)
        )
    out = _topic_stats(link.robot.bridge, "/chatter", "outbound")
    into_wanted = out["messages"] if not best_effort else len(sent)
    assert wait_for(
        lambda: _topic_stats(link.machine.bridge, "/chatter", "inbound")["messages"] >= into_wanted
    )
    into = _topic_stats(link.machine.bridge, "/chatter", "inbound")
    assert into["dropped_malformed"] == into["dropped_other"] == 0
    latency = into["latency_ms"]
    assert isinstance(latency, dict)
    assert latency["samples"] >= len(sent)
    if not best_effort:
        assert out["messages"] == into["messages"] == len(sent)
        assert out["bytes"] == into["bytes"] == sum(map(len, sent))
        assert into["lost"] == 0
    assert 0 < latency["median"] <= latency["p99"] < 1000


def test_machine_to_robot(bridge_link: Callable[..., Link], types: MessageTypes) -> None:
    grasps = TopicSpec(name="/grasps", type=STRING, qos=QosSpec(depth=5))
    link = bridge_link(machine_out=[grasps], robot_in=[grasps])
    inbox = Inbox()
    subscription = link.robot.app.subscribe(grasps, inbox)
    publisher = link.machine.app.publisher(grasps)
    assert wait_for(_matched(publisher))
    assert wait_for(lambda: subscription.matched_count() == 1)
    cdr = string_cdr(types, "grasp at (1, 2, 3)")
    publisher.publish(cdr)
    assert inbox.get() == cdr
    assert wait_for(lambda: _topic_stats(link.robot.bridge, "/grasps", "inbound")["messages"] == 1)


def test_six_megabyte_image_crosses_intact(bridge_link: Callable[..., Link], types: MessageTypes) -> None:
    # codec "none": the bytes must cross unchanged (auto would send a colour image as JPEG).
    camera = TopicSpec(name="/camera/image_raw", type=IMAGE, qos=QosSpec(depth=2), codec="none")
    link = bridge_link(robot_out=[camera], machine_in=[camera])
    inbox = Inbox()
    subscription = link.machine.app.subscribe(camera, inbox)
    publisher = link.robot.app.publisher(camera)
    assert wait_for(_matched(publisher))
    assert wait_for(lambda: subscription.matched_count() == 1)
    size = 6 * 1024 * 1024
    image = types.message_class(IMAGE)(
        header=types.message_class("std_msgs/msg/Header")(
            stamp=types.message_class("builtin_interfaces/msg/Time")(sec=1, nanosec=2), frame_id="camera"
        ),
        height=1024,
        width=2048,
        encoding="rgb8",
        is_bigendian=0,
        step=2048 * 3,
        data=np.random.default_rng(7).integers(0, 255, size, dtype=np.uint8),
    )
    cdr = types.serialize(IMAGE, image)
    publisher.publish(cdr)
    assert inbox.get() == cdr


def _raw_session(link: Link) -> zenoh.Session:
    """A third Zenoh peer, linked to the machine bridge only: a misbehaving remote."""
    return zenoh.open(build_config(connect=(f"tcp/127.0.0.1:{link.port}",)))


def test_malformed_cdr_is_counted_and_dropped_and_forwarding_continues(
    bridge_link: Callable[..., Link], types: MessageTypes
) -> None:
    link = bridge_link(robot_out=[CHATTER], machine_in=[CHATTER])
    inbox = Inbox()
    subscription = link.machine.app.subscribe(CHATTER, inbox)
    assert wait_for(lambda: subscription.matched_count() == 1)
    good = string_cdr(types, "still fine")
    bad = [
        b"\x00\x07\x00\x00" + good[4:],  # an encapsulation kind rmw never sends (XCDR2 PL)
        good[:-3],  # truncated inside the string
        b"\x00\x01\x00\x00\xff\xff\xff\x7f",  # a 2 GB string length in an 8-byte message
        good + b"\x00" * 16,  # trailing garbage
        b"\x00\x01",  # shorter than the header
        b"",
    ]
    rogue = _raw_session(link)
    try:
        wait_for_peer_bridge(rogue, deployment=DEPLOYMENT, machine="gpu", timeout=TIMEOUT)
        publisher = rogue.declare_publisher("chatter", congestion_control=zenoh.CongestionControl.BLOCK)
        assert wait_for(lambda: publisher.matching_status.matching)
        for payload in bad:
            publisher.put(payload, attachment=ATTACHMENT.pack(0, 1))
        publisher.put(good)  # no attachment: a plain Zenoh publisher is welcome too
        assert inbox.get() == good
    finally:
        rogue.close()
    stats = _topic_stats(link.machine.bridge, "/chatter", "inbound")
    assert stats["dropped_malformed"] == len(bad)
    assert stats["messages"] == 1
    assert inbox.empty()


def test_types_are_learned_from_the_graph_and_the_liveliness_token(
    bridge_link: Callable[..., Link], types: MessageTypes
) -> None:
    untyped = TopicSpec(name="/chatter")
    link = bridge_link(robot_out=[untyped], machine_in=[untyped])
    # Nothing is typed yet: the machine bridge has no publisher, so nothing can match on B.
    publisher = link.robot.app.publisher(CHATTER)
    inbox = Inbox()
    subscription = link.machine.app.subscribe(CHATTER, inbox)
    # The robot bridge discovers the type on A, announces it; the machine bridge creates its
    # publisher on B, which the machine app's subscription then matches.
    assert wait_for(lambda: subscription.matched_count() == 1)
    assert wait_for(_matched(publisher))
    cdr = string_cdr(types, "typed by discovery")
    publisher.publish(cdr)
    assert inbox.get() == cdr
    assert _topic_stats(link.machine.bridge, "/chatter", "inbound")["type"] == STRING
    assert _topic_stats(link.robot.bridge, "/chatter", "outbound")["type"] == STRING


def test_stats_queryable_token_and_files(bridge_link: Callable[..., Link], types: MessageTypes) -> None:
    link = bridge_link(robot_out=[CHATTER], machine_in=[CHATTER])
    # Each side sees the other's bridge token, and can query the other's stats.
    wait_for_peer_bridge(link.robot.session, deployment=DEPLOYMENT, machine="gpu", timeout=TIMEOUT)
    wait_for_peer_bridge(link.machine.session, deployment=DEPLOYMENT, machine="robot", timeout=TIMEOUT)
    remote = query_stats(link.robot.session, deployment=DEPLOYMENT, machine="gpu", timeout=TIMEOUT)
    assert remote["side"] == "machine"
    assert [(t["topic"], t["direction"]) for t in remote["topics"]] == [("/chatter", "inbound")]
    # The stats file exists from readiness on, and holds the final counts after close.
    path = Path(link.robot.spec.stats_path)
    assert json.loads(path.read_text())["side"] == "robot"
    inbox = Inbox()
    subscription = link.machine.app.subscribe(CHATTER, inbox)
    publisher = link.robot.app.publisher(CHATTER)
    assert wait_for(_matched(publisher))
    assert wait_for(lambda: subscription.matched_count() == 1)
    publisher.publish(string_cdr(types, "counted"))
    inbox.get()
    link.robot.bridge.close()
    final = json.loads(path.read_text())
    assert final["topics"][0]["messages"] == 1
    assert not link.robot.bridge.ready


def test_no_peer_bridge_is_a_one_line_error(new_domain_id: Callable[[], int]) -> None:
    spec = BridgeRunSpec(
        deployment=DEPLOYMENT,
        side="robot",
        machine="robot",
        connect=(f"tcp/127.0.0.1:{free_tcp_port()}",),
        domain_id=new_domain_id(),
    )
    with DdsGraph(spec.domain_id) as graph:
        session = zenoh.open(build_config(connect=spec.connect))
        try:
            bridge = Bridge(spec=spec, graph=graph, session=session)
            with pytest.raises(BridgeError, match=r"reached 0 of 1 peer bridge\(s\) within 0.3 s"):
                bridge.start(peer_timeout=0.3)
            assert not bridge.ready
        finally:
            session.close()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"outbound": (CHATTER, CHATTER)}, "listed twice as outbound"),
        ({"inbound": (TopicSpec(name="chatter", type=STRING),)}, "is relative"),
        ({"outbound": (TopicSpec(name="/x", type="std_msgs/msg/Strin"),)}, "did you mean"),
        ({"machine": "gpu/0"}, "machine name 'gpu/0' cannot be part of a Zenoh key"),
    ],
)
def test_bad_specs_fail_before_anything_starts(change: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"deployment": DEPLOYMENT, "side": "robot", "machine": "robot", **change}
    spec = BridgeRunSpec(**fields)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=message):
        Bridge(spec=spec, graph=None, session=None)  # type: ignore[arg-type]
