"""slam_node offloaded for real: a Deployment on the Local provider, bridged over Zenoh.

The robot's DDS graph publishes PointCloud2 scans of a synthetic sequence on /points; the bridge
carries them to slam_node on the Local machine (its own DDS domain); Odometry comes back on /odom
for every scan, and the map on /map. Bad clouds are warned about on the machine and skipped.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from ros_packages import needs_message_packages

from fogros_dist.deploy.engine import Deployment
from fogros_dist.deploy.state import StateStore
from fogros_dist.ros.dds import DdsGraph
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import DeploymentSpec, MachineSpec, NodeSpec
from fogros_dist.workloads.slam import WORKLOAD, bench_sequence
from fogros_dist.workloads.slam.node import ODOMETRY
from fogros_dist.workloads.slam.pointcloud import POINTCLOUD2, make_cloud, read_points, stamp_ns

pytestmark = needs_message_packages("nav_msgs")  # slam_node answers with Odometry

FIRST_REPLY_TIMEOUT_S = 60.0
REPLY_TIMEOUT_S = 10.0
SCANS = 12
TYPES = MessageTypes("jazzy")


class Robot:
    """What comes back on the robot's graph: odometry by stamp, and map clouds."""

    def __init__(self) -> None:
        self.odometry: dict[int, Any] = {}
        self.maps: list[Any] = []
        self.arrived = threading.Condition()

    def on_odom(self, cdr: bytes) -> None:
        with self.arrived:
            self.odometry[WORKLOAD.reply_key(cdr)] = TYPES.deserialize(ODOMETRY, cdr)
            self.arrived.notify_all()

    def on_map(self, cdr: bytes) -> None:
        with self.arrived:
            self.maps.append(TYPES.deserialize(POINTCLOUD2, cdr))
            self.arrived.notify_all()

    def wait(self, key: int, timeout: float) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: key in self.odometry, timeout)


def _wait_for_line(lines: list[str], text: str) -> None:
    deadline = time.monotonic() + REPLY_TIMEOUT_S
    while not any(text in line for line in lines):
        assert time.monotonic() < deadline, f"no {text!r} in the node's log:\n" + "\n".join(lines[-20:])
        time.sleep(0.05)


def _bad_clouds(base: int) -> list[bytes]:
    """An empty cloud, an all-NaN cloud and one without z, stamped just after ``base``."""
    empty = make_cloud(np.zeros((0, 3)), types=TYPES, stamp=base + 1, frame_id="lidar")
    nans = make_cloud(np.full((500, 3), np.nan), types=TYPES, stamp=base + 2, frame_id="lidar")
    no_z = make_cloud(np.ones((500, 3)), types=TYPES, stamp=base + 3, frame_id="lidar")
    no_z.fields = no_z.fields[:2]
    return [TYPES.serialize(POINTCLOUD2, cloud) for cloud in (empty, nans, no_z)]


def _check_odometry(robot: Robot, keys: list[int], truth: np.ndarray) -> None:
    """Every scan answered, stamped like its cloud, in odom -> base_link, close to the truth."""
    assert set(keys) <= set(robot.odometry)
    start = np.linalg.inv(truth[0])
    for index, key in enumerate(keys):
        odom = robot.odometry[key]
        assert stamp_ns(odom.header) == key
        assert (odom.header.frame_id, odom.child_frame_id) == ("odom", "base_link")
        position = odom.pose.pose.position
        expected = (start @ truth[index])[:3, 3]
        assert np.linalg.norm([position.x - expected[0], position.y - expected[1]]) < 0.1, index
    assert robot.odometry[keys[-1]].twist.twist.linear.x > 0.5  # driving forward at ~2 m/s


def _check_map(robot: Robot) -> None:
    """The map: every 4 scans, in odom, a voxel-downsampled cloud."""
    with robot.arrived:
        assert robot.arrived.wait_for(lambda: len(robot.maps) >= SCANS // 4, REPLY_TIMEOUT_S)
    latest = robot.maps[-1]
    assert latest.header.frame_id == "odom"
    assert 1000 < read_points(latest).xyz.shape[0] <= 100_000


def test_slam_node_answers_through_the_bridge_and_survives_bad_clouds(
    tmp_path: Path, robot_domain: int
) -> None:
    spec = DeploymentSpec(
        name="slam-bridge",
        machines=(MachineSpec(name="gpu"),),
        nodes=(
            NodeSpec(
                name="slam_node",
                package="fogros_dist",
                executable=WORKLOAD.executable,
                machine="gpu",
                arguments=WORKLOAD.node_arguments(tmp_path),
                parameters=(("map_every", 4), ("threads", 1)),
                topics_in=WORKLOAD.topics_in,
                topics_out=WORKLOAD.topics_out,
            ),
        ),
    )
    lines: list[str] = []
    deployment = Deployment(
        spec,
        store=StateStore(tmp_path / "home"),
        output=lambda machine, name, stream, text: lines.append(f"[{machine}/{name}/{stream}] {text}"),
        robot_domain_id=robot_domain,
    )
    requests = list(WORKLOAD.bench_requests(count=SCANS, seed=3))
    truth = bench_sequence(count=SCANS, seed=3).poses
    robot = Robot()
    graph = None
    deployment.up()
    try:
        graph = DdsGraph(robot_domain)
        points = graph.publisher(WORKLOAD.topics_in[0])
        graph.subscribe(WORKLOAD.reply_topic, robot.on_odom)
        graph.subscribe(WORKLOAD.topics_out[1], robot.on_map)

        def send(index: int) -> int:
            ((_topic, cdr),) = requests[index].messages
            points.publish(cdr)
            return requests[index].key

        # Discovery on both graphs and the node's start-up take a while: repeat the first scan
        # (the node drops the repeats, warning that their stamp repeats).
        deadline = time.monotonic() + FIRST_REPLY_TIMEOUT_S
        while not robot.wait(send(0), 0.5):
            assert time.monotonic() < deadline, "no odometry on /odom:\n" + "\n".join(lines[-20:])
        for index in range(1, SCANS // 2):
            assert robot.wait(send(index), REPLY_TIMEOUT_S), f"scan {index} unanswered"

        # Bad clouds, stamped between two good scans so that none of them looks like a restart.
        base = requests[SCANS // 2 - 1].key
        for bad in _bad_clouds(base):
            points.publish(bad)
        for index in range(SCANS // 2, SCANS):
            assert robot.wait(send(index), REPLY_TIMEOUT_S), f"scan {index} unanswered after bad clouds"

        dropped = "dropped a message on /points: "
        _wait_for_line(lines, dropped + "PointCloud2 is empty (width 0 x height 1)")
        _wait_for_line(lines, dropped + "PointCloud2 has no finite point: all 500 points have NaN")
        _wait_for_line(lines, dropped + "PointCloud2 has no field 'z' (fields: x, y)")
        assert all(line.startswith("[gpu/slam_node/stderr]") for line in lines if dropped in line)
        assert not {base + 1, base + 2, base + 3} & set(robot.odometry)

        keys = [r.key for r in requests]
        _check_odometry(robot, keys, truth)
        _check_map(robot)

        # A stamp going back (a bag restarted) starts a new trajectory and is answered.
        robot.odometry.clear()
        assert robot.wait(send(0), REPLY_TIMEOUT_S)
        _wait_for_line(lines, "stamp on /points went back")
        restarted = robot.odometry[keys[0]].pose.pose.position
        assert (restarted.x, restarted.y) == (0.0, 0.0)
    finally:
        if graph is not None:
            graph.close()
        report = deployment.down()
    assert {e.name for e in report.exits} == {"slam_node", "bridge", "robot-bridge"}
    assert StateStore(tmp_path / "home").names() == []
