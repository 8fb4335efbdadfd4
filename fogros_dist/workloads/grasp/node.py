"""grasp_planner: plans parallel-jaw grasps on depth images with a trained GQ-CNN.

Subscribes ``/camera/depth`` (``sensor_msgs/Image``, 32FC1 meters or 16UC1 millimeters) and
``/camera/camera_info`` (``sensor_msgs/CameraInfo``); for each depth image publishes the ranked
grasps on ``/grasps`` (``geometry_msgs/PoseArray``: poses in the camera frame, best first, with
the image's header) and their predicted qualities on ``/grasps/quality``
(``std_msgs/Float32MultiArray``, see :mod:`fogros_dist.workloads.grasp.messages`).

Parameters (``--ros-args -p name:=value``): ``model`` (default: ``grasp.pt`` shipped with the
deployment, in ``$FOGROS_DIST_NODE_FILES``, else ``default_model_dir()/grasp.pt``), ``top_k``
(5), ``samples`` (100 proposals), ``iterations`` (3 CEM iterations), ``device`` (``cpu``;
``cuda`` where available), ``threads`` (torch CPU threads, 0 = torch's default). Bad input is
logged with the topic and the value; the node keeps serving. A depth image that arrives before
any camera info is held and answered once the camera info comes.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fogros_dist.errors import ConfigError
from fogros_dist.nodes.runtime import NodeContext, guarded, run_node
from fogros_dist.workloads.grasp.messages import (
    CAMERA_INFO,
    CAMERA_INFO_TOPIC,
    DEPTH_TOPIC,
    GRASPS_TOPIC,
    IMAGE,
    POSE_ARRAY,
    QUALITY,
    QUALITY_TOPIC,
    TOPICS_IN,
    TOPICS_OUT,
    camera_from_info,
    depth_meters,
    grasp_reply_msgs,
    stamp_ns,
)
from fogros_dist.workloads.grasp.scene import Camera
from fogros_dist.workloads.model_updates import ModelWatcher, describe, model_version

__all__ = ["MODEL_FILE", "main", "model_path", "setup"]

MODEL_FILE = "grasp.pt"
# Where the deployment puts the files shipped with this node (spec.ShippedFile).
_NODE_FILES_ENV = "FOGROS_DIST_NODE_FILES"


def model_path(explicit: str, *, environ: Mapping[str, str]) -> Path:
    """The model the node loads: ``explicit`` (the ``model`` parameter) if given, else the
    ``grasp.pt`` shipped with the deployment, else the one in this machine's model cache.

    The shipped file comes first: an offloaded node must use the robot's model, not whatever an
    earlier run left in the machine's cache.
    """
    if explicit:
        return Path(explicit).expanduser()
    shipped = environ.get(_NODE_FILES_ENV, "")
    if shipped and (Path(shipped) / MODEL_FILE).is_file():
        return Path(shipped) / MODEL_FILE
    from fogros_dist.workloads.base import default_model_dir

    return default_model_dir() / MODEL_FILE


def _int_param(ctx: NodeContext, name: str, default: int) -> int:
    text = ctx.args.param(name, str(default))
    try:
        value = int(text)
    except ValueError:
        msg = f"parameter {name}:={text!r} is not an integer: pass e.g. -p {name}:={default}"
        raise ConfigError(msg) from None
    if value < 0:
        msg = f"parameter {name}:={value} must be >= 0"
        raise ConfigError(msg)
    return value


def setup(ctx: NodeContext) -> None:
    """Load the model, declare publishers and subscriptions.

    Raises:
        ConfigError: the model file is missing or unreadable, or a parameter is malformed.
    """
    _GraspServer(ctx)


class _GraspServer:
    """The node's state: the planner, the latest camera info, a depth image waiting for one."""

    def __init__(self, ctx: NodeContext) -> None:
        import torch

        from fogros_dist.ros.types import MessageTypes
        from fogros_dist.spec import TopicSpec
        from fogros_dist.workloads.grasp.model import load_model
        from fogros_dist.workloads.grasp.plan import CemConfig, GraspPlanner

        self.log = ctx.log
        model_file = model_path(ctx.args.param("model", ""), environ=os.environ)
        device = ctx.args.param("device", "cpu")
        if device.startswith("cuda") and not torch.cuda.is_available():
            ctx.log.warning("device %s is not available here: planning on cpu", device)
            device = "cpu"
        threads = _int_param(ctx, "threads", 0)
        if threads:
            torch.set_num_threads(threads)
        cem = CemConfig(
            top_k=max(1, _int_param(ctx, "top_k", 5)),
            initial_samples=max(1, _int_param(ctx, "samples", 100)),
            iterations=_int_param(ctx, "iterations", 3),
        )
        model, metrics = load_model(model_file, device=device)
        self.planner = GraspPlanner(model, cem=cem, device=device)
        self.device, self.cem = device, cem
        self.version = model_version(model_file)
        # A newer model handed over while the node serves (model_updates.py), checked between
        # requests.
        files = os.environ.get(_NODE_FILES_ENV, "")
        self.watcher = ModelWatcher(Path(files)) if files else None
        self.types = MessageTypes(ctx.distro)
        self.depth_topic = ctx.args.topic(DEPTH_TOPIC)
        self.info_topic = ctx.args.topic(CAMERA_INFO_TOPIC)
        grasps_topic = ctx.args.topic(GRASPS_TOPIC)
        quality_topic = ctx.args.topic(QUALITY_TOPIC)
        qos_in = {t.name: t.effective_qos for t in TOPICS_IN}
        qos_out = {t.name: t.effective_qos for t in TOPICS_OUT}
        self.pose_pub = ctx.graph.publisher(
            TopicSpec(name=grasps_topic, type=POSE_ARRAY, qos=qos_out[GRASPS_TOPIC])
        )
        self.quality_pub = ctx.graph.publisher(
            TopicSpec(name=quality_topic, type=QUALITY, qos=qos_out[QUALITY_TOPIC])
        )
        # DDS delivers each topic on its own thread; one lock keeps camera and answers in order.
        self.lock = threading.Lock()
        self.camera: Camera | None = None
        self.pending: Any = None
        self._warm_up()
        ctx.graph.subscribe(
            TopicSpec(name=self.info_topic, type=CAMERA_INFO, qos=qos_in[CAMERA_INFO_TOPIC]),
            guarded(ctx.log, self.info_topic, self.on_info),
        )
        ctx.graph.subscribe(
            TopicSpec(name=self.depth_topic, type=IMAGE, qos=qos_in[DEPTH_TOPIC]),
            guarded(ctx.log, self.depth_topic, self.on_depth),
        )
        accuracy = metrics.get("heldout_accuracy")
        trained = f", held-out accuracy {accuracy:.3f}" if accuracy is not None else ""
        ctx.log.info(
            "model %s (version %s) on %s%s; %s + %s -> %s, %s",
            model_file,
            self.version,
            device,
            trained,
            self.depth_topic,
            self.info_topic,
            grasps_topic,
            quality_topic,
        )

    def on_info(self, cdr: bytes) -> None:
        """Camera info callback: remember the camera; answer a depth image that waited for it."""
        camera = camera_from_info(self.types.deserialize(CAMERA_INFO, cdr))
        with self.lock:
            self.camera = camera
            pending, self.pending = self.pending, None
            if pending is not None:
                self.answer(pending, camera)

    def on_depth(self, cdr: bytes) -> None:
        """Depth callback: plan and publish, or hold the image until camera info arrives."""
        msg = self.types.deserialize(IMAGE, cdr)
        with self.lock:
            self._take_new_model()
            if self.camera is None:
                self.pending = msg
                self.log.warning(
                    "no camera info yet on %s: holding the depth image (stamp %d.%09d) from %s "
                    "until it arrives",
                    self.info_topic,
                    int(msg.header.stamp.sec),
                    int(msg.header.stamp.nanosec),
                    self.depth_topic,
                )
                return
            self.answer(msg, self.camera)

    def answer(self, msg: Any, camera: Camera) -> None:
        """Plan on one depth image and publish qualities, then grasps, with its header.

        Raises:
            ValueError: the image is unusable (encoding, size, no valid pixel), naming the value.
        """
        depth = depth_meters(msg)
        if depth.shape != (camera.height, camera.width):
            text = (
                f"depth image is {depth.shape[1]}x{depth.shape[0]} but {self.info_topic} says "
                f"{camera.width}x{camera.height}: publish matching image and camera info"
            )
            raise ValueError(text)
        result = self.planner.plan(depth, camera=camera)
        poses, quality = grasp_reply_msgs(
            self.types, header=msg.header, grasps=result.grasps, qualities=result.qualities, camera=camera
        )
        # Qualities first: a robot that waits for /grasps then finds the qualities already there.
        self.quality_pub.publish(self.types.serialize(QUALITY, quality))
        self.pose_pub.publish(self.types.serialize(POSE_ARRAY, poses))
        best = f"{result.qualities[0]:.2f}" if len(result.qualities) else "none"
        self.log.debug(
            "stamp %d: %d grasps, best %s, %.1f ms",
            stamp_ns(msg.header),
            len(result.grasps),
            best,
            result.seconds * 1e3,
        )

    def _take_new_model(self) -> None:
        """Swap in a model handed over since the last request (called with the lock held)."""
        if self.watcher is None:
            return
        found = self.watcher.poll()
        if found is None:
            return
        from fogros_dist.workloads.grasp.model import load_model
        from fogros_dist.workloads.grasp.plan import GraspPlanner

        path, served = found
        try:
            model, metrics = load_model(path, device=self.device)
        except ConfigError as err:
            self.log.error(
                "new model version %s not loaded, still serving version %s: %s",
                served.version,
                self.version,
                err,
            )
            return
        self.planner = GraspPlanner(model, cem=self.cem, device=self.device)
        old, self.version = self.version, served.version
        self.watcher.loaded(served)
        self.log.info(
            "model %s loaded from %s, replacing version %s",
            describe(served, {**metrics, **served.metrics}),
            path,
            old,
        )

    def _warm_up(self) -> None:
        # The first forward pass initializes torch's kernels; do it before the first request.
        import numpy as np

        from fogros_dist.workloads.grasp.geometry import Grasps

        started = time.perf_counter()
        grasps = Grasps(
            centers=np.array([[8.0, 8.0]]), angles=np.zeros(1), depths=np.array([0.6]), widths=np.zeros(1)
        )
        self.planner.score(
            np.full((16, 16), 0.6), camera=Camera(width=16, height=16, fx=20.0, fy=20.0), grasps=grasps
        )
        self.log.debug("warm-up took %.0f ms", (time.perf_counter() - started) * 1e3)


def main() -> int:
    """Console-script entry point."""
    return run_node("grasp_planner", setup)


if __name__ == "__main__":
    sys.exit(main())
