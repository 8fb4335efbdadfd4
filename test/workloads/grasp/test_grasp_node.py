"""grasp_planner deployed on the Local provider, asked through the bridge from the robot's graph.

One deployment serves the whole module: the robot publishes depth images and camera info on its
own DDS domain (Cyclone DDS adapter), the bridges carry them to the node's machine and the grasps
back. The node's output is captured line by line, so warnings about bad input can be checked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from grasp_test_helpers import TrainedGraspModel, exclusive_domain_id

from fogros_dist.deploy.engine import Deployment
from fogros_dist.deploy.state import StateStore
from fogros_dist.ros.dds import DdsGraph
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import DeploymentSpec, MachineSpec, NodeSpec
from fogros_dist.workloads.grasp import WORKLOAD
from fogros_dist.workloads.grasp.dataset import TEST_SPLIT, DatasetConfig, split_scenes
from fogros_dist.workloads.grasp.geometry import Gripper
from fogros_dist.workloads.grasp.labels import LabelConfig, robust_labels
from fogros_dist.workloads.grasp.messages import (
    CAMERA_INFO,
    IMAGE,
    POSE_ARRAY,
    QUALITY,
    TOPICS_IN,
    TOPICS_OUT,
    camera_info_msg,
    depth_image_msg,
    parse_pose_array,
    parse_quality,
    stamp_ns,
)
from fogros_dist.workloads.grasp.scene import Camera, NoiseModel, Scene, render_depth

REPLY_TIMEOUT_S = 30.0
HELD_STAMP = 1_000


@dataclass
class Robot:
    """The robot's side of the link: publishers, collected replies and the node's output."""

    types: MessageTypes
    publish_info: Callable[[bytes], None]
    publish_depth: Callable[[bytes], None]
    replies: dict[int, Any] = field(default_factory=dict)
    qualities: dict[int, np.ndarray] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    held_answered: bool = False

    def header(self, stamp_sec: int) -> Any:
        time_cls = self.types.message_class("builtin_interfaces/msg/Time")
        return self.types.message_class("std_msgs/msg/Header")(
            stamp=time_cls(sec=stamp_sec, nanosec=0), frame_id="camera_depth_optical_frame"
        )

    def send_info(self, camera: Camera, stamp_sec: int = 0) -> None:
        msg = camera_info_msg(self.types, camera=camera, header=self.header(stamp_sec))
        self.publish_info(self.types.serialize(CAMERA_INFO, msg))

    def send_depth(self, depth: np.ndarray, stamp_sec: int, encoding: str = "32FC1") -> None:
        msg = depth_image_msg(self.types, depth=depth, header=self.header(stamp_sec), encoding=encoding)
        self.publish_depth(self.types.serialize(IMAGE, msg))

    def reply(self, stamp_sec: int, timeout: float = REPLY_TIMEOUT_S) -> Any:
        return _wait_for(lambda: self.replies.get(stamp_sec * 1_000_000_000), timeout)

    def logged(self, text: str, timeout: float = 10.0) -> str | None:
        def find() -> str | None:
            with self.lock:
                return next((line for line in self.lines if text in line), None)

        return _wait_for(find, timeout)


def _wait_for(probe: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.05)
    return None


def _scenes(count: int) -> list[Scene]:
    return split_scenes(DatasetConfig(scenes=count, seed=0, split=TEST_SPLIT, first_scene=200))


@pytest.fixture(scope="module")
def robot(grasp_model: TrainedGraspModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Robot]:
    """grasp_planner on a Local machine; before yielding, the robot sends a depth image before
    any camera info, then the camera info, and records whether the held image was answered."""
    spec = DeploymentSpec(
        name="grasp-node",
        machines=(MachineSpec(name="gpu"),),
        nodes=(
            NodeSpec(
                name="grasp_planner",
                package="fogros_dist",
                executable=WORKLOAD.executable,
                machine="gpu",
                arguments=WORKLOAD.node_arguments(grasp_model.model_dir),
                parameters=(("threads", 1),),
                topics_in=TOPICS_IN,
                topics_out=TOPICS_OUT,
            ),
        ),
    )
    types = MessageTypes("jazzy")
    home = tmp_path_factory.mktemp("grasp_node_home")
    with exclusive_domain_id() as robot_domain:
        captured: list[str] = []
        capture_lock = threading.Lock()

        def output(machine: str, name: str, stream: str, text: str) -> None:
            with capture_lock:
                captured.append(f"[{machine}/{name}/{stream}] {text}")

        deployment = Deployment(spec, store=StateStore(home), output=output, robot_domain_id=robot_domain)
        deployment.up()
        graph = DdsGraph(robot_domain, distro="jazzy")
        try:
            info_pub = graph.publisher(TOPICS_IN[0])
            depth_pub = graph.publisher(TOPICS_IN[1])
            side = Robot(types=types, publish_info=info_pub.publish, publish_depth=depth_pub.publish)
            side.lines = captured
            side.lock = capture_lock

            def on_poses(cdr: bytes) -> None:
                msg = types.deserialize(POSE_ARRAY, cdr)
                side.replies[stamp_ns(msg.header)] = msg

            def on_quality(cdr: bytes) -> None:
                stamp, values = parse_quality(types.deserialize(QUALITY, cdr))
                if stamp is not None:
                    side.qualities[stamp] = values

            graph.subscribe(TOPICS_OUT[0], on_poses)
            graph.subscribe(TOPICS_OUT[1], on_quality)
            scene = _scenes(1)[0]
            depth = render_depth(scene, noise=NoiseModel(), seed=scene.seed).depth
            # Until the bridges have matched both ends, messages can be lost: repeat until seen.
            deadline = time.monotonic() + REPLY_TIMEOUT_S
            while side.logged("no camera info yet", timeout=0.3) is None:
                assert time.monotonic() < deadline, "\n".join(captured[-20:])
                side.send_depth(depth, HELD_STAMP)
            deadline = time.monotonic() + 15.0
            while not side.held_answered and time.monotonic() < deadline:
                side.send_info(scene.camera)
                side.held_answered = side.reply(HELD_STAMP, timeout=0.3) is not None
            yield side
        finally:
            graph.close()
            deployment.down()


def test_depth_before_camera_info_is_held_then_answered(robot: Robot) -> None:
    line = robot.logged("no camera info yet")
    assert line is not None
    assert "WARNING" in line
    assert "/camera/camera_info" in line
    assert f"holding the depth image (stamp {HELD_STAMP}.000000000) from /camera/depth" in line
    assert robot.held_answered


def test_grasps_come_back_through_the_bridge(robot: Robot) -> None:
    robust_best = 0
    for index, scene in enumerate(_scenes(4)[1:], start=1):
        image = render_depth(scene, noise=NoiseModel(), seed=scene.seed)
        stamp = 2_000 + index
        # 16UC1 (millimeters) for one request: both depth encodings are accepted.
        robot.send_info(scene.camera, stamp)
        robot.send_depth(image.depth, stamp, encoding="16UC1" if index == 2 else "32FC1")
        msg = robot.reply(stamp)
        assert msg is not None, "\n".join(robot.lines[-20:])
        assert msg.header.frame_id == "camera_depth_optical_frame"
        reply = parse_pose_array(msg, camera=scene.camera)
        assert 1 <= len(reply.grasps) <= 5
        # Poses are in the camera frame: in front of it, at the depth of the table top or above.
        assert (reply.points[:, 2] > 0.4).all()
        assert (reply.points[:, 2] < 0.8).all()
        qualities = _wait_for(lambda s=stamp: robot.qualities.get(s * 1_000_000_000), 5.0)
        assert qualities is not None
        assert len(qualities) == len(reply.grasps)
        assert list(qualities) == sorted(qualities, reverse=True)
        labels = robust_labels(scene, reply.grasps, gripper=Gripper(), config=LabelConfig(), seed=0)
        robust_best += int(labels[0])
    assert robust_best >= 2


def test_bad_input_is_logged_and_the_node_keeps_serving(robot: Robot) -> None:
    scene = _scenes(1)[0]
    depth = render_depth(scene, noise=NoiseModel(), seed=scene.seed).depth
    robot.send_info(scene.camera)
    # Wrong encoding: a color image on the depth topic.
    rgb = robot.types.message_class(IMAGE)(
        header=robot.header(3_001),
        height=4,
        width=4,
        encoding="rgb8",
        is_bigendian=0,
        step=12,
        data=np.zeros(48, dtype=np.uint8),
    )
    robot.publish_depth(robot.types.serialize(IMAGE, rgb))
    robot.send_depth(depth[:60, :80], 3_002)  # not the size the camera info announces
    robot.send_depth(np.full_like(depth, np.nan), 3_003)  # NaN everywhere
    # Camera info that cannot be used: the node keeps the camera it had.
    bad_info = camera_info_msg(robot.types, camera=scene.camera, header=robot.header(0))
    bad_info.k = np.zeros(9)
    robot.publish_info(robot.types.serialize(CAMERA_INFO, bad_info))
    time.sleep(0.5)  # the camera info topic is independent of the depth topic: let it land first
    robot.send_depth(depth, 3_004)
    assert robot.reply(3_004) is not None, "\n".join(robot.lines[-20:])
    expected = [
        "dropped a message on /camera/depth: depth image encoding 'rgb8' is not a depth encoding",
        "dropped a message on /camera/depth: depth image is 80x60 but /camera/camera_info says 160x120",
        "dropped a message on /camera/depth: depth image 160x120 holds NaN everywhere",
        "dropped a message on /camera/camera_info: camera info k=[0.0, 0.0, 0.0",
    ]
    for text in expected:
        line = robot.logged(text)
        assert line is not None, f"{text!r} not in the node's output:\n" + "\n".join(robot.lines[-20:])
        assert "WARNING" in line
    assert all(robot.replies.get(s * 1_000_000_000) is None for s in (3_001, 3_002, 3_003))
    # Warnings, not crashes: no traceback in the node's output.
    assert not [line for line in robot.lines if "Traceback" in line]
