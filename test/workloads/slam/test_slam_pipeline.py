"""Odometry and evaluation: `fogros-dist train slam` on a 20 m synthetic path, and the metrics."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest

from fogros_dist.cli.main import main as cli_main
from fogros_dist.workloads import get_workload
from fogros_dist.workloads.slam import WORKLOAD
from fogros_dist.workloads.slam.evaluate import absolute_trajectory_error, relative_pose_error, umeyama
from fogros_dist.workloads.slam.odometry import LidarOdometry, OdometryConfig
from fogros_dist.workloads.slam.sequence import LidarModel, SequenceConfig, make_sequence

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _train_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    WORKLOAD.add_train_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture(scope="module")
def twenty_metres(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, float], Path, list[str]]:
    """The whole train (= evaluate) pipeline once: 106 scans of a curving 20 m path."""
    plot = tmp_path_factory.mktemp("slam") / "trajectory.png"
    lines: list[str] = []
    # One registration thread: the test machine is shared.
    metrics = WORKLOAD.train(
        _train_args("--length", "20", "--seed", "0", "--threads", "1", "--out", str(plot)),
        report=lines.append,
    )
    return metrics, plot, lines


def test_odometry_tracks_a_twenty_metre_path_within_ten_centimetres(
    twenty_metres: tuple[dict[str, float], Path, list[str]],
) -> None:
    metrics, _plot, lines = twenty_metres
    assert metrics["frames"] == 106
    assert metrics["path_length_m"] == pytest.approx(20.0)
    assert metrics["ate_m"] < 0.1
    assert metrics["ate_max_m"] < 0.25
    assert 0 < metrics["seconds_per_scan"] < 1.0
    assert metrics["map_points"] > 1000
    assert any("training a SLAM workload means evaluating its odometry" in line for line in lines)
    assert "slam: scan 106/106" in " ".join(lines)


def test_relative_pose_error_is_reported(twenty_metres: tuple[dict[str, float], Path, list[str]]) -> None:
    metrics, _plot, _lines = twenty_metres
    for key in ("rpe_trans_m", "rpe_rot_deg", "rpe_drift_percent", "rpe_frame_trans_m"):
        assert math.isfinite(metrics[key]), key
        assert metrics[key] >= 0, key
    assert metrics["rpe_trans_m"] < 0.1  # per metre driven
    assert metrics["rpe_frame_trans_m"] < metrics["rpe_trans_m"]


def test_trajectory_plot_is_written(twenty_metres: tuple[dict[str, float], Path, list[str]]) -> None:
    _metrics, plot, lines = twenty_metres
    assert plot.read_bytes()[:8] == PNG_MAGIC
    assert plot.stat().st_size > 10_000
    assert f"slam: trajectory plot written to {plot}" in lines


def test_cli_train_slam_prints_the_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "short.png"
    args = [
        "train",
        "slam",
        "--length",
        "3",
        "--channels",
        "8",
        "--threads",
        "1",
        "--out",
        str(plot),
        "--json",
    ]
    assert cli_main(args) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert {"ate_m", "rpe_trans_m", "frames", "seconds_per_scan"} <= set(metrics)
    assert plot.exists()
    assert get_workload("slam") is WORKLOAD
    assert WORKLOAD.node_arguments(tmp_path) == ()


def _poses_on_a_curve(count: int) -> np.ndarray:
    poses = np.tile(np.eye(4), (count, 1, 1))
    yaw = np.linspace(0, 1.2, count)
    poses[:, 0, 0], poses[:, 0, 1] = np.cos(yaw), -np.sin(yaw)
    poses[:, 1, 0], poses[:, 1, 1] = np.sin(yaw), np.cos(yaw)
    poses[:, 0, 3] = 5 * np.sin(yaw)
    poses[:, 1, 3] = 5 * (1 - np.cos(yaw))
    poses[:, 2, 3] = 0.1 * yaw
    return poses


def test_umeyama_recovers_a_rigid_and_a_similarity_transform() -> None:
    points = np.random.default_rng(2).normal(size=(50, 3))
    angle = 0.7
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    moved = 2.0 * points @ rotation.T + [1.0, -2.0, 0.5]
    found = umeyama(points, moved, with_scale=True)
    assert found.scale == pytest.approx(2.0)
    assert np.allclose(found.rotation, rotation)
    assert np.allclose(found.apply(points), moved)
    rigid = umeyama(points, points @ rotation.T + 3.0)
    assert rigid.scale == 1.0
    assert np.allclose(rigid.translation, 3.0)


def test_ate_ignores_the_starting_frame_and_rpe_measures_scale_drift() -> None:
    truth = _poses_on_a_curve(60)
    offset = np.eye(4)
    offset[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    offset[:3, 3] = [10, 20, 1]
    shifted = offset @ truth  # the same trajectory seen from another frame
    assert absolute_trajectory_error(estimate=shifted, ground_truth=truth).rmse_m < 1e-9
    assert relative_pose_error(estimate=shifted, ground_truth=truth).trans_rmse_m < 1e-9
    stretched = truth.copy()
    stretched[:, :3, 3] *= 1.05  # 5 % too long everywhere
    rpe = relative_pose_error(estimate=stretched, ground_truth=truth, delta=1.0)
    assert rpe.drift_percent == pytest.approx(5.0, rel=0.05)
    assert rpe.rot_rmse_deg < 1e-6
    frames = relative_pose_error(estimate=stretched, ground_truth=truth, delta=3, unit="frames")
    assert frames.pairs == 57
    with pytest.raises(ValueError, match=r"no pose pair is 100 m apart in a trajectory of 60 poses"):
        relative_pose_error(estimate=stretched, ground_truth=truth, delta=100.0)
    with pytest.raises(ValueError, match=r"estimate has 59 poses, ground_truth 60"):
        absolute_trajectory_error(estimate=truth[1:], ground_truth=truth)


def test_odometry_rejects_scans_it_cannot_use_and_bounds_its_map() -> None:
    lidar = LidarModel(channels=8, horizontal_resolution_deg=1.0)
    sequence = make_sequence(SequenceConfig(length_m=2.0, lidar=lidar))
    odometry = LidarOdometry(config=OdometryConfig(threads=1, max_map_points=500))
    with pytest.raises(ValueError, match=r"scan has 2 usable points of 3 .*need at least 30"):
        odometry.register([[1.0, 0, 0], [0, 2.0, 0], [np.nan, 0, 0]], stamp_ns=1)
    with pytest.raises(ValueError, match=r"scan points have shape \(5, 2\)"):
        odometry.register(np.zeros((5, 2)), stamp_ns=1)
    for scan in sequence.scans(stop=5):
        odometry.register(scan.points, stamp_ns=scan.stamp_ns, times=scan.times)
    assert len(odometry) == 5
    assert odometry.global_map().shape == (500, 3)
    linear, _angular = odometry.velocity()
    assert np.isfinite(linear).all()
    odometry.reset()
    assert len(odometry) == 0
    assert odometry.global_map().shape == (0, 3)
