"""Grasp planning, Dex-Net 2.0 style: a GQ-CNN trained on synthetic depth scenes, served by
``grasp_planner``.

Modules, bottom up: ``scene`` (synthetic depth scenes, ray cast), ``geometry`` (grasps, gripper),
``labels`` (analytic robust labels), ``sampling`` (antipodal grasps, patches), ``model``
(the network), ``dataset`` and ``train`` (data and training loop, reusable for data-parallel
training), ``plan`` (CEM planner), ``messages`` (ROS 2 conversions), ``node`` (the serving node),
``draw`` (PNG figures). This module is light: torch is imported only when training or serving.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from fogros_dist.spec import TopicSpec
from fogros_dist.workloads.base import BenchRequest, default_model_dir
from fogros_dist.workloads.grasp.messages import TOPICS_IN, TOPICS_OUT
from fogros_dist.workloads.grasp.node import MODEL_FILE

if TYPE_CHECKING:
    from fogros_dist.train.comm_hooks import CommHook
    from fogros_dist.train.context import DistContext
    from fogros_dist.workloads.base import DistributedWorkload
    from fogros_dist.workloads.grasp.train import GraspTraining

__all__ = ["WORKLOAD", "GraspWorkload", "training_settings"]

# Scenes of this split are only used for benchmark requests (training uses 0, held-out 1).
_BENCH_SPLIT = 2


class GraspWorkload:
    """The grasp workload (see :class:`~fogros_dist.workloads.base.Workload`)."""

    name = "grasp"
    description = (
        "Dex-Net 2.0 style grasp planning: train a grasp-quality CNN on synthetic depth scenes with "
        "analytic robust labels, serve it as grasp_planner (depth + camera info -> ranked grasps)"
    )
    executable = "grasp_planner"
    topics_in: tuple[TopicSpec, ...] = TOPICS_IN
    topics_out: tuple[TopicSpec, ...] = TOPICS_OUT
    reply_topic: TopicSpec = TOPICS_OUT[0]

    def add_train_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add `fogros-dist train grasp` options."""
        parser.add_argument("--scenes", type=int, default=400, help="training scenes (default 400)")
        parser.add_argument("--eval-scenes", type=int, default=100, help="held-out scenes (default 100)")
        parser.add_argument(
            "--eval-every",
            type=int,
            default=1,
            help="epochs between held-out evaluations while training (default 1; 0: at the end only)",
        )
        parser.add_argument(
            "--grasps-per-scene",
            type=int,
            default=48,
            help="antipodal grasps per scene, plus as many jittered",
        )
        parser.add_argument("--epochs", type=int, default=8, help="passes over the data (default 8)")
        parser.add_argument("--batch-size", type=int, default=128)
        parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
        parser.add_argument("--seed", type=int, default=0, help="data and training seed (default 0)")
        parser.add_argument(
            "--hidden",
            type=int,
            default=None,
            help="width of the fully connected layers (default 64; Dex-Net 2.0's GQ-CNN has 1024)",
        )
        parser.add_argument(
            "--plan-images", type=int, default=20, help="held-out images the full planner is timed on"
        )
        parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
        parser.add_argument(
            "--device", default="auto", help="auto (the GPU where present, else the CPU), cpu or cuda"
        )
        parser.add_argument(
            "--out", type=Path, default=None, help=f"model file (default {default_model_dir() / MODEL_FILE})"
        )

    def train(self, args: argparse.Namespace, *, report: Callable[[str], None]) -> dict[str, float]:
        """Generate data, train, evaluate on held-out scenes, save the model; return the metrics.

        Raises:
            ConfigError: an option is out of range.
        """
        from fogros_dist.workloads.grasp.train import run_training

        _model, metrics = run_training(self._settings(args), report=report)
        return metrics

    def train_distributed(
        self,
        args: argparse.Namespace,
        *,
        report: Callable[[str], None],
        context: DistContext,
        keep_global_batch: bool,
        comm_hook: CommHook,
    ) -> dict[str, float]:
        """One rank of a data-parallel run (:mod:`fogros_dist.train.worker`); rank 0 returns the
        metrics and saves the model, the others return {}."""
        from fogros_dist.workloads.grasp.train import run_training

        _model, metrics = run_training(
            self._settings(args),
            report=report,
            context=context,
            keep_global_batch=keep_global_batch,
            comm_hook=comm_hook,
        )
        return metrics

    def _settings(self, args: argparse.Namespace) -> GraspTraining:
        return training_settings(
            scenes=args.scenes,
            eval_scenes=args.eval_scenes,
            eval_every=args.eval_every,
            hidden=args.hidden,
            grasps_per_scene=args.grasps_per_scene,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            seed=args.seed,
            plan_images=args.plan_images,
            threads=args.threads,
            device=args.device,
            out=args.out or default_model_dir() / MODEL_FILE,
        )

    def node_arguments(self, model_dir: Path) -> tuple[str, ...]:
        """Point grasp_planner at ``model_dir/grasp.pt``."""
        return ("--ros-args", "-p", f"model:={model_dir / MODEL_FILE}")

    def bench_requests(self, *, count: int, seed: int) -> Iterator[BenchRequest]:
        """``count`` synthetic depth images (with their camera info), keyed by header stamp."""
        from fogros_dist.ros.types import MessageTypes
        from fogros_dist.workloads.grasp.dataset import scene_seed
        from fogros_dist.workloads.grasp.messages import camera_info_msg, depth_image_msg
        from fogros_dist.workloads.grasp.scene import NoiseModel, generate_scene, render_depth

        types = MessageTypes("jazzy")
        header_cls = types.message_class("std_msgs/msg/Header")
        time_cls = types.message_class("builtin_interfaces/msg/Time")
        info_topic, depth_topic = TOPICS_IN
        for index in range(count):
            scene = generate_scene(seed=scene_seed(seed=seed, split=_BENCH_SPLIT, index=index))
            image = render_depth(scene, noise=NoiseModel(), seed=scene.seed)
            # Deterministic, distinct stamps: second = request index, nanoseconds = seed.
            sec, nanosec = 1 + index, seed % 1_000_000_000
            header = header_cls(
                stamp=time_cls(sec=sec, nanosec=nanosec), frame_id="camera_depth_optical_frame"
            )
            info = types.serialize(
                info_topic.type or "", camera_info_msg(types, camera=scene.camera, header=header)
            )
            depth = types.serialize(
                depth_topic.type or "", depth_image_msg(types, depth=image.depth, header=header)
            )
            yield BenchRequest(
                messages=((info_topic, info), (depth_topic, depth)), key=sec * 1_000_000_000 + nanosec
            )

    def reply_key(self, cdr: bytes) -> int:
        """The header stamp (ns) of a ``/grasps`` PoseArray."""
        from fogros_dist.ros.types import MessageTypes
        from fogros_dist.workloads.grasp.messages import POSE_ARRAY, stamp_ns

        return stamp_ns(MessageTypes("jazzy").deserialize(POSE_ARRAY, cdr).header)


def training_settings(
    *,
    scenes: int,
    eval_scenes: int,
    grasps_per_scene: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    plan_images: int,
    threads: int,
    out: Path | None,
    device: str = "auto",
    eval_every: int = 1,
    hidden: int | None = None,
) -> GraspTraining:
    """Validate training options and build the :class:`~.train.GraspTraining` run.

    Raises:
        ConfigError: an option is out of range (naming it and its value).
    """
    from fogros_dist.errors import ConfigError
    from fogros_dist.workloads.grasp.dataset import DatasetConfig
    from fogros_dist.workloads.grasp.model import ModelConfig
    from fogros_dist.workloads.grasp.train import GraspTraining, TrainConfig

    for option, value, low in (
        ("--scenes", scenes, 1),
        ("--eval-scenes", eval_scenes, 1),
        ("--eval-every", eval_every, 0),
        ("--hidden", 1 if hidden is None else hidden, 1),
        ("--grasps-per-scene", grasps_per_scene, 1),
        ("--epochs", epochs, 1),
        ("--batch-size", batch_size, 1),
        ("--plan-images", plan_images, 0),
        ("--threads", threads, 0),
    ):
        if value < low:
            msg = f"grasp training option {option} {value} must be >= {low}"
            raise ConfigError(msg)
    if not learning_rate > 0:
        msg = f"grasp training option --lr {learning_rate} must be > 0"
        raise ConfigError(msg)
    return GraspTraining(
        data=DatasetConfig(scenes=scenes, grasps_per_scene=grasps_per_scene, seed=seed),
        eval_scenes=eval_scenes,
        eval_every=eval_every,
        plan_images=plan_images,
        model=ModelConfig() if hidden is None else ModelConfig(hidden=hidden),
        optim=TrainConfig(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed),
        threads=threads,
        out=out,
        device=device,
    )


# Annotated so mypy checks GraspWorkload against the (distributed) Workload protocol.
WORKLOAD: DistributedWorkload = GraspWorkload()
