"""Plan-time warnings about explicit QoS that can be seen, from the spec alone, to match nothing."""

from __future__ import annotations

import logging

import pytest

from fogros_dist.deploy.plan import make_plan
from fogros_dist.spec import DeploymentSpec, MachineSpec, NodeSpec, QosSpec, TopicSpec

STRING = "std_msgs/msg/String"
BEST_EFFORT = QosSpec(reliability="best_effort")
RELIABLE_LATCHED = QosSpec(durability="transient_local")


def _plan_warnings(caplog: pytest.LogCaptureFixture, *nodes: NodeSpec) -> list[str]:
    spec = DeploymentSpec(
        name="qos", machines=(MachineSpec(name="gpu"), MachineSpec(name="cpu")), nodes=nodes
    )
    with caplog.at_level(logging.WARNING, logger="fogros_dist.deploy.plan"):
        make_plan(spec)
    return [r.getMessage() for r in caplog.records if r.name == "fogros_dist.deploy.plan"]


def test_a_publisher_qos_a_subscriber_never_matches_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    talker = NodeSpec(
        name="talker",
        package="p",
        executable="e",
        machine="gpu",
        topics_out=(TopicSpec(name="/scan", type=STRING, qos=BEST_EFFORT),),
    )
    listener = NodeSpec(
        name="listener",
        package="p",
        executable="e",
        machine="cpu",
        topics_in=(TopicSpec(name="/scan", type=STRING, qos=RELIABLE_LATCHED),),
    )
    lines = _plan_warnings(caplog, talker, listener)
    assert len(lines) == 1
    assert "topic /scan: node 'talker' publishes it with QoS best_effort/volatile/keep_last 10" in lines[0]
    assert "node 'listener'" in lines[0]
    assert "a reliable subscription does not match a best-effort publisher" in lines[0]
    assert "a transient_local subscription does not match a volatile publisher" in lines[0]


def test_one_topic_subscribed_with_two_qos_is_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    nodes = [
        NodeSpec(
            name=name,
            package="p",
            executable="e",
            machine="gpu",
            topics_in=(TopicSpec(name="/map", type=STRING, qos=qos),),
        )
        for name, qos in (("planner", RELIABLE_LATCHED), ("viewer", BEST_EFFORT))
    ]
    lines = _plan_warnings(caplog, *nodes)
    assert len(lines) == 1
    assert "node 'planner' takes it with QoS reliable/transient_local" in lines[0]
    assert "the bridge subscribes once, with the first" in lines[0]


def test_matching_or_mirrored_qos_warns_nothing(caplog: pytest.LogCaptureFixture) -> None:
    talker = NodeSpec(
        name="talker",
        package="p",
        executable="e",
        machine="gpu",
        topics_out=(TopicSpec(name="/scan", type=STRING, qos=RELIABLE_LATCHED),),
    )
    listener = NodeSpec(
        name="listener",
        package="p",
        executable="e",
        machine="cpu",
        topics_in=(TopicSpec(name="/scan", type=STRING, qos=BEST_EFFORT), TopicSpec(name="/odom")),
    )
    assert _plan_warnings(caplog, talker, listener) == []
