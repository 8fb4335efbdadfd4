"""`fogros-dist train slam`: SLAM has no learned model, so "training" is its evaluation.

The entry point stays the same as for the learned workloads so that `train` means "produce and
check what the serving node runs" everywhere: here it generates a synthetic LiDAR sequence with
ground truth, runs the odometry the node runs (KISS-ICP) over it, reports ATE / RPE and speed, and
writes a top-view trajectory plot. Nothing is saved for the node to load.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fogros_dist.workloads.slam.odometry import OdometryConfig
from fogros_dist.workloads.slam.sequence import LidarModel, SequenceConfig

__all__ = ["PLOT_FILE", "EvaluationSettings", "add_arguments", "run_evaluation", "settings_from_args"]

PLOT_FILE = Path("slam") / "trajectory.png"


@dataclass(frozen=True, kw_only=True)
class EvaluationSettings:
    """One evaluation run.

    Attributes:
        sequence: the synthetic sequence to generate.
        odometry: the odometry under test (the node's settings).
        plot: where to write the trajectory PNG; None writes none.
        rpe_delta_m: RPE pair spacing along the ground truth path.
    """

    sequence: SequenceConfig
    odometry: OdometryConfig
    plot: Path | None
    rpe_delta_m: float = 1.0


def add_arguments(parser: argparse.ArgumentParser, *, default_plot: Path) -> None:
    """`fogros-dist train slam` options."""
    parser.add_argument("--length", type=float, default=20.0, help="path length in metres (default 20)")
    parser.add_argument("--speed", type=float, default=2.0, help="cruise speed in m/s (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="path, world and noise seed (default 0)")
    parser.add_argument("--channels", type=int, default=16, help="LiDAR beams (default 16)")
    parser.add_argument("--rate", type=float, default=10.0, help="LiDAR sweeps per second (default 10)")
    parser.add_argument("--noise", type=float, default=0.02, help="range noise sigma in m (default 0.02)")
    parser.add_argument("--dropout", type=float, default=0.02, help="lost-return probability (default 0.02)")
    parser.add_argument("--lidar-range", type=float, default=60.0, help="LiDAR max range in m (default 60)")
    parser.add_argument(
        "--no-distortion",
        action="store_true",
        help="fire a whole sweep at one instant (no motion distortion, no deskewing)",
    )
    parser.add_argument(
        "--voxel-size", type=float, default=None, help="KISS-ICP voxel in m (default 1: 100 m range / 100)"
    )
    parser.add_argument("--threads", type=int, default=0, help="registration threads (0: every core)")
    parser.add_argument(
        "--out", type=Path, default=None, help=f"trajectory plot PNG (default {default_plot})"
    )


def settings_from_args(args: argparse.Namespace, *, default_plot: Path) -> EvaluationSettings:
    """Settings from parsed options.

    Raises:
        ConfigError: an option is out of range (the message names it).
    """
    distortion = not args.no_distortion
    return EvaluationSettings(
        sequence=SequenceConfig(
            length_m=args.length,
            speed_mps=args.speed,
            seed=args.seed,
            motion_distortion=distortion,
            lidar=LidarModel(
                channels=args.channels,
                rate_hz=args.rate,
                range_noise_m=args.noise,
                dropout=args.dropout,
                max_range_m=args.lidar_range,
            ),
        ),
        odometry=OdometryConfig(voxel_size_m=args.voxel_size, threads=args.threads, deskew=distortion),
        plot=args.out or default_plot,
    )


def run_evaluation(settings: EvaluationSettings, *, report: Callable[[str], None]) -> dict[str, float]:
    """Generate, run the odometry, evaluate; write the plot; return the metrics.

    Metrics: ``ate_m`` (RMSE after SE(3) alignment), ``ate_max_m``, ``rpe_trans_m`` and
    ``rpe_rot_deg`` (RMSE over pose pairs ``rpe_delta_m`` apart), ``rpe_drift_percent``,
    ``rpe_frame_trans_m`` (frame to frame), ``frames``, ``seconds_per_scan`` (odometry only),
    ``generate_seconds_per_scan``, ``path_length_m``, ``map_points``.

    Raises:
        ConfigError: settings out of range.
        MissingDependency: kiss-icp or matplotlib is missing.
    """
    from fogros_dist.workloads.slam.evaluate import (
        absolute_trajectory_error,
        plot_trajectory,
        relative_pose_error,
    )
    from fogros_dist.workloads.slam.odometry import LidarOdometry
    from fogros_dist.workloads.slam.sequence import make_sequence

    sequence = make_sequence(settings.sequence)
    odometry = LidarOdometry(config=settings.odometry)
    frames = len(sequence)
    report(
        f"slam: {frames} scans over {sequence.trajectory.length_m:.1f} m "
        f"({settings.sequence.lidar.channels} channels x {settings.sequence.lidar.columns} columns); "
        "training a SLAM workload means evaluating its odometry"
    )
    generate_s = register_s = 0.0
    every = max(1, math.ceil(frames / 5))
    for index in range(frames):
        t0 = time.perf_counter()
        scan = sequence.scan(index)
        t1 = time.perf_counter()
        odometry.register(scan.points, stamp_ns=scan.stamp_ns, times=scan.times)
        t2 = time.perf_counter()
        generate_s += t1 - t0
        register_s += t2 - t1
        if (index + 1) % every == 0 or index + 1 == frames:
            report(f"slam: scan {index + 1}/{frames}, {1000 * register_s / (index + 1):.1f} ms per scan")
    ate = absolute_trajectory_error(estimate=odometry.poses, ground_truth=sequence.poses)
    rpe = relative_pose_error(
        estimate=odometry.poses, ground_truth=sequence.poses, delta=settings.rpe_delta_m
    )
    per_frame = relative_pose_error(
        estimate=odometry.poses, ground_truth=sequence.poses, delta=1, unit="frames"
    )
    map_points = odometry.global_map()
    if settings.plot is not None:
        plot_trajectory(
            estimate=odometry.poses,
            ground_truth=sequence.poses,
            path=settings.plot,
            map_points=map_points,
            title=(
                f"KISS-ICP on a synthetic {sequence.trajectory.length_m:.0f} m sequence\n"
                f"ATE {ate.rmse_m:.3f} m, RPE {rpe.trans_rmse_m:.3f} m / {settings.rpe_delta_m:g} m"
            ),
        )
        report(f"slam: trajectory plot written to {settings.plot}")
    return {
        "ate_m": ate.rmse_m,
        "ate_max_m": ate.max_m,
        "rpe_trans_m": rpe.trans_rmse_m,
        "rpe_rot_deg": rpe.rot_rmse_deg,
        "rpe_drift_percent": rpe.drift_percent,
        "rpe_frame_trans_m": per_frame.trans_rmse_m,
        "frames": float(frames),
        "seconds_per_scan": register_s / frames,
        "generate_seconds_per_scan": generate_s / frames,
        "path_length_m": sequence.trajectory.length_m,
        "map_points": float(map_points.shape[0]),
    }
