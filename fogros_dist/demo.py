"""The main job (`make demo`): offload the grasp planner to the Local provider and measure it.

A robot-side synthetic depth camera publishes ``sensor_msgs/CameraInfo`` and depth
``sensor_msgs/Image`` on the robot's DDS graph (the Cyclone DDS adapter); the robot bridge carries
them over Zenoh to a Local machine, where ``grasp_planner`` (a GQ-CNN with CEM refinement) plans
grasps and publishes them back as ``geometry_msgs/PoseArray`` plus their predicted qualities. The
robot knows each scene's exact geometry, so it judges every returned grasp with the analytic
robust labels the network was trained on, measures the round trip, and draws the grasps to a PNG.

The model comes from ``default_model_dir()/grasp.pt``; when there is none, a small one is
trained first (about half a minute on two cores, once) and cached there.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fogros_dist.deploy.engine import Deployment, Stage
from fogros_dist.deploy.robot_graph import isolate_robot_graph
from fogros_dist.deploy.state import StateStore
from fogros_dist.errors import DeploymentError
from fogros_dist.providers.base import OutputSink
from fogros_dist.spec import DeploymentSpec, MachineSpec, NodeSpec, default_distro

if TYPE_CHECKING:
    from fogros_dist.workloads.grasp.train import GraspTraining

__all__ = ["DEMO_TRAINING_SCENES", "DemoResult", "demo_spec", "ensure_model", "run_demo", "summarize"]

FIRST_REPLY_TIMEOUT_S = 30.0
REPLY_TIMEOUT_S = 5.0
# Scenes of this split are only used by the demo (training 0, held-out 1, benchmark 2).
_DEMO_SPLIT = 3
# The small model trained when none is cached: ~89% held-out accuracy in about half a minute.
DEMO_TRAINING_SCENES = 300
_DEMO_EPOCHS = 3


@dataclass
class DemoResult:
    """What the demo measured.

    ``top1_robust`` counts answered images whose best grasp is robust by the analytic labels;
    ``robust`` and ``grasps`` count all returned grasps; ``confidences`` holds the planner's
    predicted quality of each best grasp.
    """

    sent: int = 0
    answered: int = 0
    grasps: int = 0
    robust: int = 0
    top1_robust: int = 0
    confidences: list[float] = field(default_factory=list)
    round_trips_ms: list[float] = field(default_factory=list)
    bridge_stats: dict[str, Any] = field(default_factory=dict)
    model_path: Path | None = None
    model_metrics: dict[str, float] = field(default_factory=dict)
    trained_seconds: float | None = None
    png_path: Path | None = None


def demo_spec(name: str, *, model_dir: Path, distro: str | None = None) -> DeploymentSpec:
    """One Local machine running grasp_planner, depth and camera info in, grasps out.

    ``distro`` defaults to the sourced ROS 2's (``$ROS_DISTRO``), else jazzy.
    """
    from fogros_dist.workloads.grasp import WORKLOAD

    return DeploymentSpec(
        name=name,
        distro=distro or default_distro(),
        machines=(MachineSpec(name="gpu", provider="local"),),
        nodes=(
            NodeSpec(
                name="grasp_planner",
                package="fogros_dist",
                executable=WORKLOAD.executable,
                machine="gpu",
                arguments=WORKLOAD.node_arguments(model_dir),
                topics_in=WORKLOAD.topics_in,
                topics_out=WORKLOAD.topics_out,
            ),
        ),
    )


def ensure_model(
    model_dir: Path, *, report: Callable[[str], None], training: GraspTraining | None = None
) -> tuple[Path, dict[str, float], float | None]:
    """The grasp model in ``model_dir``, trained now if there is none.

    Args:
        model_dir: where ``grasp.pt`` is (or will be saved).
        report: progress lines.
        training: a :class:`~fogros_dist.workloads.grasp.train.GraspTraining` to use instead of the
            demo's small run (its ``out`` is replaced by the model path).

    Returns:
        ``(path, metrics saved with the model, seconds spent training or None if cached)``.

    Raises:
        ConfigError: a model file exists but cannot be read (the message says how to fix it).
    """
    from dataclasses import replace

    from fogros_dist.workloads.grasp.model import load_model
    from fogros_dist.workloads.grasp.node import MODEL_FILE

    path = model_dir / MODEL_FILE
    if path.is_file():
        _model, metrics = load_model(path)
        return path, metrics, None
    from fogros_dist.workloads.grasp.dataset import DatasetConfig
    from fogros_dist.workloads.grasp.train import GraspTraining, TrainConfig, run_training

    run = training or GraspTraining(
        data=DatasetConfig(scenes=DEMO_TRAINING_SCENES),
        eval_scenes=60,
        plan_images=10,
        optim=TrainConfig(epochs=_DEMO_EPOCHS),
    )
    report(
        f"demo: no grasp model at {path}: training a small one, once "
        "(`fogros-dist train grasp` trains the full one)"
    )
    started = time.monotonic()
    _model, metrics = run_training(replace(run, out=path), report=lambda line: report(f"  {line}"))
    return path, metrics, time.monotonic() - started


@dataclass
class _Request:
    index: int
    sent_at: float
    reply: Any = None
    received_at: float = 0.0


class _RobotSide:
    """The robot's half of the demo: a synthetic depth camera and the grasp replies."""

    def __init__(self, *, distro: str) -> None:
        from fogros_dist.ros.types import MessageTypes

        self.types = MessageTypes(distro)
        self.first_reply = threading.Event()
        self.requests: dict[int, _Request] = {}
        self.qualities: dict[int, Any] = {}
        self._answered = threading.Condition()
        self._header_cls = self.types.message_class("std_msgs/msg/Header")
        self._time_cls = self.types.message_class("builtin_interfaces/msg/Time")

    def on_grasps(self, cdr: bytes) -> None:
        """Subscription callback for /grasps: match the reply to its request by stamp."""
        from fogros_dist.workloads.grasp.messages import POSE_ARRAY, stamp_ns

        now = time.perf_counter()
        msg = self.types.deserialize(POSE_ARRAY, cdr)
        with self._answered:
            request = self.requests.get(stamp_ns(msg.header))
            if request is not None and request.reply is None:
                request.reply, request.received_at = msg, now
            self._answered.notify_all()
        self.first_reply.set()

    def on_quality(self, cdr: bytes) -> None:
        """Subscription callback for /grasps/quality: keep the qualities by request stamp."""
        from fogros_dist.workloads.grasp.messages import QUALITY, parse_quality

        stamp, values = parse_quality(self.types.deserialize(QUALITY, cdr))
        if stamp is not None:
            with self._answered:
                self.qualities[stamp] = values

    def request_cdr(self, *, camera: Any, depth: Any, index: int, measured: bool) -> tuple[bytes, bytes]:
        """Serialized camera info and depth image; measured requests are remembered by stamp."""
        from fogros_dist.workloads.grasp.messages import (
            CAMERA_INFO,
            IMAGE,
            camera_info_msg,
            depth_image_msg,
        )

        stamp = time.time_ns()
        header = self._header_cls(
            stamp=self._time_cls(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000),
            frame_id="camera_depth_optical_frame",
        )
        info = self.types.serialize(CAMERA_INFO, camera_info_msg(self.types, camera=camera, header=header))
        image = self.types.serialize(IMAGE, depth_image_msg(self.types, depth=depth, header=header))
        if measured:
            with self._answered:
                self.requests[stamp] = _Request(index=index, sent_at=time.perf_counter())
        return info, image

    def wait_answered(self, stamp_count: int, timeout: float) -> bool:
        """Wait until ``stamp_count`` measured requests have replies (or ``timeout`` passes)."""
        deadline = time.monotonic() + timeout
        with self._answered:
            while sum(r.reply is not None for r in self.requests.values()) < stamp_count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._answered.wait(left)
        return True


def run_demo(
    *,
    requests: int = 30,
    rate_hz: float = 5.0,
    model_dir: Path | None = None,
    training: GraspTraining | None = None,
    png_path: Path | None = None,
    store: StateStore | None = None,
    report: Callable[[str], None] = print,
    reporter: Callable[[Stage], None] | None = None,
    output: OutputSink | None = None,
) -> DemoResult:
    """Run the grasp-planning offload demo end to end.

    Args:
        requests: measured depth images, sent one at a time.
        rate_hz: the most requests per second.
        model_dir: where the model is cached (default ``default_model_dir()``).
        training: the training run when no model is cached (default: the demo's small run).
        png_path: where to draw the first images' grasps (default: ``demo_grasps.png`` in the
            state store's home, beside the deployments).
        store: the state store (default: the user's).
        report, reporter, output: progress lines, deployment stages, remote output.

    Returns:
        The measurements (bridge counters are read after teardown).

    Raises:
        DeploymentError: no reply came back at all.
        ConfigError: the cached model cannot be read.
    """
    from fogros_dist.ros.dds import DdsGraph
    from fogros_dist.workloads.base import default_model_dir
    from fogros_dist.workloads.grasp.dataset import scene_seed
    from fogros_dist.workloads.grasp.scene import NoiseModel, generate_scene, render_depth

    model_dir = model_dir or default_model_dir()
    model_path, metrics, trained = ensure_model(model_dir, report=report, training=training)
    store = store or StateStore()
    robot_domain = isolate_robot_graph(store, prefix="fogros-demo-")
    spec = demo_spec("demo", model_dir=model_dir)
    robot = _RobotSide(distro=spec.distro)
    scenes = [
        generate_scene(seed=scene_seed(seed=0, split=_DEMO_SPLIT, index=i)) for i in range(requests + 1)
    ]
    images = [render_depth(s, noise=NoiseModel(), seed=s.seed).depth for s in scenes]
    deployment = Deployment(spec, store=store, reporter=reporter, output=output, robot_domain_id=robot_domain)
    graph = None
    try:
        deployment.up()
        graph = DdsGraph(robot_domain, distro=spec.distro)
        _exchange(robot, graph, scenes=scenes, images=images, rate_hz=rate_hz, report=report)
    finally:
        if graph is not None:
            graph.close()
        deployment.down()
    measured = {stamp: r.index for stamp, r in robot.requests.items()}
    result = _judge(robot, scenes, measured)
    result.model_path, result.model_metrics, result.trained_seconds = model_path, metrics, trained
    # Bridges write their final counters when they stop, so read them after teardown.
    result.bridge_stats = _read_stats(deployment)
    result.png_path = _draw(robot, scenes, images, png_path or store.home / "demo_grasps.png")
    return result


def _exchange(
    robot: _RobotSide,
    graph: Any,
    *,
    scenes: list[Any],
    images: list[Any],
    rate_hz: float,
    report: Callable[[str], None],
) -> None:
    """Warm up until the node answers, then send every measured request, one at a time.

    Raises:
        DeploymentError: the node never answered the warm-up.
    """
    from fogros_dist.workloads.grasp.messages import TOPICS_IN, TOPICS_OUT

    info_pub = graph.publisher(TOPICS_IN[0])
    depth_pub = graph.publisher(TOPICS_IN[1])
    graph.subscribe(TOPICS_OUT[0], robot.on_grasps)
    graph.subscribe(TOPICS_OUT[1], robot.on_quality)
    report(f"robot: sending a warm-up depth image on {TOPICS_IN[1].name} until {TOPICS_OUT[0].name} answers")
    deadline = time.monotonic() + FIRST_REPLY_TIMEOUT_S
    while not robot.first_reply.wait(0.3):
        if time.monotonic() > deadline:
            msg = (
                f"no reply on {TOPICS_OUT[0].name} within {FIRST_REPLY_TIMEOUT_S:.0f} s: "
                "see the node's log above"
            )
            raise DeploymentError(msg)
        info, image = robot.request_cdr(camera=scenes[0].camera, depth=images[0], index=0, measured=False)
        info_pub.publish(info)
        depth_pub.publish(image)
    camera = scenes[0].camera
    requests = len(scenes) - 1
    report(
        f"robot: first reply; sending {requests} depth images of {camera.width}x{camera.height} "
        f"32FC1, one at a time, at most {rate_hz:g} Hz"
    )
    next_send = time.perf_counter()
    for i in range(1, requests + 1):
        info, image = robot.request_cdr(camera=scenes[i].camera, depth=images[i], index=i, measured=True)
        info_pub.publish(info)
        depth_pub.publish(image)
        robot.wait_answered(i, REPLY_TIMEOUT_S)
        next_send += 1.0 / rate_hz
        time.sleep(max(0.0, next_send - time.perf_counter()))
    # The qualities travel on their own topic: give the last ones a moment to land.
    time.sleep(0.2)


def _judge(robot: _RobotSide, scenes: list[Any], measured: dict[int, int]) -> DemoResult:
    """Check every reply against the scene's exact geometry (the analytic robust labels)."""
    from fogros_dist.workloads.grasp.geometry import Gripper
    from fogros_dist.workloads.grasp.labels import LabelConfig, robust_labels
    from fogros_dist.workloads.grasp.messages import parse_pose_array

    result = DemoResult(sent=len(measured))
    for stamp, index in sorted(measured.items()):
        request = robot.requests[stamp]
        if request.reply is None:
            continue
        result.answered += 1
        result.round_trips_ms.append((request.received_at - request.sent_at) * 1000.0)
        scene = scenes[index]
        grasps = parse_pose_array(request.reply, camera=scene.camera).grasps
        if len(grasps) == 0:
            continue
        labels = robust_labels(scene, grasps, gripper=Gripper(), config=LabelConfig(), seed=scene.seed)
        result.grasps += len(grasps)
        result.robust += int(labels.sum())
        result.top1_robust += int(labels[0])
        qualities = robot.qualities.get(stamp)
        if qualities is not None and len(qualities):
            result.confidences.append(float(qualities[0]))
    return result


def _draw(robot: _RobotSide, scenes: list[Any], images: list[Any], path: Path) -> Path | None:
    import numpy as np

    from fogros_dist.workloads.grasp.draw import Panel, draw_panels
    from fogros_dist.workloads.grasp.geometry import Gripper
    from fogros_dist.workloads.grasp.labels import LabelConfig, robust_labels
    from fogros_dist.workloads.grasp.messages import parse_pose_array

    panels: list[Panel] = []
    for stamp, request in sorted(robot.requests.items()):
        if request.reply is None or len(panels) == 6:
            continue
        scene = scenes[request.index]
        grasps = parse_pose_array(request.reply, camera=scene.camera).grasps
        qualities = robot.qualities.get(stamp)
        q = np.asarray(qualities, dtype=np.float64) if qualities is not None else np.zeros(len(grasps))
        if len(q) != len(grasps):
            q = np.zeros(len(grasps))
        robust = robust_labels(scene, grasps, gripper=Gripper(), config=LabelConfig(), seed=scene.seed)
        title = f"image {request.index}: best {q[0]:.2f}" if len(q) else f"image {request.index}: no grasp"
        panels.append(
            Panel(
                depth=images[request.index],
                camera=scene.camera,
                grasps=grasps,
                qualities=q,
                robust=robust,
                title=title,
            )
        )
    if not panels:
        return None
    draw_panels(panels, path=path, scale=3)
    return path.resolve()


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
    """Human-readable lines: the model, round trips and grasp quality."""
    lines = []
    if result.model_path is not None:
        accuracy = result.model_metrics.get("heldout_accuracy")
        how = (
            f"trained now in {result.trained_seconds:.0f} s"
            if result.trained_seconds is not None
            else "cached"
        )
        scored = f", held-out accuracy {accuracy:.3f}" if accuracy is not None else ""
        lines.append(f"model {result.model_path} ({how}{scored})")
    lines.append(f"depth images sent {result.sent}, answered {result.answered}")
    if result.round_trips_ms:
        rtts = sorted(result.round_trips_ms)
        p99 = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]
        lines.append(
            f"round trip robot -> cloud -> robot (incl. planning): median {statistics.median(rtts):.1f} ms, "
            f"p99 {p99:.1f} ms"
        )
    if result.answered:
        lines.append(
            f"best grasp robust (analytic labels) in {result.top1_robust}/{result.answered} images "
            f"({result.top1_robust / result.answered:.0%}); "
            f"{result.robust}/{result.grasps} returned grasps robust"
        )
    if result.confidences:
        lines.append(
            f"planner confidence in its best grasp: mean {statistics.mean(result.confidences):.2f}, "
            f"min {min(result.confidences):.2f}"
        )
    if result.png_path is not None:
        lines.append(
            f"grasps drawn on the depth images (color: predicted quality, red 0 to green 1; "
            f"white outline: robust by the analytic labels): {result.png_path}"
        )
    return lines
