"""The end-to-end check several suites share: edge_detector offloaded, one image there and back.

Importable as ``e2e_helpers`` from any test (``test/`` is on sys.path through its conftest) and
from bench scripts that add ``test/`` to sys.path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from fogros_dist.spec import DeploymentSpec, MachineSpec, NodeSpec, TopicSpec

__all__ = ["IMAGE", "assert_failed_and_released", "edge_deployment", "edges_round_trip"]

IMAGE = "sensor_msgs/msg/Image"
IN_TOPIC = TopicSpec(name="/camera/image", type=IMAGE)
OUT_TOPIC = TopicSpec(name="/camera/edges", type=IMAGE)


def edge_deployment(name: str, machine: MachineSpec, *, workspace: str = "") -> DeploymentSpec:
    """edge_detector on ``machine``, /camera/image in and /camera/edges out."""
    return DeploymentSpec(
        name=name,
        machines=(machine,),
        nodes=(
            NodeSpec(
                name="edges",
                package="fogros_dist",
                executable="edge_detector",
                machine=machine.name,
                topics_in=(IN_TOPIC,),
                topics_out=(OUT_TOPIC,),
            ),
        ),
        workspace=workspace,
    )


def edges_round_trip(robot_domain: int, *, timeout: float = 30.0, context: Callable[[], str] = str) -> Any:
    """Publish an 8x8 image with a bright square on the robot's graph until the edges come back;
    return the decoded reply. ``context()`` is shown if none arrives within ``timeout`` seconds."""
    from fogros_dist.ros.dds import DdsGraph
    from fogros_dist.ros.types import MessageTypes

    types = MessageTypes("jazzy")
    frame = np.zeros((8, 8), dtype=np.uint8)
    frame[2:6, 2:6] = 200
    msg = types.message_class(IMAGE)(
        header=types.message_class("std_msgs/msg/Header")(
            stamp=types.message_class("builtin_interfaces/msg/Time")(sec=1, nanosec=2), frame_id="cam"
        ),
        height=8,
        width=8,
        encoding="mono8",
        is_bigendian=0,
        step=8,
        data=frame.reshape(-1),
    )
    got = threading.Event()
    replies: list[bytes] = []

    def on_edges(cdr: bytes) -> None:
        replies.append(cdr)
        got.set()

    graph = DdsGraph(robot_domain, distro="jazzy")
    try:
        pub = graph.publisher(IN_TOPIC)
        graph.subscribe(OUT_TOPIC, on_edges)
        deadline = time.monotonic() + timeout
        while not got.wait(0.2):
            assert time.monotonic() < deadline, f"no reply on {OUT_TOPIC.name}: {context()}"
            pub.publish(types.serialize(IMAGE, msg))
    finally:
        graph.close()
    return types.deserialize(IMAGE, replies[0])


def assert_failed_and_released(store: Any, name: str, reason: str) -> None:
    """A deployment whose `up` (or supervision) failed: its record stays, ``failed``, with the
    reason (``reason`` a substring of it), and nothing of it is left."""
    state = store.load(name)
    assert state.status == "failed", state
    assert reason in state.error, state.error
    assert state.released, state
