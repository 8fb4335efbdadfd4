"""The main job (`make demo`): offload a compute node to the Local provider and measure it.

A robot-side publisher on the robot's DDS graph (the Cyclone DDS adapter) sends
sensor_msgs/msg/Image frames; the robot bridge carries them over Zenoh to a Local machine, where
``edge_detector`` computes the Sobel edges and publishes them; the reply comes back over the bridge
onto the robot's graph. Every reply is checked against the same computation done here, and a
per-topic latency table is printed.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fogros_dist.deploy.engine import Deployment, Stage
from fogros_dist.deploy.state import StateStore
from fogros_dist.errors import DeploymentError
from fogros_dist.nodes.images import sobel_magnitude
from fogros_dist.providers.base import OutputSink
from fogros_dist.spec import DeploymentSpec, MachineSpec, NodeSpec, QosSpec, TopicSpec

__all__ = ["DemoResult", "demo_spec", "run_demo"]

IMAGE = "sensor_msgs/msg/Image"
IN_TOPIC = "/camera/image"
OUT_TOPIC = "/camera/edges"
FIRST_REPLY_TIMEOUT_S = 30.0


@dataclass
class DemoResult:
    """What the demo measured."""

    sent: int = 0
    answered: int = 0
    correct: int = 0
    round_trips_ms: list[float] = field(default_factory=list)
    bridge_stats: dict[str, Any] = field(default_factory=dict)


def demo_spec(name: str, *, distro: str = "jazzy") -> DeploymentSpec:
    """One Local machine running edge_detector, with the image topic in and the edges out."""
    qos = QosSpec(depth=5)
    return DeploymentSpec(
        name=name,
        distro=distro,
        machines=(MachineSpec(name="gpu", provider="local"),),
        nodes=(
            NodeSpec(
                name="edge_detector",
                package="fogros_dist",
                executable="edge_detector",
                machine="gpu",
                topics_in=(TopicSpec(name=IN_TOPIC, type=IMAGE, qos=qos),),
                topics_out=(TopicSpec(name=OUT_TOPIC, type=IMAGE, qos=qos),),
            ),
        ),
    )


def _synthetic_frame(index: int, width: int, height: int) -> npt.NDArray[np.uint8]:
    # A moving bright square on a gradient: every frame differs, and has real edges.
    y, x = np.mgrid[0:height, 0:width]
    frame = ((x + y + index * 7) % 256).astype(np.uint8) // 2
    side = min(width, height) // 4
    left = (index * 13) % max(1, width - side)
    top = (index * 5) % max(1, height - side)
    frame[top : top + side, left : left + side] = 255
    frame_u8: npt.NDArray[np.uint8] = frame
    return frame_u8


class _RobotSide:
    """The robot's half of the demo: publishes frames, matches replies, checks their edges."""

    def __init__(self, *, distro: str, width: int, height: int) -> None:
        from fogros_dist.ros.types import MessageTypes

        self.types = MessageTypes(distro)
        self.width = width
        self.height = height
        self.result = DemoResult()
        self.first_reply = threading.Event()
        self._image_cls = self.types.message_class(IMAGE)
        self._header_cls = self.types.message_class("std_msgs/msg/Header")
        self._time_cls = self.types.message_class("builtin_interfaces/msg/Time")
        self._expected: dict[int, npt.NDArray[np.uint8]] = {}
        self._sent_at: dict[int, float] = {}
        self._lock = threading.Lock()

    def on_edges(self, cdr: bytes) -> None:
        """Subscription callback for the node's replies."""
        now = time.perf_counter()
        msg = self.types.deserialize(IMAGE, cdr)
        key = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        with self._lock:
            start = self._sent_at.pop(key, None)
            want = self._expected.pop(key, None)
        if start is None:
            self.first_reply.set()  # a reply to a warm-up frame
            return
        got = np.asarray(msg.data, dtype=np.uint8).reshape(int(msg.height), int(msg.width))
        with self._lock:
            self.result.answered += 1
            self.result.round_trips_ms.append((now - start) * 1000.0)
            if want is not None and np.array_equal(got, want):
                self.result.correct += 1

    def frame_cdr(self, index: int, *, measured: bool) -> bytes:
        """A serialized frame; measured frames are remembered with their expected edges."""
        frame = _synthetic_frame(index, self.width, self.height)
        stamp_ns = time.time_ns()
        stamp = self._time_cls(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
        msg = self._image_cls(
            header=self._header_cls(stamp=stamp, frame_id="camera"),
            height=self.height,
            width=self.width,
            encoding="mono8",
            is_bigendian=0,
            step=self.width,
            data=frame.reshape(-1),
        )
        cdr = self.types.serialize(IMAGE, msg)
        if measured:
            with self._lock:
                self._expected[stamp_ns] = sobel_magnitude(frame.astype(np.float32))
                self._sent_at[stamp_ns] = time.perf_counter()
                self.result.sent += 1
        return cdr

    def outstanding(self) -> int:
        """Measured frames still waiting for a reply."""
        with self._lock:
            return len(self._sent_at)


def run_demo(
    *,
    frames: int = 60,
    width: int = 640,
    height: int = 480,
    rate_hz: float = 20.0,
    store: StateStore | None = None,
    report: Callable[[str], None] = print,
    reporter: Callable[[Stage], None] | None = None,
    output: OutputSink | None = None,
) -> DemoResult:
    """Run the offload demo end to end; raise DeploymentError if no reply comes back."""
    from fogros_dist.ros.dds import DdsGraph

    store = store or StateStore()
    robot_domain = _robot_loopback_graph(store)
    spec = demo_spec("demo")
    robot = _RobotSide(distro=spec.distro, width=width, height=height)
    deployment = Deployment(spec, store=store, reporter=reporter, output=output, robot_domain_id=robot_domain)
    graph = None
    try:
        deployment.up()
        graph = DdsGraph(robot_domain, distro=spec.distro)
        qos = QosSpec(depth=5)
        publisher = graph.publisher(TopicSpec(name=IN_TOPIC, type=IMAGE, qos=qos))
        graph.subscribe(TopicSpec(name=OUT_TOPIC, type=IMAGE, qos=qos), robot.on_edges)
        report(f"robot: sending warm-up frames on {IN_TOPIC} until {OUT_TOPIC} answers")
        deadline = time.monotonic() + FIRST_REPLY_TIMEOUT_S
        index = 0
        while not robot.first_reply.wait(0.1):
            if time.monotonic() > deadline:
                msg = (
                    f"no reply on {OUT_TOPIC} within {FIRST_REPLY_TIMEOUT_S:.0f} s: see the node's log above"
                )
                raise DeploymentError(msg)
            publisher.publish(robot.frame_cdr(index, measured=False))
            index += 1
        report(f"robot: first reply; sending {frames} frames of {width}x{height} mono8 at {rate_hz:g} Hz")
        next_send = time.perf_counter()
        for i in range(frames):
            publisher.publish(robot.frame_cdr(1000 + i, measured=True))
            next_send += 1.0 / rate_hz
            time.sleep(max(0.0, next_send - time.perf_counter()))
        drain_deadline = time.monotonic() + 5.0
        while robot.outstanding() and time.monotonic() < drain_deadline:
            time.sleep(0.02)
    finally:
        if graph is not None:
            graph.close()
        deployment.down()
    # Bridges write their final counters when they stop, so read them after teardown.
    robot.result.bridge_stats = _read_stats(deployment)
    return robot.result


def _robot_loopback_graph(store: StateStore) -> int:
    """Pick a free robot domain and keep the robot's DDS on loopback: nothing leaves this machine."""
    from fogros_dist.ros.cyclone_config import loopback_config

    with store.locked():
        used = store.used_domain_ids()
    robot_domain = next(d for d in range(1, 100) if d not in used)
    config = Path(tempfile.mkdtemp(prefix="fogros-demo-")) / "cyclonedds.xml"
    config.write_text(loopback_config(robot_domain))
    # The robot bridge (a child process) inherits these.
    os.environ["CYCLONEDDS_URI"] = f"file://{config}"
    os.environ["ROS_DOMAIN_ID"] = str(robot_domain)
    return robot_domain


def _read_stats(deployment: Deployment) -> dict[str, Any]:
    import json

    stats: dict[str, Any] = {}
    for machine, path in deployment.state.stats_paths:
        try:
            stats[machine] = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            stats[machine] = {}
    return stats


def summarize(result: DemoResult) -> list[str]:
    """Human-readable lines: the round-trip summary."""
    lines = [f"frames sent {result.sent}, answered {result.answered}, edges correct {result.correct}"]
    if result.round_trips_ms:
        rtts = sorted(result.round_trips_ms)
        p99 = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]
        lines.append(
            f"round trip robot -> cloud -> robot: median {statistics.median(rtts):.2f} ms, p99 {p99:.2f} ms"
        )
    return lines
