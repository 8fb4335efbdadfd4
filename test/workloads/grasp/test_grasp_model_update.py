"""A running grasp_planner takes a new model without a restart: `fogros-dist serve DEPLOYMENT NODE
MODEL` hands it over into the node's files directory on its machine, the node loads it between
requests and says so with both versions, the same process then answers with the new weights, and a
broken model is one error line while the old one keeps serving."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from grasp_test_helpers import TrainedGraspModel

from fogros_dist.deploy.engine import Deployment
from fogros_dist.deploy.state import StateStore
from fogros_dist.ros.dds import DdsGraph
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import DeploymentSpec, MachineSpec, NodeSpec, ShippedFile
from fogros_dist.workloads.grasp.dataset import TEST_SPLIT, DatasetConfig, split_scenes
from fogros_dist.workloads.grasp.messages import (
    CAMERA_INFO,
    IMAGE,
    QUALITY,
    TOPICS_IN,
    TOPICS_OUT,
    camera_info_msg,
    depth_image_msg,
    parse_quality,
)
from fogros_dist.workloads.grasp.model import GQCNN, ModelConfig, save_model
from fogros_dist.workloads.grasp.sampling import PatchSpec
from fogros_dist.workloads.grasp.scene import NoiseModel, render_depth
from fogros_dist.workloads.model_updates import model_version

TIMEOUT_S = 30.0


def _wait_for(probe: Callable[[], Any], timeout: float = TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.05)
    return None


def _serve(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, FOGROS_DIST_HOME=str(home))
    return subprocess.run(
        [sys.executable, "-m", "fogros_dist.cli.main", "serve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class _Robot:
    """The robot's graph: asks for grasps on one depth image, collects the qualities."""

    def __init__(self, graph: DdsGraph, types: MessageTypes) -> None:
        self.types = types
        self.scene = split_scenes(DatasetConfig(scenes=1, seed=0, split=TEST_SPLIT, first_scene=300))[0]
        self.depth = render_depth(self.scene, noise=NoiseModel(), seed=self.scene.seed).depth
        self.qualities: dict[int, np.ndarray] = {}
        self.asked = 0
        graph.subscribe(TOPICS_OUT[1], self._on_quality)
        self.info_pub, self.depth_pub = graph.publisher(TOPICS_IN[0]), graph.publisher(TOPICS_IN[1])

    def _on_quality(self, cdr: bytes) -> None:
        stamp, values = parse_quality(self.types.deserialize(QUALITY, cdr))
        if stamp is not None:
            self.qualities[stamp // 1_000_000_000] = np.asarray(values)

    def ask(self) -> np.ndarray | None:
        """Planned qualities for the image under a new stamp (None: no answer in time)."""
        self.asked += 1
        stamp = self.asked
        time_cls = self.types.message_class("builtin_interfaces/msg/Time")
        header = self.types.message_class("std_msgs/msg/Header")(
            stamp=time_cls(sec=stamp, nanosec=0), frame_id="c"
        )
        info = self.types.serialize(
            CAMERA_INFO, camera_info_msg(self.types, camera=self.scene.camera, header=header)
        )
        image = self.types.serialize(IMAGE, depth_image_msg(self.types, depth=self.depth, header=header))

        def answered() -> np.ndarray | None:
            if stamp not in self.qualities:
                self.info_pub.publish(info)
                self.depth_pub.publish(image)
                time.sleep(0.2)
            return self.qualities.get(stamp)

        found: np.ndarray | None = _wait_for(answered)
        return found


def _spec(model: Path) -> DeploymentSpec:
    return DeploymentSpec(
        name="grasp-update",
        machines=(MachineSpec(name="gpu"),),
        nodes=(
            NodeSpec(
                name="grasp_planner",
                package="fogros_dist",
                executable="grasp_planner",
                machine="gpu",
                parameters=(("threads", 1), ("samples", 20), ("iterations", 0)),
                files=(ShippedFile(name="grasp.pt", source=str(model)),),
                topics_in=TOPICS_IN,
                topics_out=TOPICS_OUT,
            ),
        ),
    )


def test_a_new_model_reaches_the_running_node_and_is_used_without_a_restart(
    grasp_model: TrainedGraspModel, tmp_path: Path, robot_domain: int
) -> None:
    torch.manual_seed(1)
    other = tmp_path / "new" / "grasp.pt"  # untrained: its qualities differ from the trained one's
    save_model(GQCNN(ModelConfig(patch=PatchSpec(size=24))), other, metrics={"heldout_accuracy": 0.5})
    old, new = model_version(grasp_model.path), model_version(other)
    assert old != new
    home = tmp_path / "home"
    lines: list[str] = []
    lock = threading.Lock()

    def output(_machine: str, _name: str, _stream: str, text: str) -> None:
        with lock:
            lines.append(text)

    def logged(text: str) -> str | None:
        with lock:
            return next((line for line in lines if text in line), None)

    deployment = Deployment(
        _spec(grasp_model.path), store=StateStore(home), output=output, robot_domain_id=robot_domain
    )
    deployment.up()
    graph = DdsGraph(robot_domain, distro="jazzy")
    try:
        robot = _Robot(graph, MessageTypes("jazzy"))
        before = robot.ask()
        assert before is not None, "\n".join(lines[-20:])
        assert logged(f"(version {old})") is not None, "\n".join(lines[-20:])
        pid = next(r.pid for r in deployment.state.processes if r.role == "node")

        handed = _serve(home, "grasp-update", "grasp_planner", str(other))
        assert handed.returncode == 0, handed.stderr
        assert f"model version {new} handed over" in handed.stdout
        line = _wait_for(lambda: (robot.ask(), logged(f"version {new}"))[1])
        assert line is not None, "\n".join(lines[-20:])
        assert f"replacing version {old}" in line
        after = robot.ask()
        assert after is not None
        # The same process, now planning with the new weights on the same image.
        assert next(r.pid for r in deployment.state.processes if r.role == "node") == pid
        assert not np.allclose(before[: len(after)], after[: len(before)])

        broken = tmp_path / "broken" / "grasp.pt"
        broken.parent.mkdir()
        broken.write_bytes(b"not a model")
        assert _serve(home, "grasp-update", "grasp_planner", str(broken)).returncode == 0
        error = _wait_for(lambda: (robot.ask(), logged("not loaded, still serving"))[1])
        assert error is not None, "\n".join(lines[-20:])
        assert f"still serving version {new}" in error
        assert robot.ask() is not None  # and it still answers
    finally:
        graph.close()
        deployment.down()


def test_serving_to_an_unknown_node_or_a_missing_file_is_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    missing = _serve(home, "nothing", "grasp_planner", str(tmp_path / "none.pt"))
    assert missing.returncode != 0
    assert missing.stderr.strip().count("\n") == 0
    assert "does not exist" in missing.stderr
    model = tmp_path / "grasp.pt"
    model.write_bytes(b"x")
    unknown = _serve(home, "nothing", "grasp_planner", str(model))
    assert unknown.returncode != 0
    assert unknown.stderr.strip().count("\n") == 0
    assert "no deployment named 'nothing'" in unknown.stderr
