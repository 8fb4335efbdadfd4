"""The synthetic LiDAR sequence: deterministic, geometrically exact, shaped by its sensor model."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from fogros_dist.errors import ConfigError
from fogros_dist.workloads.slam import sequence as seq_mod
from fogros_dist.workloads.slam.sequence import LidarModel, SequenceConfig, make_sequence

# A coarse sensor keeps these tests fast; the geometry code is the same at any resolution.
SMALL = LidarModel(channels=8, horizontal_resolution_deg=2.0)


def test_same_seed_gives_the_same_sequence_and_scans() -> None:
    config = SequenceConfig(length_m=6.0, seed=7, lidar=SMALL)
    first, second = make_sequence(config), make_sequence(config)
    assert np.array_equal(first.stamps_ns, second.stamps_ns)
    assert np.array_equal(first.poses, second.poses)
    assert np.array_equal(first.world.boxes, second.world.boxes)
    later = second.scan(9)  # casting another scan first must not change this one
    a, b = first.scan(4), second.scan(4)
    for name in ("points", "intensity", "times", "pose"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.stamp_ns == b.stamp_ns
    assert not np.array_equal(later.pose, a.pose)
    other = make_sequence(SequenceConfig(length_m=6.0, seed=8, lidar=SMALL))
    assert not np.array_equal(other.poses, first.poses)
    assert not np.array_equal(other.world.boxes, first.world.boxes)


def test_twenty_metre_path_curves_and_is_sampled_at_the_scan_rate() -> None:
    sequence = make_sequence(SequenceConfig(length_m=20.0, seed=0))
    positions = sequence.poses[:, :3, 3]
    driven = np.linalg.norm(np.diff(positions, axis=0), axis=1).sum()
    assert sequence.trajectory.length_m == pytest.approx(20.0)
    assert driven == pytest.approx(20.0, abs=0.1)
    # From rest at 2 m/s with a 1 s ramp: 10.5 s, one scan per 0.1 s.
    assert len(sequence) == 106
    assert np.all(np.diff(sequence.stamps_ns) == 100_000_000)
    yaw = np.unwrap(np.arctan2(sequence.poses[:, 1, 0], sequence.poses[:, 0, 0]))
    assert np.ptp(np.degrees(yaw)) > 20.0  # curves, not a straight line
    assert np.allclose(positions[:, 2], SequenceConfig().lidar.mount_height_m)


def test_points_lie_on_the_world_where_ground_truth_puts_them() -> None:
    lidar = LidarModel(channels=8, horizontal_resolution_deg=2.0, range_noise_m=0.0, dropout=0.0)
    sequence = make_sequence(SequenceConfig(length_m=6.0, lidar=lidar, motion_distortion=False))
    scan = sequence.scan(20)
    ranges = np.linalg.norm(scan.points, axis=1)
    assert np.all((ranges >= lidar.min_range_m) & (ranges <= lidar.max_range_m))
    # Re-cast each point's own ray from the ground-truth pose: it must end on the point.
    world = scan.points.astype(np.float64) @ scan.pose[:3, :3].T + scan.pose[:3, 3]
    directions = (world - scan.pose[:3, 3]) / ranges[:, None]
    origins = np.broadcast_to(scan.pose[:3, 3], world.shape)
    recast, _ = sequence.world.raycast(np.ascontiguousarray(origins), directions[:, None, :])
    assert np.allclose(recast[:, 0], ranges, atol=1e-4)
    assert scan.points.dtype == np.float32
    assert scan.intensity.shape == scan.times.shape == (scan.points.shape[0],)
    assert scan.times.min() > 0.0
    assert scan.times.max() == pytest.approx(1.0 / lidar.rate_hz)


def test_culled_raycast_matches_testing_every_object() -> None:
    world = make_sequence(SequenceConfig(length_m=10.0, seed=3)).world
    rng = np.random.default_rng(0)
    origins = np.column_stack(
        [rng.uniform(-5, 15, 2000), rng.uniform(-8, 8, 2000), rng.uniform(0.2, 3, 2000)]
    )
    directions = rng.normal(size=(2000, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    got, _ = world.raycast(origins, directions[:, None, :])
    each_box = [seq_mod._box_entry(origins, directions, np.broadcast_to(b, (2000, 7))) for b in world.boxes]
    each_pillar = [
        seq_mod._pillar_entry(origins, directions, np.broadcast_to(p, (2000, 4))) for p in world.pillars
    ]
    with np.errstate(divide="ignore"):
        ground = np.where(directions[:, 2] < -1e-9, -origins[:, 2] / directions[:, 2], np.inf)
    expected = np.min(np.vstack([*each_box, *each_pillar, ground]), axis=0)
    assert np.array_equal(got[:, 0], expected)
    assert np.isfinite(expected).sum() > 1000


def test_dropout_and_range_noise_follow_the_sensor_model() -> None:
    exact = LidarModel(channels=8, horizontal_resolution_deg=2.0, range_noise_m=0.0, dropout=0.0)
    noisy = LidarModel(channels=8, horizontal_resolution_deg=2.0, range_noise_m=0.05, dropout=0.0)
    lossy = LidarModel(channels=8, horizontal_resolution_deg=2.0, range_noise_m=0.0, dropout=0.5)
    scans = {
        name: make_sequence(SequenceConfig(length_m=4.0, lidar=lidar, motion_distortion=False)).scan(5)
        for name, lidar in (("exact", exact), ("noisy", noisy), ("lossy", lossy))
    }
    assert scans["exact"].points.shape == scans["noisy"].points.shape  # noise moves, never drops
    error = np.linalg.norm(scans["noisy"].points, axis=1) - np.linalg.norm(scans["exact"].points, axis=1)
    assert np.std(error) == pytest.approx(0.05, rel=0.15)
    kept = scans["lossy"].points.shape[0] / scans["exact"].points.shape[0]
    assert kept == pytest.approx(0.5, abs=0.06)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: LidarModel(dropout=1.5), r"LiDAR dropout 1\.5 is out of range: use 0 <= dropout < 1"),
        (lambda: LidarModel(channels=0), r"LiDAR channels 0 is out of range: use 1\.\.512"),
        (lambda: LidarModel(min_range_m=5, max_range_m=2), r"LiDAR range \[5, 2\] m is invalid"),
        (lambda: SequenceConfig(length_m=-1), r"sequence length_m -1 is out of range"),
        (lambda: SequenceConfig(seed=-3), r"sequence seed -3 is negative: use a seed >= 0"),
    ],
)
def test_bad_settings_name_the_value_and_the_fix(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()


def test_scan_index_out_of_range_names_the_length() -> None:
    sequence = make_sequence(SequenceConfig(length_m=1.0, lidar=SMALL))
    with pytest.raises(IndexError, match=rf"scan index {len(sequence)} is out of range"):
        sequence.scan(len(sequence))
