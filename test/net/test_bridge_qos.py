"""QoS discovered, mirrored and cached where it crosses: real bridge pairs on loopback (two DDS
domains, two Zenoh sessions), real DDS publishers and subscribers on each graph."""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zenoh
from net_test_helpers import (
    DEPLOYMENT,
    STRING,
    TIMEOUT,
    Inbox,
    Link,
    Side,
    free_tcp_port,
    string_cdr,
    wait_for,
)

from fogros_dist.net.bridge import Bridge
from fogros_dist.net.zenoh_config import config_for
from fogros_dist.ros.dds import DdsGraph
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import BridgeRunSpec, QosSpec, TopicSpec

SCAN = "/scan"
BEST_EFFORT = QosSpec(reliability="best_effort", depth=5)
LATCHED = QosSpec(durability="transient_local", depth=3)


def _stats(bridge: Bridge, name: str, direction: str) -> dict[str, object]:
    for topic in bridge.stats.snapshot()["topics"]:
        if topic["topic"] == name and topic["direction"] == direction:
            return dict(topic)
    raise AssertionError(f"no {direction} stats for {name}")


def _discovered(graph: DdsGraph, name: str) -> tuple[str, str, str, int] | None:
    """What a graph's publishers of ``name`` offer, as discovery shows it."""
    found = graph.discover_topic(name, 0.2)
    if found is None:
        return None
    return (found.type_name, found.qos.reliability, found.qos.durability, found.qos.depth)


def _warnings(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    """The warning lines about ``name`` (where ROS 2's launch was imported first, INFO lines are
    captured too)."""
    return [r.getMessage() for r in caplog.records if name in r.getMessage() and r.levelno >= logging.WARNING]


def _nothing_more(inbox: Inbox) -> None:
    with pytest.raises(queue.Empty):
        inbox.get(timeout=0.5)


def _texts(types: MessageTypes, inbox: Inbox, count: int) -> list[str]:
    return [types.deserialize(STRING, inbox.get()).data for _ in range(count)]


@pytest.fixture
def sides(new_domain_id: Callable[[], int], tmp_path: Path) -> Iterator[Callable[..., Side]]:
    """``sides(side, port, outbound=..., inbound=...)`` starts one bridge (the machine side
    listens on ``port``, the robot side connects to it), so a test chooses which starts when."""
    closers: list[Callable[[], None]] = []

    def make(
        side: str, port: int, *, outbound: tuple[TopicSpec, ...] = (), inbound: tuple[TopicSpec, ...] = ()
    ) -> Side:
        endpoint = f"tcp/127.0.0.1:{port}"
        spec = BridgeRunSpec(
            deployment=DEPLOYMENT,
            side="machine" if side == "machine" else "robot",
            machine="gpu" if side == "machine" else "robot",
            listen=(endpoint,) if side == "machine" else (),
            connect=() if side == "machine" else (endpoint,),
            outbound=outbound,
            inbound=inbound,
            domain_id=new_domain_id(),
            graph="dds",
            stats_path=str(tmp_path / f"{side}-stats.json"),
        )
        graph = DdsGraph(spec.domain_id)
        closers.append(graph.close)
        app = DdsGraph(spec.domain_id)
        closers.append(app.close)
        session = zenoh.open(config_for(spec))
        closers.append(session.close)
        bridge = Bridge(spec=spec, graph=graph, session=session)
        closers.append(bridge.close)
        bridge.start(peer_timeout=TIMEOUT)
        return Side(spec=spec, graph=graph, app=app, session=session, bridge=bridge)

    yield make
    for close in reversed(closers):
        close()


@pytest.mark.parametrize("typed", [True, False], ids=["typed", "untyped"])
def test_best_effort_publisher_reaches_a_best_effort_subscriber_with_no_qos_given(
    bridge_link: Callable[..., Link], types: MessageTypes, typed: bool
) -> None:
    """A SensorDataQoS-like publisher: a reliable bridge reader would match nothing. With no QoS
    given, the robot bridge subscribes best effort and the machine side publishes best effort."""
    topic = TopicSpec(name=SCAN, type=STRING if typed else None)
    link = bridge_link(robot_out=[topic], machine_in=[topic])
    publisher = link.robot.app.publisher(TopicSpec(name=SCAN, type=STRING, qos=BEST_EFFORT))
    # The far side's graph shows the mirrored QoS: a best-effort publisher of depth 5.
    assert wait_for(lambda: _discovered(link.machine.app, SCAN) == (STRING, "best_effort", "volatile", 5))
    inbox = Inbox()
    subscription = link.machine.app.subscribe(TopicSpec(name=SCAN, type=STRING, qos=BEST_EFFORT), inbox)
    assert wait_for(lambda: subscription.matched_count() == 1)
    assert wait_for(lambda: publisher.matched_count() == 1)  # the robot bridge's reader
    # Best effort may drop the very first sample while routes settle: publish until one crosses.
    for i in range(50):
        publisher.publish(string_cdr(types, f"scan {i}"))
        if wait_for(lambda: not inbox.empty(), 0.1):
            break
    assert _texts(types, inbox, 1)[0].startswith("scan ")
    assert _stats(link.robot.bridge, SCAN, "outbound")["messages"] >= 1


def test_a_publishers_deadline_and_lifespan_are_offered_on_the_far_side(
    bridge_link: Callable[..., Link], types: MessageTypes
) -> None:
    """A 10 Hz sensor promising a 0.2 s deadline: a far-side subscriber requesting 0.5 s matches
    only because the machine bridge's writer offers the deadline too (one offering none never
    matches it); the lifespan is mirrored alike."""
    timed = QosSpec(deadline_s=0.2, lifespan_s=3.0)
    topic = TopicSpec(name="/odom", type=STRING)
    link = bridge_link(robot_out=[topic], machine_in=[topic])
    publisher = link.robot.app.publisher(TopicSpec(name="/odom", type=STRING, qos=timed))

    def offered() -> tuple[float, float] | None:
        found = link.machine.app.discover_topic("/odom", 0.2)
        return None if found is None else (found.qos.deadline_s, found.qos.lifespan_s)

    assert wait_for(lambda: offered() == (0.2, 3.0))
    inbox = Inbox()
    wanted = QosSpec(deadline_s=0.5)
    subscription = link.machine.app.subscribe(TopicSpec(name="/odom", type=STRING, qos=wanted), inbox)
    assert wait_for(lambda: subscription.matched_count() == 1)
    assert wait_for(lambda: publisher.matched_count() == 1)
    publisher.publish(string_cdr(types, "odom 0"))
    assert _texts(types, inbox, 1) == ["odom 0"]


def test_transient_local_reaches_a_subscriber_that_starts_after_the_publisher_and_both_bridges(
    bridge_link: Callable[..., Link], types: MessageTypes
) -> None:
    """/tf_static-like, depth 3: four messages published before anyone listens on the far side;
    a subscriber there that starts later gets the latest three, once each, in order."""
    topic = TopicSpec(name="/tf_static", type=STRING)
    link = bridge_link(robot_out=[topic], machine_in=[topic])
    publisher = link.robot.app.publisher(TopicSpec(name="/tf_static", type=STRING, qos=LATCHED))
    for i in range(4):
        publisher.publish(string_cdr(types, f"static {i}"))
    # The robot bridge's reader gets the publisher's history (3) and puts it on Zenoh.
    assert wait_for(lambda: _stats(link.robot.bridge, "/tf_static", "outbound")["messages"] == 3)
    assert wait_for(
        lambda: _discovered(link.machine.app, "/tf_static") == (STRING, "reliable", "transient_local", 3)
    )
    inbox = Inbox()
    link.machine.app.subscribe(TopicSpec(name="/tf_static", type=STRING, qos=LATCHED), inbox)
    assert _texts(types, inbox, 3) == ["static 1", "static 2", "static 3"]
    _nothing_more(inbox)
    inbound = _stats(link.machine.bridge, "/tf_static", "inbound")
    assert (inbound["lost"], inbound["seq_resets"]) == (0, 0)


def test_a_far_bridge_that_starts_later_is_served_from_the_zenoh_cache(
    sides: Callable[..., Side], types: MessageTypes
) -> None:
    """The machine bridge reads a latched topic while no robot bridge exists; a robot bridge
    started afterwards fetches the cached messages, and a robot subscriber that starts after
    that still gets them (the robot bridge's publisher is transient local of that depth)."""
    topic = TopicSpec(name="/map", type=STRING)
    port = free_tcp_port()
    machine = sides("machine", port, outbound=(topic,))
    publisher = machine.app.publisher(TopicSpec(name="/map", type=STRING, qos=LATCHED))
    for i in range(5):
        publisher.publish(string_cdr(types, f"map {i}"))
    assert wait_for(lambda: _stats(machine.bridge, "/map", "outbound")["messages"] == 3)
    robot = sides("robot", port, inbound=(topic,))
    assert wait_for(lambda: _stats(robot.bridge, "/map", "inbound")["messages"] == 3)
    inbox = Inbox()
    robot.app.subscribe(TopicSpec(name="/map", type=STRING, qos=LATCHED), inbox)
    assert _texts(types, inbox, 3) == ["map 2", "map 3", "map 4"]
    inbound = _stats(robot.bridge, "/map", "inbound")
    # Replays are neither losses nor resets, and carry no latency (it would only be their age).
    assert (inbound["lost"], inbound["seq_resets"], inbound["messages"]) == (0, 0, 3)
    # A new message after the replay is live again and counts as the next in sequence.
    publisher.publish(string_cdr(types, "map 5"))
    assert _texts(types, inbox, 1) == ["map 5"]
    assert wait_for(lambda: _stats(robot.bridge, "/map", "inbound")["messages"] == 4)
    assert (
        _stats(robot.bridge, "/map", "inbound")["lost"],
        _stats(robot.bridge, "/map", "inbound")["seq_resets"],
    ) == (0, 0)


def test_a_producer_that_starts_after_the_far_bridge_is_detected_and_queried(
    bridge_link: Callable[..., Link], types: MessageTypes
) -> None:
    """The machine side subscribes transient local from the start (explicit QoS); the robot's
    publisher (and with it the robot bridge's cached Zenoh publisher) appears later."""
    robot_topic = TopicSpec(name="/robot_description", type=STRING)
    machine_topic = TopicSpec(name="/robot_description", type=STRING, qos=LATCHED)
    link = bridge_link(robot_out=[robot_topic], machine_in=[machine_topic])
    inbox = Inbox()
    link.machine.app.subscribe(TopicSpec(name="/robot_description", type=STRING, qos=LATCHED), inbox)
    publisher = link.robot.app.publisher(TopicSpec(name="/robot_description", type=STRING, qos=LATCHED))
    publisher.publish(string_cdr(types, "urdf 1"))
    publisher.publish(string_cdr(types, "urdf 2"))
    assert _texts(types, inbox, 2) == ["urdf 1", "urdf 2"]
    _nothing_more(inbox)  # the late publisher's cache replies add nothing twice
    inbound = _stats(link.machine.bridge, "/robot_description", "inbound")
    assert (inbound["messages"], inbound["lost"], inbound["seq_resets"]) == (2, 0, 0)


def test_an_explicit_qos_that_matches_no_publisher_is_one_warning(
    bridge_link: Callable[..., Link], types: MessageTypes, caplog: pytest.LogCaptureFixture
) -> None:
    explicit = TopicSpec(
        name=SCAN, type=STRING, qos=QosSpec(reliability="reliable", durability="transient_local")
    )
    link = bridge_link(robot_out=[explicit], machine_in=[TopicSpec(name=SCAN, type=STRING)])
    with caplog.at_level(logging.WARNING, logger="fogros_dist.net.bridge"):
        publisher = link.robot.app.publisher(TopicSpec(name=SCAN, type=STRING, qos=BEST_EFFORT))
        assert wait_for(lambda: bool(_warnings(caplog, SCAN)))
        inbox = Inbox()
        link.machine.app.subscribe(TopicSpec(name=SCAN, type=STRING, qos=BEST_EFFORT), inbox)
        publisher.publish(string_cdr(types, "never"))
        assert wait_for(lambda: not inbox.empty(), 0.5) is False
    lines = _warnings(caplog, SCAN)
    assert len(lines) == 1
    line = lines[0]
    assert "reliable/transient_local/keep_last 10" in line  # what the bridge asks for
    assert "best_effort/volatile/keep_last 5" in line  # what the publisher offers
    assert "a reliable subscription does not match a best-effort publisher" in line
    assert "remove the topic's qos" in line  # the fix
