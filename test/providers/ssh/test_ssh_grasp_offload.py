"""grasp_planner on an SSH host with the robot's model shipped along: the runtime there gets torch
(the node needs it), the model goes to the node's files directory, the node loads it from
``$FOGROS_DIST_NODE_FILES`` (not from the machine's own cache) and answers through the bridge."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from ssh_fixtures import ssh_options
from sshlab import LabHost, SSHLab

from fogros_dist.deploy.engine import Deployment, Stage
from fogros_dist.deploy.state import StateStore
from fogros_dist.remote import selfwheel
from fogros_dist.spec import DeploymentSpec, MachineSpec, NodeSpec, ShippedFile

pytestmark = pytest.mark.netns
REPLY_TIMEOUT_S = 60.0


def _untrained_model(path: Path) -> Path:
    """A loadable grasp model (untrained: what is under test is where it comes from)."""
    import torch

    from fogros_dist.workloads.grasp.model import GQCNN, ModelConfig, save_model

    torch.manual_seed(0)
    save_model(GQCNN(ModelConfig()), path, metrics={"heldout_accuracy": 0.5})
    return path


def _ask_for_grasps(robot_domain: int, lines: list[str]) -> Any:
    """Publish camera info and a depth image (stamp 42 s) on the robot's graph until grasps come."""
    from fogros_dist.ros.dds import DdsGraph
    from fogros_dist.ros.types import MessageTypes
    from fogros_dist.workloads.grasp.messages import (
        CAMERA_INFO,
        IMAGE,
        POSE_ARRAY,
        TOPICS_IN,
        TOPICS_OUT,
        camera_info_msg,
        depth_image_msg,
    )
    from fogros_dist.workloads.grasp.scene import NoiseModel, generate_scene, render_depth

    types = MessageTypes("jazzy")
    scene = generate_scene(seed=7)
    depth = render_depth(scene, noise=NoiseModel(), seed=7).depth
    header = types.message_class("std_msgs/msg/Header")(
        stamp=types.message_class("builtin_interfaces/msg/Time")(sec=42, nanosec=0), frame_id="cam"
    )
    info = types.serialize(CAMERA_INFO, camera_info_msg(types, camera=scene.camera, header=header))
    image = types.serialize(IMAGE, depth_image_msg(types, depth=depth, header=header))
    got = threading.Event()
    replies: list[Any] = []

    def on_poses(cdr: bytes) -> None:
        replies.append(types.deserialize(POSE_ARRAY, cdr))
        got.set()

    graph = DdsGraph(robot_domain, distro="jazzy")
    try:
        info_pub = graph.publisher(TOPICS_IN[0])
        depth_pub = graph.publisher(TOPICS_IN[1])
        graph.subscribe(TOPICS_OUT[0], on_poses)
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while not got.wait(0.5):
            assert time.monotonic() < deadline, "\n".join(lines[-30:])
            info_pub.publish(info)
            depth_pub.publish(image)
    finally:
        graph.close()
    return replies[0]


def test_the_grasp_planner_runs_on_the_host_with_the_shipped_model(
    *,
    ssh_lab: SSHLab,
    alpha: LabHost,
    known_hosts: Path,
    wheel_cache: Path,
    tmp_path: Path,
    robot_domain: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("torch")
    from fogros_dist.workloads.grasp.messages import TOPICS_IN, TOPICS_OUT

    monkeypatch.setenv("FOGROS_DIST_CACHE", str(wheel_cache))
    snapshot = selfwheel.package_files()
    monkeypatch.setattr(selfwheel, "package_files", lambda: snapshot)
    model = _untrained_model(tmp_path / "robot-models" / "grasp.pt")
    options = ssh_options(ssh_lab, alpha, known_hosts, ros_setup="none")
    machine = MachineSpec(name="gpu", provider="ssh", options=tuple(sorted(options.items())))
    spec = DeploymentSpec(
        name="ssh-grasp",
        machines=(machine,),
        nodes=(
            NodeSpec(
                name="grasp_planner",
                package="fogros_dist",
                executable="grasp_planner",
                machine="gpu",
                parameters=(("threads", 1), ("samples", 20), ("iterations", 1)),
                files=(ShippedFile(name="grasp.pt", source=str(model)),),
                topics_in=TOPICS_IN,
                topics_out=TOPICS_OUT,
            ),
        ),
    )
    stages: list[Stage] = []
    lines: list[str] = []
    deployment = Deployment(
        spec,
        store=StateStore(tmp_path / "home"),
        reporter=stages.append,
        output=lambda _machine, name, stream, text: lines.append(f"[{name}/{stream}] {text}"),
        robot_domain_id=robot_domain,
    )
    deployment.up()
    try:
        host = deployment.state.hosts[0]
        # torch went into the runtime because the node needs it.
        assert dict(host.env)["FOGROS_SSH_TORCH"] == "1"
        assert any(s.stage == "shipped" for s in stages)
        reply = _ask_for_grasps(robot_domain, lines)
        assert (reply.header.stamp.sec, reply.header.frame_id) == (42, "cam")
        assert len(reply.poses) >= 1
        # The node loaded the shipped file, from its files directory on the host.
        loaded = next(line for line in lines if " model " in line and "grasp.pt" in line)
        assert f"{host.workdir}/files/" in loaded, loaded
    finally:
        deployment.down()
