"""A synthetic spinning-LiDAR sequence with ground truth, for SLAM tests and benchmarks.

The world is a flat ground plane inside four walls, with boxes (any yaw) and vertical pillars
scattered around a smooth, curving vehicle path: enough planes and edges in every direction for
ICP to be well constrained. A spinning LiDAR (channels x azimuth columns) sweeps once per scan;
with ``motion_distortion`` each column is fired from the pose at its own time, as a real sensor
moving during a sweep does. Every ray is cast against every object at once in numpy.

Frames: the ground truth pose of a scan is the sensor's pose in the world at the *end* of its
sweep (the scan's stamp), which is the frame KISS-ICP deskews to. Points are in the sensor frame
of the moment they were measured. Everything is seeded: the same config gives the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fogros_dist.errors import ConfigError

__all__ = [
    "LidarModel",
    "Scan",
    "SequenceConfig",
    "SyntheticSequence",
    "Trajectory",
    "World",
    "make_sequence",
]

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]

# A fixed epoch (2023-11-14) so stamps, and therefore bench keys, are the same on every run.
DEFAULT_START_NS = 1_700_000_000_000_000_000
# Reflectivity of the ground, walls and pillars; boxes draw their own per box.
_GROUND_REFLECTIVITY = 0.15
_WALL_REFLECTIVITY = 0.45
_PILLAR_REFLECTIVITY = 0.7
_NO_HIT = np.inf


@dataclass(frozen=True, kw_only=True)
class LidarModel:
    """A spinning multi-beam LiDAR (defaults: a 16-channel, 10 Hz, VLP-16-like sensor).

    Attributes:
        channels: beams, spread evenly over ``vertical_fov_deg``.
        vertical_fov_deg: lowest and highest beam elevation, degrees.
        horizontal_resolution_deg: azimuth step between columns, degrees.
        rate_hz: sweeps per second.
        max_range_m: returns beyond this are lost.
        min_range_m: returns closer than this are lost (the vehicle itself).
        range_noise_m: standard deviation of Gaussian range noise.
        dropout: probability that a return is lost at random.
        mount_height_m: sensor height above the ground.
    """

    channels: int = 16
    vertical_fov_deg: tuple[float, float] = (-15.0, 15.0)
    horizontal_resolution_deg: float = 0.4
    rate_hz: float = 10.0
    max_range_m: float = 60.0
    min_range_m: float = 0.5
    range_noise_m: float = 0.02
    dropout: float = 0.02
    mount_height_m: float = 1.8

    def __post_init__(self) -> None:
        if not 1 <= self.channels <= 512:
            msg = f"LiDAR channels {self.channels} is out of range: use 1..512"
            raise ConfigError(msg)
        low, high = self.vertical_fov_deg
        if not -90.0 < low <= high < 90.0:
            msg = f"LiDAR vertical_fov_deg {self.vertical_fov_deg} is invalid: use (low, high) in (-90, 90)"
            raise ConfigError(msg)
        if not 0.01 <= self.horizontal_resolution_deg <= 90.0:
            msg = (
                f"LiDAR horizontal_resolution_deg {self.horizontal_resolution_deg} is out of range: "
                "use 0.01..90"
            )
            raise ConfigError(msg)
        if not self.rate_hz > 0:
            msg = f"LiDAR rate_hz {self.rate_hz} must be > 0: use e.g. 10"
            raise ConfigError(msg)
        if not 0 <= self.min_range_m < self.max_range_m:
            msg = (
                f"LiDAR range [{self.min_range_m}, {self.max_range_m}] m is invalid: "
                "use 0 <= min_range_m < max_range_m"
            )
            raise ConfigError(msg)
        if not self.range_noise_m >= 0:
            msg = f"LiDAR range_noise_m {self.range_noise_m} must be >= 0"
            raise ConfigError(msg)
        if not 0 <= self.dropout < 1:
            msg = f"LiDAR dropout {self.dropout} is out of range: use 0 <= dropout < 1"
            raise ConfigError(msg)
        if not self.mount_height_m > 0:
            msg = f"LiDAR mount_height_m {self.mount_height_m} must be > 0 (above the ground)"
            raise ConfigError(msg)

    @property
    def columns(self) -> int:
        """Azimuth columns per sweep."""
        return max(1, round(360.0 / self.horizontal_resolution_deg))

    def beam_directions(self) -> FloatArray:
        """Unit ray directions in the sensor frame, shape (columns, channels, 3), column-major
        firing order (x forward, y left, z up; azimuth counter-clockwise from x)."""
        elevation = np.deg2rad(np.linspace(*self.vertical_fov_deg, self.channels))
        azimuth = np.arange(self.columns) * (2.0 * math.pi / self.columns)
        cos_el = np.cos(elevation)[None, :]
        dirs = np.empty((self.columns, self.channels, 3))
        dirs[:, :, 0] = np.cos(azimuth)[:, None] * cos_el
        dirs[:, :, 1] = np.sin(azimuth)[:, None] * cos_el
        dirs[:, :, 2] = np.broadcast_to(np.sin(elevation)[None, :], (self.columns, self.channels))
        return dirs


@dataclass(frozen=True, kw_only=True)
class SequenceConfig:
    """What :func:`make_sequence` generates.

    Attributes:
        length_m: path length the vehicle drives.
        speed_mps: cruise speed; the vehicle starts at rest and reaches it after ``ramp_s``.
        ramp_s: time to accelerate from rest to ``speed_mps``.
        seed: drives the path's curves, the world layout and the sensor noise.
        lidar: the sensor.
        motion_distortion: fire each column from the pose at its own time in the sweep.
        boxes: boxes scattered around the path.
        pillars: vertical pillars scattered around the path.
        margin_m: distance from the path's bounding box to the walls.
        wobble_rad: amplitude of the sensor's roll and pitch as it drives (a suspension's sway).
        start_ns: stamp of the first scan.
    """

    length_m: float = 20.0
    speed_mps: float = 2.0
    ramp_s: float = 1.0
    seed: int = 0
    lidar: LidarModel = field(default_factory=LidarModel)
    motion_distortion: bool = True
    boxes: int = 40
    pillars: int = 30
    margin_m: float = 12.0
    wobble_rad: float = 0.005
    start_ns: int = DEFAULT_START_NS

    def __post_init__(self) -> None:
        if not 0 < self.length_m <= 100_000:
            msg = f"sequence length_m {self.length_m} is out of range: use 0 < length_m <= 100000"
            raise ConfigError(msg)
        if not 0 < self.speed_mps <= 100:
            msg = f"sequence speed_mps {self.speed_mps} is out of range: use 0 < speed_mps <= 100"
            raise ConfigError(msg)
        if not self.ramp_s >= 0:
            msg = f"sequence ramp_s {self.ramp_s} must be >= 0"
            raise ConfigError(msg)
        if self.seed < 0:
            msg = f"sequence seed {self.seed} is negative: use a seed >= 0"
            raise ConfigError(msg)
        if self.boxes < 0 or self.pillars < 0:
            msg = f"sequence boxes ({self.boxes}) and pillars ({self.pillars}) must be >= 0"
            raise ConfigError(msg)
        if not self.margin_m >= 2:
            msg = f"sequence margin_m {self.margin_m} is too small: use >= 2 (room for objects)"
            raise ConfigError(msg)


@dataclass(frozen=True, kw_only=True, eq=False)
class World:
    """Static geometry: the ground plane z = 0, yawed boxes (walls included) and pillars.

    Attributes:
        boxes: (B, 7) center x, y, z, half extents x, y, z, yaw (rad).
        box_reflectivity: (B,) in 0..1.
        pillars: (P, 4) center x, y, radius, height (pillars stand on the ground).
    """

    boxes: FloatArray
    box_reflectivity: FloatArray
    pillars: FloatArray

    def raycast(self, origins: FloatArray, directions: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Cast columns of rays; return (range, reflectivity) per ray, range ``inf`` for no hit.

        Args:
            origins: (C, 3) one origin per column of rays, in the world frame, outside every
                object (a spinning LiDAR's column is its beams fired at one instant).
            directions: (C, H, 3) unit directions; pass (N, 1, 3) for independent rays.

        Returns:
            Two (C, H) arrays.
        """
        columns, height = directions.shape[:2]
        flat_origins = np.repeat(origins, height, axis=0)
        flat_dirs = directions.reshape(-1, 3)
        best = np.full(flat_dirs.shape[0], _NO_HIT)
        reflect = np.zeros(flat_dirs.shape[0])
        # Ground: rays pointing down meet z = 0.
        dz = flat_dirs[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            t_ground = np.where(dz < -1e-9, -flat_origins[:, 2] / dz, _NO_HIT)
        down = t_ground < best
        best[down] = t_ground[down]
        reflect[down] = _GROUND_REFLECTIVITY
        pillar_reflect = np.full(self.pillars.shape[0], _PILLAR_REFLECTIVITY)
        for shapes, reflectivity, radius, entry in (
            (self.boxes, self.box_reflectivity, np.hypot(self.boxes[:, 3], self.boxes[:, 4]), _box_entry),
            (self.pillars, pillar_reflect, self.pillars[:, 2], _pillar_entry),
        ):
            column, shape = _candidates(origins, directions, shapes[:, :2], radius)
            # Every ray of a candidate column gets the exact test against that shape.
            ray = (column[:, None] * height + np.arange(height)[None, :]).reshape(-1)
            shape = np.repeat(shape, height)
            t = entry(flat_origins[ray], flat_dirs[ray], shapes[shape])
            _keep_nearest(best, reflect, ray, t, reflectivity[shape])
        return best.reshape(columns, height), reflect.reshape(columns, height)


def _wrap(angle: FloatArray) -> FloatArray:
    """Angles mapped into [-pi, pi)."""
    wrapped: FloatArray = (angle + math.pi) % (2.0 * math.pi) - math.pi
    return wrapped


def _candidates(
    origins: FloatArray, directions: FloatArray, centers: FloatArray, radius: FloatArray
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """(column, shape) pairs whose top views may meet: the azimuths of the column's rays overlap
    the shape's bounding circle as seen from the column's origin. Every shape is a vertical prism,
    so this never misses a hit, and it leaves only a few percent of the pairs for the exact test."""
    horizontal = np.hypot(directions[..., 0], directions[..., 1])
    azimuth = np.arctan2(directions[..., 1], directions[..., 0])  # (C, H)
    offset = _wrap(azimuth - azimuth[:, :1])
    low, high = offset.min(axis=1), offset.max(axis=1)
    column_mid = azimuth[:, 0] + 0.5 * (low + high)
    column_half = 0.5 * (high - low)
    # A (nearly) vertical ray has no azimuth: let its column see everything.
    column_half = np.where((horizontal < 1e-6).any(axis=1), math.pi, column_half)
    rx = centers[None, :, 0] - origins[:, 0:1]
    ry = centers[None, :, 1] - origins[:, 1:2]
    distance = np.hypot(rx, ry)
    with np.errstate(invalid="ignore", divide="ignore"):
        shape_half = np.where(distance > radius, np.arcsin(np.minimum(1.0, radius / distance)), math.pi)
    gap = np.abs(_wrap(np.arctan2(ry, rx) - column_mid[:, None]))
    column, shape = np.nonzero(gap <= shape_half + column_half[:, None] + 1e-9)
    return column, shape


def _keep_nearest(
    best: FloatArray, reflect: FloatArray, ray: npt.NDArray[np.intp], t: FloatArray, value: FloatArray
) -> None:
    """Lower ``best`` to each pair's ``t`` where nearer, with that pair's reflectivity."""
    np.minimum.at(best, ray, t)
    won = t == best[ray]
    reflect[ray[won]] = value[won]


def _box_entry(origins: FloatArray, directions: FloatArray, boxes: FloatArray) -> FloatArray:
    """Entry distance of each ray into its box (slab test in the box's own frame), or inf."""
    cos_y, sin_y = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    rx = origins[:, 0] - boxes[:, 0]
    ry = origins[:, 1] - boxes[:, 1]
    dx, dy = directions[:, 0], directions[:, 1]
    # Rotate origin and direction by -yaw into the box's frame.
    local = (
        (cos_y * rx + sin_y * ry, cos_y * dx + sin_y * dy, boxes[:, 3]),
        (cos_y * ry - sin_y * rx, cos_y * dy - sin_y * dx, boxes[:, 4]),
        (origins[:, 2] - boxes[:, 2], directions[:, 2], boxes[:, 5]),
    )
    t_near = np.full(origins.shape[0], -np.inf)
    t_far = np.full(origins.shape[0], np.inf)
    for o, d, half in local:
        # Axis-parallel rays would divide by zero; a tiny same-signed value gives the right slabs.
        inv = 1.0 / np.where(np.abs(d) < 1e-12, np.copysign(1e-12, d), d)
        ta = (-half - o) * inv
        tb = (half - o) * inv
        np.maximum(t_near, np.minimum(ta, tb), out=t_near)
        np.minimum(t_far, np.maximum(ta, tb), out=t_far)
    entry: FloatArray = np.where((t_near <= t_far) & (t_near > 1e-6), t_near, _NO_HIT)
    return entry


def _pillar_entry(origins: FloatArray, directions: FloatArray, pillars: FloatArray) -> FloatArray:
    """Entry distance of each ray into its pillar's side, or inf (pillars are taller than the
    sensor, so no downward ray meets a top cap)."""
    ox = origins[:, 0] - pillars[:, 0]
    oy = origins[:, 1] - pillars[:, 1]
    dx, dy = directions[:, 0], directions[:, 1]
    a = dx * dx + dy * dy
    b = 2.0 * (ox * dx + oy * dy)
    c = ox * ox + oy * oy - pillars[:, 2] ** 2
    disc = b * b - 4.0 * a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (-b - np.sqrt(disc)) / (2.0 * a)
    z = origins[:, 2] + t * directions[:, 2]
    ok = (disc >= 0) & (a > 1e-12) & (t > 1e-6) & (z >= 0) & (z <= pillars[:, 3])
    entry: FloatArray = np.where(ok, t, _NO_HIT)
    return entry


@dataclass(frozen=True, kw_only=True, eq=False)
class Trajectory:
    """A planar path with a speed profile; sensor poses at any time.

    Attributes:
        arc: (M,) arc length samples (m), evenly spaced.
        xy: (M, 2) positions at those samples.
        heading: (M,) yaw at those samples (rad).
        speed_mps: cruise speed.
        ramp_s: time to reach cruise speed from rest.
        mount_height_m: sensor height.
        wobble_rad: roll and pitch amplitude.
    """

    arc: FloatArray
    xy: FloatArray
    heading: FloatArray
    speed_mps: float
    ramp_s: float
    mount_height_m: float
    wobble_rad: float

    @property
    def length_m(self) -> float:
        """Path length."""
        return float(self.arc[-1])

    @property
    def duration_s(self) -> float:
        """Time to drive the whole path."""
        # Accelerating at constant rate over ramp_s covers half the distance cruising would.
        cruise_time = self.length_m / self.speed_mps
        return (
            cruise_time + self.ramp_s / 2.0
            if cruise_time >= self.ramp_s / 2.0
            else math.sqrt(2.0 * self.length_m * self.ramp_s / self.speed_mps)
        )

    def distance_at(self, t: FloatArray) -> FloatArray:
        """Distance driven at times ``t`` (s), clipped to the path."""
        t = np.clip(t, 0.0, None)
        if self.ramp_s > 0:
            s = np.where(
                t < self.ramp_s,
                0.5 * self.speed_mps * t * t / self.ramp_s,
                self.speed_mps * (t - 0.5 * self.ramp_s),
            )
        else:
            s = self.speed_mps * t
        clipped: FloatArray = np.clip(s, 0.0, self.length_m)
        return clipped

    def poses_at(self, t: FloatArray) -> FloatArray:
        """Sensor poses (K, 4, 4) in the world at times ``t``.

        Roll and pitch wobble by ``wobble_rad`` with distance, as a suspension would, so the poses
        use all six degrees of freedom while the ground stays flat.
        """
        s = self.distance_at(np.asarray(t, dtype=np.float64))
        x = np.interp(s, self.arc, self.xy[:, 0])
        y = np.interp(s, self.arc, self.xy[:, 1])
        yaw = np.interp(s, self.arc, self.heading)
        roll = self.wobble_rad * np.sin(2.0 * math.pi * s / 7.0)
        pitch = self.wobble_rad * np.sin(2.0 * math.pi * s / 5.0 + 1.0)
        poses = np.zeros((s.shape[0], 4, 4))
        poses[:, :3, :3] = _rotation_zyx(yaw, pitch, roll)
        poses[:, 0, 3] = x
        poses[:, 1, 3] = y
        poses[:, 2, 3] = self.mount_height_m
        poses[:, 3, 3] = 1.0
        return poses


def _rotation_zyx(yaw: FloatArray, pitch: FloatArray, roll: FloatArray) -> FloatArray:
    """Rz(yaw) @ Ry(pitch) @ Rx(roll), batched: (K, 3, 3)."""
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    r = np.empty((yaw.shape[0], 3, 3))
    r[:, 0, 0] = cy * cp
    r[:, 0, 1] = cy * sp * sr - sy * cr
    r[:, 0, 2] = cy * sp * cr + sy * sr
    r[:, 1, 0] = sy * cp
    r[:, 1, 1] = sy * sp * sr + cy * cr
    r[:, 1, 2] = sy * sp * cr - cy * sr
    r[:, 2, 0] = -sp
    r[:, 2, 1] = cp * sr
    r[:, 2, 2] = cp * cr
    return r


@dataclass(frozen=True, kw_only=True, eq=False)
class Scan:
    """One LiDAR sweep.

    Attributes:
        index: position in the sequence.
        stamp_ns: time of the sweep's end (the frame the points are deskewed to).
        points: (N, 3) float32, sensor frame at each point's measurement time.
        intensity: (N,) float32 in 0..1.
        times: (N,) float32 seconds since the sweep started (all equal to the sweep period
            without motion distortion).
        pose: (4, 4) ground truth sensor pose in the world at ``stamp_ns``.
    """

    index: int
    stamp_ns: int
    points: Float32Array
    intensity: Float32Array
    times: Float32Array
    pose: FloatArray


@dataclass(frozen=True, kw_only=True, eq=False)
class SyntheticSequence:
    """A generated sequence: world, trajectory, ground truth; scans are cast on demand.

    Attributes:
        config: what was generated.
        world: the static scene.
        trajectory: the vehicle's path.
        stamps_ns: (K,) int64 scan stamps.
        poses: (K, 4, 4) ground truth sensor poses at those stamps.
    """

    config: SequenceConfig
    world: World
    trajectory: Trajectory
    stamps_ns: npt.NDArray[np.int64]
    poses: FloatArray

    def __len__(self) -> int:
        return int(self.stamps_ns.shape[0])

    def scan(self, index: int) -> Scan:
        """Cast scan ``index`` (deterministic: its noise is seeded by the sequence seed and index).

        Raises:
            IndexError: ``index`` is outside 0..len-1.
        """
        if not 0 <= index < len(self):
            msg = f"scan index {index} is out of range: the sequence has {len(self)} scans"
            raise IndexError(msg)
        lidar = self.config.lidar
        rng = np.random.default_rng((self.config.seed, 1, index))
        period = 1.0 / lidar.rate_hz
        end_t = index * period
        beams = lidar.beam_directions()  # (C, H, 3)
        columns = beams.shape[0]
        column_time = (np.arange(columns) + 1.0) / columns * period  # since the sweep started
        if self.config.motion_distortion:
            fire_poses = self.trajectory.poses_at(end_t - period + column_time)
        else:
            # The whole sweep at its end instant: equal times tell KISS-ICP there is nothing to deskew.
            fire_poses = np.broadcast_to(self.poses[index], (columns, 4, 4))
            column_time = np.full(columns, period)
        directions = np.einsum("cij,chj->chi", fire_poses[:, :3, :3], beams)
        ranges, reflect = self.world.raycast(np.ascontiguousarray(fire_poses[:, :3, 3]), directions)
        ranges, reflect = ranges.reshape(-1), reflect.reshape(-1)
        # Draw for every ray, hit or not, so a ray's noise never depends on which other rays hit.
        lost = rng.random(ranges.shape[0]) < lidar.dropout
        noise = rng.normal(0.0, lidar.range_noise_m, ranges.shape[0])
        keep = (ranges <= lidar.max_range_m) & (ranges >= lidar.min_range_m) & ~lost
        ranges, reflect = ranges[keep], reflect[keep]
        points = beams.reshape(-1, 3)[keep] * (ranges + noise[keep])[:, None]
        # Farther returns are weaker; clip keeps intensity a plain 0..1 value.
        intensity = np.clip(reflect * (1.0 - 0.5 * ranges / lidar.max_range_m), 0.0, 1.0)
        times = np.repeat(column_time, lidar.channels)[keep]
        return Scan(
            index=index,
            stamp_ns=int(self.stamps_ns[index]),
            points=points.astype(np.float32),
            intensity=intensity.astype(np.float32),
            times=times.astype(np.float32),
            pose=self.poses[index].copy(),
        )

    def scans(self, *, start: int = 0, stop: int | None = None) -> Iterator[Scan]:
        """Scans ``start`` .. ``stop - 1`` in order."""
        for index in range(start, len(self) if stop is None else min(stop, len(self))):
            yield self.scan(index)


def make_sequence(config: SequenceConfig | None = None) -> SyntheticSequence:
    """Generate the path, the world around it and the scan schedule for ``config``.

    Scans are cast lazily by :meth:`SyntheticSequence.scan`; this step is cheap.
    """
    config = config or SequenceConfig()
    trajectory = _make_trajectory(config)
    world = _make_world(config, trajectory)
    period = 1.0 / config.lidar.rate_hz
    count = math.floor(trajectory.duration_s / period + 1e-9) + 1
    times = np.arange(count, dtype=np.float64) * period
    stamps = config.start_ns + np.round(times * 1e9).astype(np.int64)
    return SyntheticSequence(
        config=config,
        world=world,
        trajectory=trajectory,
        stamps_ns=stamps,
        poses=trajectory.poses_at(times),
    )


def _make_trajectory(config: SequenceConfig) -> Trajectory:
    """A path whose curvature is a seeded sum of two sinusoids: S-bends with radii down to ~5 m."""
    rng = np.random.default_rng((config.seed, 2))
    step = 0.01
    arc = np.arange(0.0, config.length_m + step / 2, step)
    if arc[-1] < config.length_m:
        arc = np.append(arc, config.length_m)
    periods = rng.uniform(12.0, 30.0, 2)
    phases = rng.uniform(0.0, 2.0 * math.pi, 2)
    amplitude = rng.uniform(0.08, 0.14, 2) * rng.choice((-1.0, 1.0), 2)
    curvature = sum(amplitude[i] * np.sin(2.0 * math.pi * arc / periods[i] + phases[i]) for i in range(2))
    ds = np.diff(arc)
    heading = np.concatenate(([0.0], np.cumsum(0.5 * (curvature[1:] + curvature[:-1]) * ds)))
    mid = 0.5 * (heading[1:] + heading[:-1])
    xy = np.zeros((arc.shape[0], 2))
    xy[1:, 0] = np.cumsum(np.cos(mid) * ds)
    xy[1:, 1] = np.cumsum(np.sin(mid) * ds)
    return Trajectory(
        arc=arc,
        xy=xy,
        heading=heading,
        speed_mps=config.speed_mps,
        ramp_s=config.ramp_s,
        mount_height_m=config.lidar.mount_height_m,
        wobble_rad=config.wobble_rad,
    )


def _make_world(config: SequenceConfig, trajectory: Trajectory) -> World:
    """Walls around the path's bounding box, and seeded boxes and pillars kept off the path."""
    rng = np.random.default_rng((config.seed, 3))
    low = trajectory.xy.min(axis=0) - config.margin_m
    high = trajectory.xy.max(axis=0) + config.margin_m
    center = 0.5 * (low + high)
    size = high - low
    wall_h, wall_t = 4.0, 0.5
    walls = [
        (center[0], low[1], wall_h / 2, size[0] / 2 + wall_t, wall_t / 2, wall_h / 2, 0.0),
        (center[0], high[1], wall_h / 2, size[0] / 2 + wall_t, wall_t / 2, wall_h / 2, 0.0),
        (low[0], center[1], wall_h / 2, wall_t / 2, size[1] / 2 + wall_t, wall_h / 2, 0.0),
        (high[0], center[1], wall_h / 2, wall_t / 2, size[1] / 2 + wall_t, wall_h / 2, 0.0),
    ]
    path = trajectory.xy[:: max(1, trajectory.xy.shape[0] // 2000)]
    clearance = 1.5  # metres between the path and any object, so the sensor never starts inside one

    def place(count: int, radius_of: Callable[[], float]) -> list[tuple[FloatArray, float]]:
        # Rejection sampling; the cap keeps a crowded config from looping forever.
        placed: list[tuple[FloatArray, float]] = []
        for _ in range(count * 50):
            if len(placed) == count:
                break
            xy = rng.uniform(low + 1.0, high - 1.0)
            radius = float(radius_of())
            if np.min(np.hypot(*(path - xy).T)) > radius + clearance:
                placed.append((xy, radius))
        return placed

    boxes = list(walls)
    box_reflect = [_WALL_REFLECTIVITY] * len(walls)
    for xy, radius in place(config.boxes, lambda: float(rng.uniform(0.4, 2.0))):
        # Half extents from the bounding radius; yaw anywhere.
        hx, hy = radius * rng.uniform(0.45, 0.7, 2)
        hz = rng.uniform(0.3, 1.8)
        boxes.append((xy[0], xy[1], hz, hx, hy, hz, rng.uniform(0.0, math.pi)))
        box_reflect.append(float(rng.uniform(0.2, 0.9)))
    pillars = [
        (xy[0], xy[1], radius, rng.uniform(3.0, 8.0))
        for xy, radius in place(config.pillars, lambda: float(rng.uniform(0.15, 0.5)))
    ]
    return World(
        boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 7),
        box_reflectivity=np.asarray(box_reflect, dtype=np.float64),
        pillars=np.asarray(pillars, dtype=np.float64).reshape(-1, 4),
    )
