"""LiDAR odometry and mapping on KISS-ICP: scans in, poses and a bounded global map out.

KISS-ICP registers each scan against a local voxel map (which forgets everything beyond its max
range); this module adds what a serving node needs around it: input checks with one-line errors,
stamps, a velocity estimate, and a global map of voxel-downsampled points that stays bounded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fogros_dist.errors import ConfigError, MissingDependency

__all__ = ["LidarOdometry", "OdometryConfig", "rotation_angle"]

FloatArray = npt.NDArray[np.float64]

# Fewer points than this cannot constrain six degrees of freedom reliably.
MIN_POINTS = 30
# Scans' map points wait here until this many have piled up, then one voxel pass merges them.
_MERGE_EVERY_POINTS = 200_000


@dataclass(frozen=True, kw_only=True)
class OdometryConfig:
    """KISS-ICP and map settings.

    Attributes:
        max_range_m: points farther than this are ignored (KISS-ICP's ``data.max_range``).
        min_range_m: points closer than this are ignored (the vehicle itself).
        voxel_size_m: KISS-ICP's local map voxel; None takes ``max_range_m / 100`` as KISS-ICP does.
        deskew: correct motion distortion from per-point times when a scan has them.
        max_points_per_voxel: points KISS-ICP keeps per local-map voxel.
        threads: registration threads; 0 uses every core. KISS-ICP sets this process-wide (a TBB
            global) when the first LidarOdometry is made; later values are ignored.
        map_voxel_m: voxel of the global map (one point kept per voxel).
        max_map_points: cap on the global map; beyond it the points nearest the vehicle are kept.
        initial_threshold_m: KISS-ICP's correspondence threshold until the vehicle has moved
            ``min_motion_m`` in one scan (then it adapts to the observed motion).
        min_motion_m: per-scan motion from which the threshold adapts.
    """

    max_range_m: float = 100.0
    min_range_m: float = 0.5
    voxel_size_m: float | None = None
    deskew: bool = True
    max_points_per_voxel: int = 20
    threads: int = 0
    map_voxel_m: float = 0.25
    max_map_points: int = 100_000
    initial_threshold_m: float = 2.0
    min_motion_m: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.min_range_m < self.max_range_m:
            msg = (
                f"odometry range [{self.min_range_m}, {self.max_range_m}] m is invalid: "
                "use 0 <= min_range < max_range"
            )
            raise ConfigError(msg)
        if self.voxel_size_m is not None and not 0 < self.voxel_size_m <= 10:
            msg = f"odometry voxel_size {self.voxel_size_m} m is out of range: use 0 < voxel_size <= 10"
            raise ConfigError(msg)
        if not 1 <= self.max_points_per_voxel <= 1000:
            msg = f"odometry max_points_per_voxel {self.max_points_per_voxel} is out of range: use 1..1000"
            raise ConfigError(msg)
        if self.threads < 0:
            msg = f"odometry threads {self.threads} is negative: use 0 (every core) or a count"
            raise ConfigError(msg)
        if not 0 < self.map_voxel_m <= 10:
            msg = f"odometry map_voxel {self.map_voxel_m} m is out of range: use 0 < map_voxel <= 10"
            raise ConfigError(msg)
        if not 0 < self.initial_threshold_m <= 100:
            msg = (
                f"odometry initial_threshold {self.initial_threshold_m} m is out of range: use 0 < it <= 100"
            )
            raise ConfigError(msg)
        if not self.min_motion_m >= 0:
            msg = f"odometry min_motion {self.min_motion_m} m must be >= 0"
            raise ConfigError(msg)
        if self.max_map_points < 1:
            msg = f"odometry max_map_points {self.max_map_points} must be >= 1"
            raise ConfigError(msg)

    @property
    def local_voxel_m(self) -> float:
        """The voxel KISS-ICP uses."""
        return self.voxel_size_m if self.voxel_size_m is not None else self.max_range_m / 100.0


class LidarOdometry:
    """Register scans one by one; keep the estimated poses and a global map.

    Args:
        config: KISS-ICP and map settings.

    Raises:
        MissingDependency: kiss-icp is not installed.
    """

    def __init__(self, *, config: OdometryConfig | None = None) -> None:
        self.config = config or OdometryConfig()
        try:
            import kiss_icp.voxelization
            from kiss_icp.config.config import (
                AdaptiveThresholdConfig,
                DataConfig,
                MappingConfig,
                RegistrationConfig,
            )
            from kiss_icp.config.parser import KISSConfig
            from kiss_icp.kiss_icp import KissICP
        except ImportError as err:
            msg = f"the SLAM workload needs kiss-icp ({err}): pip install kiss-icp==1.3.0"
            raise MissingDependency(msg) from err
        cfg = self.config
        # Explicit values for every section: KISSConfig would otherwise also read KISS_ICP_* env vars.
        self._kiss_config = KISSConfig(
            data=DataConfig(max_range=cfg.max_range_m, min_range=cfg.min_range_m, deskew=cfg.deskew),
            mapping=MappingConfig(
                voxel_size=cfg.local_voxel_m, max_points_per_voxel=cfg.max_points_per_voxel
            ),
            registration=RegistrationConfig(max_num_threads=cfg.threads),
            adaptive_threshold=AdaptiveThresholdConfig(
                initial_threshold=cfg.initial_threshold_m, min_motion_th=cfg.min_motion_m
            ),
        )
        self._kiss_class: Any = KissICP
        self._downsample: Any = kiss_icp.voxelization.voxel_down_sample
        self.reset()

    def reset(self) -> None:
        """Forget every pose and the map: the next scan starts a new trajectory at the origin."""
        self._kiss: Any = self._kiss_class(self._kiss_config)
        self._poses: list[FloatArray] = []
        self._stamps: list[int] = []
        self._map = np.zeros((0, 3))
        self._pending: list[FloatArray] = []
        self._pending_points = 0

    def __len__(self) -> int:
        return len(self._poses)

    @property
    def poses(self) -> FloatArray:
        """(K, 4, 4) estimated sensor poses in the odometry frame (the first scan's pose)."""
        return np.asarray(self._poses).reshape(-1, 4, 4)

    @property
    def stamps_ns(self) -> npt.NDArray[np.int64]:
        """(K,) stamps of the registered scans."""
        return np.asarray(self._stamps, dtype=np.int64)

    def register(
        self,
        points: npt.ArrayLike,
        *,
        stamp_ns: int,
        times: npt.ArrayLike | None = None,
    ) -> FloatArray:
        """Register one scan; return its estimated pose (4x4, odometry frame).

        Args:
            points: (N, 3) points in the sensor frame; non-finite rows are dropped.
            stamp_ns: the scan's stamp (its end of sweep, the frame deskewing aims at).
            times: (N,) per-point measurement times in any unit (only their order and spread
                matter); without them no deskewing happens.

        Raises:
            ValueError: the array has the wrong shape, or too few usable points remain.
        """
        xyz = np.asarray(points, dtype=np.float64)
        if xyz.ndim != 2 or xyz.shape[1] != 3:
            msg = f"scan points have shape {xyz.shape}: pass an (N, 3) array of x, y, z"
            raise ValueError(msg)
        stamps = np.zeros(0) if times is None else np.asarray(times, dtype=np.float64).reshape(-1)
        if stamps.size and stamps.shape[0] != xyz.shape[0]:
            msg = f"scan has {xyz.shape[0]} points but {stamps.shape[0]} times: pass one time per point"
            raise ValueError(msg)
        finite = np.asarray(np.isfinite(xyz).all(axis=1), dtype=np.bool_)
        if stamps.size:
            finite = finite & np.isfinite(stamps)
        ranges = np.linalg.norm(np.where(finite[:, None], xyz, 0.0), axis=1)
        usable = finite & (ranges > self.config.min_range_m) & (ranges < self.config.max_range_m)
        count = int(usable.sum())
        if count < MIN_POINTS:
            msg = (
                f"scan has {count} usable points of {xyz.shape[0]} (finite, within "
                f"{self.config.min_range_m:g}..{self.config.max_range_m:g} m): need at least {MIN_POINTS}"
            )
            raise ValueError(msg)
        xyz = np.ascontiguousarray(xyz[usable])
        # All-equal times carry no motion information; KISS-ICP would divide by their zero spread.
        if stamps.size:
            stamps = stamps[usable]
            if float(stamps.max() - stamps.min()) <= 0:
                stamps = np.zeros(0)
        frame, _source = self._kiss.register_frame(xyz, stamps)
        pose = np.array(self._kiss.last_pose, dtype=np.float64)
        self._poses.append(pose)
        self._stamps.append(int(stamp_ns))
        self._add_to_map(np.asarray(frame), pose)
        return pose

    def velocity(self) -> tuple[FloatArray, FloatArray]:
        """Linear (m/s) and angular (rad/s) velocity of the latest scan, in its sensor frame.

        Zero before the second scan or when the last two stamps are not increasing.
        """
        if len(self._poses) < 2:
            return np.zeros(3), np.zeros(3)
        dt = (self._stamps[-1] - self._stamps[-2]) * 1e-9
        if dt <= 0:
            return np.zeros(3), np.zeros(3)
        delta = np.linalg.inv(self._poses[-2]) @ self._poses[-1]
        return delta[:3, 3] / dt, _rotation_vector(delta[:3, :3]) / dt

    def global_map(self) -> npt.NDArray[np.float32]:
        """(M, 3) float32 map points in the odometry frame, one per ``map_voxel_m`` voxel, at most
        ``max_map_points`` (the ones nearest the latest pose)."""
        self._merge()
        return self._map.astype(np.float32)

    def _add_to_map(self, frame: FloatArray, pose: FloatArray) -> None:
        if frame.shape[0] == 0:
            return
        local = np.asarray(self._downsample(frame, self.config.map_voxel_m))
        self._pending.append(local @ pose[:3, :3].T + pose[:3, 3])
        self._pending_points += local.shape[0]
        if self._pending_points >= _MERGE_EVERY_POINTS:
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        merged = np.concatenate([self._map, *self._pending])
        self._pending.clear()
        self._pending_points = 0
        self._map = np.asarray(self._downsample(np.ascontiguousarray(merged), self.config.map_voxel_m))
        cap = self.config.max_map_points
        if self._map.shape[0] > cap:
            # The area around the vehicle matters most to whoever reads the map: keep it.
            distance = np.linalg.norm(self._map - self._poses[-1][:3, 3], axis=1)
            self._map = self._map[np.argpartition(distance, cap - 1)[:cap]]


def rotation_angle(rotation: FloatArray) -> float:
    """The angle (rad) of a 3x3 rotation matrix."""
    cos = (float(np.trace(rotation)) - 1.0) / 2.0
    return math.acos(max(-1.0, min(1.0, cos)))


def _rotation_vector(rotation: FloatArray) -> FloatArray:
    """Axis times angle of a 3x3 rotation matrix (small-angle safe)."""
    angle = rotation_angle(rotation)
    skew = np.array(
        [rotation[2, 1] - rotation[1, 2], rotation[0, 2] - rotation[2, 0], rotation[1, 0] - rotation[0, 1]]
    )
    if angle < 1e-9:
        return 0.5 * skew
    if math.pi - angle < 1e-6:
        # Near 180 degrees the skew part vanishes; take the axis from the symmetric part.
        axis = np.sqrt(np.clip((np.diag(rotation) + 1.0) / 2.0, 0.0, None))
        return axis * angle
    result: FloatArray = skew * (angle / (2.0 * math.sin(angle)))
    return result
