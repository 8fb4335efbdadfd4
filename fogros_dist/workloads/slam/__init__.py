"""LiDAR SLAM: KISS-ICP odometry and mapping served by ``slam_node``, evaluated on synthetic scans.

Modules, bottom up: ``sequence`` (a synthetic spinning-LiDAR sequence with ground truth, ray cast
in numpy), ``odometry`` (KISS-ICP plus a bounded global map), ``evaluate`` (ATE, RPE, trajectory
plot), ``pointcloud`` (PointCloud2 <-> numpy), ``node`` (the serving node), ``train`` (the
generate -> odometry -> evaluate pipeline behind `fogros-dist train slam`). SLAM has no learned
model: "training" it is evaluating it, and the node needs no model files.

This module is light: kiss-icp and matplotlib are imported only when used.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from fogros_dist.spec import QosSpec, TopicSpec
from fogros_dist.workloads.base import BenchRequest, default_model_dir

if TYPE_CHECKING:
    from fogros_dist.workloads.slam.sequence import SyntheticSequence

__all__ = ["BENCH_SPEED_MPS", "WORKLOAD", "SlamWorkload", "bench_sequence"]

_POINTS = TopicSpec(name="/points", type="sensor_msgs/msg/PointCloud2", qos=QosSpec(depth=5))
_ODOM = TopicSpec(name="/odom", type="nav_msgs/msg/Odometry", qos=QosSpec(depth=10))
_MAP = TopicSpec(name="/map", type="sensor_msgs/msg/PointCloud2", qos=QosSpec(depth=1))
# Benchmark scans come from a path driven at this speed, so any request count is a valid sequence.
BENCH_SPEED_MPS = 2.0


class SlamWorkload:
    """The SLAM workload (see :class:`~fogros_dist.workloads.base.Workload`)."""

    name = "slam"
    description = (
        "LiDAR odometry and mapping with KISS-ICP: `train` evaluates it on a synthetic LiDAR "
        "sequence with ground truth (ATE, RPE, speed, trajectory plot) since there is no model to "
        "learn; slam_node serves it (PointCloud2 /points -> Odometry /odom, map on /map)"
    )
    executable = "slam_node"
    topics_in: tuple[TopicSpec, ...] = (_POINTS,)
    topics_out: tuple[TopicSpec, ...] = (_ODOM, _MAP)
    reply_topic: TopicSpec = _ODOM

    def add_train_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add `fogros-dist train slam` options (sequence, sensor, odometry, plot path)."""
        from fogros_dist.workloads.slam.train import PLOT_FILE, add_arguments

        add_arguments(parser, default_plot=default_model_dir() / PLOT_FILE)

    def train(self, args: argparse.Namespace, *, report: Callable[[str], None]) -> dict[str, float]:
        """Evaluate the odometry on a synthetic sequence; write the plot; return the metrics
        (``ate_m``, ``rpe_trans_m``, ``rpe_rot_deg``, ``frames``, ``seconds_per_scan``, ...).

        Raises:
            ConfigError: an option is out of range.
            MissingDependency: kiss-icp or matplotlib is missing.
        """
        from fogros_dist.workloads.slam.train import PLOT_FILE, run_evaluation, settings_from_args

        settings = settings_from_args(args, default_plot=default_model_dir() / PLOT_FILE)
        return run_evaluation(settings, report=report)

    def node_arguments(self, model_dir: Path) -> tuple[str, ...]:
        """None: slam_node has no model to load."""
        del model_dir
        return ()

    def bench_requests(self, *, count: int, seed: int) -> Iterator[BenchRequest]:
        """``count`` consecutive scans of a synthetic sequence (so the odometry tracks them), keyed
        by their header stamps (ns). Stamps restart with every call; slam_node takes a stamp going
        back as a new trajectory, so benchmark runs can follow each other."""
        from fogros_dist.ros.types import MessageTypes
        from fogros_dist.workloads.slam.pointcloud import POINTCLOUD2, make_cloud

        if count <= 0:
            return
        sequence = bench_sequence(count=count, seed=seed)
        types = MessageTypes("jazzy")
        for scan in sequence.scans(stop=count):
            cloud = make_cloud(
                scan.points,
                types=types,
                stamp=scan.stamp_ns,
                frame_id="lidar",
                intensity=scan.intensity,
                times=scan.times,
            )
            yield BenchRequest(messages=((_POINTS, types.serialize(POINTCLOUD2, cloud)),), key=scan.stamp_ns)

    def reply_key(self, cdr: bytes) -> int:
        """The header stamp (ns) of an ``/odom`` Odometry: the stamp of the scan it answers."""
        from fogros_dist.ros.types import MessageTypes
        from fogros_dist.workloads.slam.pointcloud import stamp_ns

        return stamp_ns(MessageTypes("jazzy").deserialize("nav_msgs/msg/Odometry", cdr).header)


def bench_sequence(*, count: int, seed: int) -> SyntheticSequence:
    """The synthetic sequence whose first ``count`` scans :meth:`SlamWorkload.bench_requests`
    sends (its ground truth lets a test check the replies)."""
    from fogros_dist.workloads.slam.sequence import LidarModel, SequenceConfig, make_sequence

    lidar = LidarModel()
    # Long enough for `count` scans: the vehicle ramps up for 1 s, hence the extra second.
    length = BENCH_SPEED_MPS * (max(count, 1) / lidar.rate_hz + 1.0)
    return make_sequence(SequenceConfig(length_m=length, speed_mps=BENCH_SPEED_MPS, seed=seed, lidar=lidar))


WORKLOAD = SlamWorkload()
