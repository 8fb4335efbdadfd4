"""Synthetic depth scenes: boxes, cylinders and ellipsoids on a table, seen by a pinhole camera.

Everything a grasp label needs is kept: the exact geometry of every object (pose and shape), the
camera's pose and intrinsics. Depth images are rendered by ray casting in numpy (z-depth in meters,
the convention of ``sensor_msgs/Image`` 32FC1 depth), then degraded like a real structured-light
sensor: a per-image scale error, smooth low-frequency error, per-pixel noise, and dropouts (zeros),
more of them at depth discontinuities. The same seed always gives the same scene and image.

Frames: the world has the table top at ``z = 0`` with ``z`` up; the camera frame is the ROS
optical frame (``x`` right, ``y`` down, ``z`` forward along the optical axis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "Camera",
    "DepthImage",
    "NoiseModel",
    "RayHits",
    "Scene",
    "SceneConfig",
    "SceneObject",
    "ShapeKind",
    "cast_rays",
    "generate_scene",
    "render_depth",
]

FloatArray = npt.NDArray[np.float64]
ShapeKind = Literal["box", "cylinder", "ellipsoid"]

# Rays parallel to a slab would divide by zero; this stands in for 0 in ray directions.
_TINY = 1e-12
TABLE_ID = 0


@dataclass(frozen=True, kw_only=True)
class Camera:
    """Pinhole intrinsics, as ``sensor_msgs/CameraInfo`` carries them (no distortion).

    Attributes:
        width, height: image size in pixels.
        fx, fy: focal lengths in pixels.
        cx, cy: principal point in pixels (``None``: the image center).
    """

    width: int = 160
    height: int = 120
    fx: float = 200.0
    fy: float = 200.0
    cx: float | None = None
    cy: float | None = None

    def __post_init__(self) -> None:
        if self.width < 8 or self.height < 8:
            msg = f"camera size {self.width}x{self.height} is too small: use at least 8x8 pixels"
            raise ValueError(msg)
        if not (self.fx > 0 and self.fy > 0):
            msg = f"camera focal lengths fx={self.fx}, fy={self.fy} must be > 0: check CameraInfo.k"
            raise ValueError(msg)

    @property
    def principal_point(self) -> tuple[float, float]:
        """``(cx, cy)`` with defaults resolved."""
        cx = (self.width - 1) / 2.0 if self.cx is None else self.cx
        cy = (self.height - 1) / 2.0 if self.cy is None else self.cy
        return cx, cy

    @property
    def k(self) -> tuple[float, ...]:
        """The row-major 3x3 intrinsic matrix, ``CameraInfo.k``."""
        cx, cy = self.principal_point
        return (self.fx, 0.0, cx, 0.0, self.fy, cy, 0.0, 0.0, 1.0)

    @classmethod
    def from_k(cls, *, k: tuple[float, ...] | list[float], width: int, height: int) -> Camera:
        """The camera described by a ``CameraInfo``'s ``k``, ``width`` and ``height``.

        Raises:
            ValueError: ``k`` does not have 9 entries or its focal lengths are not positive.
        """
        values = [float(v) for v in k]
        if len(values) != 9:
            msg = f"CameraInfo.k has {len(values)} entries: it must be the 9 entries of a 3x3 matrix"
            raise ValueError(msg)
        return cls(
            width=int(width), height=int(height), fx=values[0], fy=values[4], cx=values[2], cy=values[5]
        )

    def pixel_rays(self) -> FloatArray:
        """(height, width, 3) ray directions in the camera frame, scaled so that ``z == 1``."""
        cx, cy = self.principal_point
        v, u = np.mgrid[0 : self.height, 0 : self.width].astype(np.float64)
        return np.stack([(u - cx) / self.fx, (v - cy) / self.fy, np.ones_like(u)], axis=-1)

    def deproject(self, *, pixels: FloatArray, depths: FloatArray) -> FloatArray:
        """(N, 3) camera-frame points at z-depth ``depths`` (N,) behind pixel coordinates (N, 2)."""
        cx, cy = self.principal_point
        x = (pixels[:, 0] - cx) / self.fx * depths
        y = (pixels[:, 1] - cy) / self.fy * depths
        return np.stack([x, y, depths], axis=-1)

    def project(self, points: FloatArray) -> FloatArray:
        """(N, 2) pixel coordinates of camera-frame points (N, 3) (z must be > 0)."""
        cx, cy = self.principal_point
        z = points[:, 2]
        return np.stack([points[:, 0] / z * self.fx + cx, points[:, 1] / z * self.fy + cy], axis=-1)


@dataclass(frozen=True, kw_only=True, eq=False)
class SceneObject:
    """One rigid object resting on the table.

    Attributes:
        kind: ``box`` (``size`` = half extents), ``cylinder`` (``size`` = radius, radius,
            half length along its local z axis) or ``ellipsoid`` (``size`` = semi-axes).
        size: three lengths in meters, in the object's own frame.
        rotation: (3, 3) world-from-object rotation.
        center: (3,) object center in the world frame (meters).
    """

    kind: ShapeKind
    size: tuple[float, float, float]
    rotation: FloatArray
    center: FloatArray

    def intersect(self, origins: FloatArray, dirs: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Intersect world-frame rays with this solid.

        Args:
            origins, dirs: (N, 3) ray origins and directions (any length; ``t`` is in units of
                the direction's length).

        Returns:
            ``(t_in, t_out, normals)``: where each ray enters and leaves the solid (``inf`` for a
            miss; ``t_in < 0 < t_out`` when the origin is inside) and the outward world-frame
            surface normal at the entry point.
        """
        local_o = (origins - self.center) @ self.rotation
        local_d = dirs @ self.rotation
        if self.kind == "box":
            t_in, t_out, n_local = _box(local_o, local_d, np.asarray(self.size))
        elif self.kind == "cylinder":
            t_in, t_out, n_local = _cylinder(local_o, local_d, self.size[0], self.size[2])
        else:
            t_in, t_out, n_local = _ellipsoid(local_o, local_d, np.asarray(self.size))
        normals = n_local @ self.rotation.T
        return t_in, t_out, normals

    def footprint_radius(self) -> float:
        """Radius of a vertical cylinder around the center that holds the object (for placing)."""
        a, b, c = self.size
        if self.kind == "cylinder":
            horizontal_axis = abs(float(self.rotation[2, 2])) < 0.5
            return math.hypot(a, c) if horizontal_axis else a
        return math.hypot(a, b) if self.kind == "box" else max(a, b)


@dataclass(frozen=True, kw_only=True, eq=False)
class Scene:
    """A table, the objects on it and the camera looking at them.

    Attributes:
        camera: intrinsics.
        camera_rotation: (3, 3) world-from-camera rotation.
        camera_position: (3,) camera center in the world frame.
        objects: the objects; object ``i`` has id ``i + 1`` in hit and segmentation images
            (``0`` is the table).
        seed: the seed the scene was generated from (``-1`` if built by hand).
    """

    camera: Camera
    camera_rotation: FloatArray
    camera_position: FloatArray
    objects: tuple[SceneObject, ...]
    seed: int = -1

    def to_world(self, points: FloatArray) -> FloatArray:
        """Camera-frame points (N, 3) in the world frame."""
        out: FloatArray = points @ self.camera_rotation.T + self.camera_position
        return out

    def dirs_to_world(self, dirs: FloatArray) -> FloatArray:
        """Camera-frame directions (N, 3) in the world frame."""
        out: FloatArray = dirs @ self.camera_rotation.T
        return out


@dataclass(frozen=True, kw_only=True)
class SceneConfig:
    """How random scenes are drawn (lengths in meters, angles in degrees)."""

    min_objects: int = 2
    max_objects: int = 5
    table_half_extent: float = 0.13
    camera_height: tuple[float, float] = (0.55, 0.70)
    max_camera_tilt_deg: float = 8.0
    kinds: tuple[ShapeKind, ...] = ("box", "cylinder", "ellipsoid")
    box_half_width: tuple[float, float] = (0.012, 0.05)
    box_half_height: tuple[float, float] = (0.01, 0.045)
    cylinder_radius: tuple[float, float] = (0.012, 0.04)
    cylinder_half_length: tuple[float, float] = (0.02, 0.06)
    ellipsoid_semi_axis: tuple[float, float] = (0.015, 0.045)
    min_gap: float = 0.01


@dataclass(frozen=True, kw_only=True)
class NoiseModel:
    """Sensor imperfections applied to a rendered depth image (all in meters unless noted).

    Attributes:
        scale_std: std of one multiplicative scale error per image (calibration drift).
        smooth_std: std of a smooth, low-frequency additive error field.
        pixel_std: std of independent per-pixel noise.
        dropout: probability that any pixel reads 0 (no return).
        edge_dropout: probability that a pixel at a depth discontinuity reads 0.
        quantize_mm: round depths to this many millimeters (0: no rounding).
    """

    scale_std: float = 0.002
    smooth_std: float = 0.001
    pixel_std: float = 0.0008
    dropout: float = 0.005
    edge_dropout: float = 0.3
    quantize_mm: float = 0.0


@dataclass(frozen=True, kw_only=True, eq=False)
class DepthImage:
    """A rendered depth image and its ground truth.

    Attributes:
        depth: (H, W) float32 measured z-depth in meters; 0 where the sensor had no return.
        clean: (H, W) float32 exact z-depth.
        segmentation: (H, W) int32 id of the surface seen at each pixel (0 table, i+1 object i,
            -1 nothing).
    """

    depth: npt.NDArray[np.float32]
    clean: npt.NDArray[np.float32]
    segmentation: npt.NDArray[np.int32]


@dataclass(frozen=True, kw_only=True, eq=False)
class RayHits:
    """The first surface each ray meets (see :func:`cast_rays`).

    Attributes:
        t: (N,) ray parameter of the hit (``inf`` for none; 0 when the origin is inside a solid).
        ids: (N,) id of the surface hit (0 table, i+1 object i, -1 nothing).
        inside: (N,) the origin is inside a solid (the table counts as the half-space below it).
        normals: (N, 3) outward world-frame normal at the hit.
    """

    t: FloatArray
    ids: npt.NDArray[np.int64]
    inside: npt.NDArray[np.bool_]
    normals: FloatArray


def cast_rays(scene: Scene, origins: FloatArray, dirs: FloatArray) -> RayHits:
    """Find the first surface (table or object) each world-frame ray meets.

    Args:
        scene: the scene.
        origins, dirs: (N, 3) world-frame ray origins and directions.

    Returns:
        The hits; a ray whose origin is inside a solid reports that solid with ``t == 0``.
    """
    n = origins.shape[0]
    # The table is the solid half-space z <= 0.
    dz = dirs[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        table_t = np.where(
            (dz < 0) & (origins[:, 2] > 0), -origins[:, 2] / np.where(dz == 0, -_TINY, dz), np.inf
        )
    table_inside = origins[:, 2] <= 0
    best_t = np.where(table_inside, 0.0, table_t)
    best_id = np.where(np.isfinite(best_t), TABLE_ID, -1).astype(np.int64)
    inside = table_inside.copy()
    normals = np.zeros((n, 3))
    normals[:, 2] = 1.0
    for index, obj in enumerate(scene.objects, start=1):
        t_in, t_out, obj_normals = obj.intersect(origins, dirs)
        obj_inside = (t_in <= 0) & (t_out > 0)
        t_hit = np.where(obj_inside, 0.0, np.where(t_in > 0, t_in, np.inf))
        closer = t_hit < best_t
        best_t = np.where(closer, t_hit, best_t)
        best_id = np.where(closer, index, best_id)
        inside = np.where(closer, obj_inside, inside)
        normals = np.where(closer[:, None], obj_normals, normals)
    return RayHits(t=best_t, ids=best_id, inside=inside, normals=normals)


def render_depth(scene: Scene, *, noise: NoiseModel | None = None, seed: int = 0) -> DepthImage:
    """Ray-cast the scene's depth image and apply sensor noise.

    Args:
        scene: what to render.
        noise: sensor model (``None``: the exact depth, no dropouts).
        seed: seeds the noise; the same scene, noise and seed give the same image.

    Returns:
        The measured depth, the exact depth and the segmentation.
    """
    camera = scene.camera
    rays_cam = camera.pixel_rays().reshape(-1, 3)
    origins = np.broadcast_to(scene.camera_position, rays_cam.shape)
    hits = cast_rays(scene, np.ascontiguousarray(origins), scene.dirs_to_world(rays_cam))
    # Rays have z == 1 in the camera frame, so the ray parameter is the z-depth.
    clean = np.where(np.isfinite(hits.t), hits.t, 0.0).reshape(camera.height, camera.width)
    segmentation = hits.ids.reshape(camera.height, camera.width).astype(np.int32)
    depth = clean.copy()
    if noise is not None:
        depth = _apply_noise(depth, noise, np.random.default_rng(np.random.SeedSequence([seed, 7])))
    return DepthImage(
        depth=depth.astype(np.float32), clean=clean.astype(np.float32), segmentation=segmentation
    )


def generate_scene(*, seed: int, camera: Camera | None = None, config: SceneConfig | None = None) -> Scene:
    """A random table-top scene; the same seed and settings always give the same scene.

    Args:
        seed: any integer.
        camera: intrinsics (default :class:`Camera`).
        config: what to draw (default :class:`SceneConfig`).

    Returns:
        The scene, with the camera above the table looking down (slightly tilted).
    """
    camera = camera or Camera()
    config = config or SceneConfig()
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    objects: list[SceneObject] = []
    count = int(rng.integers(config.min_objects, config.max_objects + 1))
    for _ in range(count * 20):  # rejection sampling: give up on crowded tables rather than loop
        if len(objects) == count:
            break
        candidate = _random_object(rng, config)
        radius = candidate.footprint_radius()
        if any(
            float(np.linalg.norm(candidate.center[:2] - other.center[:2]))
            < radius + other.footprint_radius() + config.min_gap
            for other in objects
        ):
            continue
        objects.append(candidate)
    rotation, position = _random_camera_pose(rng, config)
    return Scene(
        camera=camera, camera_rotation=rotation, camera_position=position, objects=tuple(objects), seed=seed
    )


def _random_object(rng: np.random.Generator, config: SceneConfig) -> SceneObject:
    kind: ShapeKind = config.kinds[int(rng.integers(len(config.kinds)))]
    yaw = float(rng.uniform(0, math.pi))
    rotation = _rot_z(yaw)
    if kind == "box":
        a, b = (float(v) for v in rng.uniform(*config.box_half_width, size=2))
        c = float(rng.uniform(*config.box_half_height))
        size = (a, b, c)
        height = c
    elif kind == "cylinder":
        r = float(rng.uniform(*config.cylinder_radius))
        h = float(rng.uniform(*config.cylinder_half_length))
        size = (r, r, h)
        if rng.random() < 0.5:  # lying on its side: local z axis horizontal
            rotation = rotation @ _rot_x(math.pi / 2)
            height = r
        else:
            height = h
    else:
        a, b, c = (float(v) for v in rng.uniform(*config.ellipsoid_semi_axis, size=3))
        size = (a, b, c)
        height = c
    reach = config.table_half_extent
    xy = rng.uniform(-reach, reach, size=2)
    center = np.array([xy[0], xy[1], height])
    return SceneObject(kind=kind, size=size, rotation=rotation, center=center)


def _random_camera_pose(rng: np.random.Generator, config: SceneConfig) -> tuple[FloatArray, FloatArray]:
    # Looking straight down: camera x = world x, camera y = -world y, camera z (optical) = -world z.
    down = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
    tilt = math.radians(float(rng.uniform(0, config.max_camera_tilt_deg)))
    tilt_dir = float(rng.uniform(0, 2 * math.pi))
    yaw = float(rng.uniform(0, 2 * math.pi))
    axis = np.array([math.cos(tilt_dir), math.sin(tilt_dir), 0.0])
    rotation = _rot_z(yaw) @ _axis_angle(axis, tilt) @ down
    height = float(rng.uniform(*config.camera_height))
    # The optical axis passes through the table origin, at distance `height` from it.
    position = -rotation[:, 2] * height
    return rotation, position


def _apply_noise(depth: FloatArray, noise: NoiseModel, rng: np.random.Generator) -> FloatArray:
    h, w = depth.shape
    valid = depth > 0
    out = depth * (1.0 + rng.normal(0.0, noise.scale_std))
    if noise.smooth_std > 0:
        coarse = rng.normal(0.0, noise.smooth_std, size=(4, 5))
        out = out + _upsample_bilinear(coarse, h, w)
    out = out + rng.normal(0.0, noise.pixel_std, size=depth.shape)
    if noise.quantize_mm > 0:
        step = noise.quantize_mm / 1000.0
        out = np.round(out / step) * step
    # Structured-light sensors lose returns at depth jumps (occluded projector or camera).
    jump = np.zeros_like(valid)
    dy = np.abs(np.diff(depth, axis=0)) > 0.01
    dx = np.abs(np.diff(depth, axis=1)) > 0.01
    jump[1:, :] |= dy
    jump[:-1, :] |= dy
    jump[:, 1:] |= dx
    jump[:, :-1] |= dx
    drop = rng.random(depth.shape) < noise.dropout
    drop |= jump & (rng.random(depth.shape) < noise.edge_dropout)
    out = np.where(drop | ~valid, 0.0, out)
    result: FloatArray = np.maximum(out, 0.0)
    return result


def _upsample_bilinear(coarse: FloatArray, h: int, w: int) -> FloatArray:
    ys = np.linspace(0, coarse.shape[0] - 1, h)
    xs = np.linspace(0, coarse.shape[1] - 1, w)
    y0 = np.clip(np.floor(ys).astype(int), 0, coarse.shape[0] - 2)
    x0 = np.clip(np.floor(xs).astype(int), 0, coarse.shape[1] - 2)
    fy = (ys - y0)[:, None]
    fx = (xs - x0)[None, :]
    c00 = coarse[y0][:, x0]
    c01 = coarse[y0][:, x0 + 1]
    c10 = coarse[y0 + 1][:, x0]
    c11 = coarse[y0 + 1][:, x0 + 1]
    out: FloatArray = (c00 * (1 - fx) + c01 * fx) * (1 - fy) + (c10 * (1 - fx) + c11 * fx) * fy
    return out


def _rot_z(angle: float) -> FloatArray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rot_x(angle: float) -> FloatArray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _axis_angle(axis: FloatArray, angle: float) -> FloatArray:
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    out: FloatArray = np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)
    return out


def _safe(d: FloatArray) -> FloatArray:
    out: FloatArray = np.where(np.abs(d) < _TINY, _TINY, d)
    return out


def _box(o: FloatArray, d: FloatArray, half: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    inv = 1.0 / _safe(d)
    t1 = (-half - o) * inv
    t2 = (half - o) * inv
    near = np.minimum(t1, t2)
    far = np.maximum(t1, t2)
    t_in = near.max(axis=1)
    t_out = far.min(axis=1)
    hit = t_out >= np.maximum(t_in, 0.0)
    axis = near.argmax(axis=1)
    normals = np.zeros_like(o)
    rows = np.arange(o.shape[0])
    normals[rows, axis] = -np.sign(_safe(d)[rows, axis])
    return np.where(hit, t_in, np.inf), np.where(hit, t_out, np.inf), normals


def _cylinder(
    o: FloatArray, d: FloatArray, radius: float, half: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    # Side: (ox + t dx)^2 + (oy + t dy)^2 = r^2; caps: the slab |z| <= half.
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    b = 2 * (o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1])
    c = o[:, 0] ** 2 + o[:, 1] ** 2 - radius**2
    parallel = a < _TINY
    disc = b * b - 4 * a * c
    root = np.sqrt(np.maximum(disc, 0.0))
    a_safe = np.where(parallel, 1.0, a)
    s_in = np.where(parallel, np.where(c <= 0, -np.inf, np.inf), (-b - root) / (2 * a_safe))
    s_out = np.where(parallel, np.where(c <= 0, np.inf, -np.inf), (-b + root) / (2 * a_safe))
    side_miss = ~parallel & (disc < 0)
    inv_z = 1.0 / _safe(d[:, 2])
    z1 = (-half - o[:, 2]) * inv_z
    z2 = (half - o[:, 2]) * inv_z
    c_in = np.minimum(z1, z2)
    c_out = np.maximum(z1, z2)
    t_in = np.maximum(s_in, c_in)
    t_out = np.minimum(s_out, c_out)
    hit = ~side_miss & (t_out >= np.maximum(t_in, 0.0))
    # A ray along the axis from inside has t_in = -inf; its normal is never used.
    point = o + np.where(np.isfinite(t_in), t_in, 0.0)[:, None] * d
    from_side = s_in >= c_in
    normals = np.zeros_like(o)
    normals[:, 0] = np.where(from_side, point[:, 0] / radius, 0.0)
    normals[:, 1] = np.where(from_side, point[:, 1] / radius, 0.0)
    normals[:, 2] = np.where(from_side, 0.0, -np.sign(_safe(d[:, 2])))
    return np.where(hit, t_in, np.inf), np.where(hit, t_out, np.inf), normals


def _ellipsoid(o: FloatArray, d: FloatArray, axes: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    # Scale space so the ellipsoid is the unit sphere; t is unchanged by the scaling.
    os_ = o / axes
    ds = d / axes
    a = (ds * ds).sum(axis=1)
    b = 2 * (os_ * ds).sum(axis=1)
    c = (os_ * os_).sum(axis=1) - 1.0
    disc = b * b - 4 * a * c
    root = np.sqrt(np.maximum(disc, 0.0))
    t_in = (-b - root) / (2 * a)
    t_out = (-b + root) / (2 * a)
    hit = (disc >= 0) & (t_out >= 0)
    point = o + t_in[:, None] * d
    grad = point / (axes * axes)
    normals = grad / np.maximum(np.linalg.norm(grad, axis=1, keepdims=True), _TINY)
    return np.where(hit, t_in, np.inf), np.where(hit, t_out, np.inf), normals
