"""Antipodal grasp sampling on a depth image, and the rotated depth patches a GQ-CNN scores.

As in Dex-Net 2.0: find depth edges (the near side of depth discontinuities, where objects meet
what lies behind them), estimate the outward surface normal in the image from the depth gradient,
pair edge pixels whose connecting line lies inside both friction cones and whose distance fits
the gripper, and sample grasp depths below the contacts. Patches are cut around each grasp center,
turned so the jaw axis is horizontal, and scaled so a patch always spans the same metric extent
at the grasp depth (so the network sees the same thing at any camera distance or resolution).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fogros_dist.workloads.grasp.geometry import Grasps, Gripper
from fogros_dist.workloads.grasp.scene import Camera

__all__ = [
    "DepthArray",
    "PatchSpec",
    "SamplerConfig",
    "edge_pixels",
    "extract_patches",
    "inpaint",
    "measure_widths",
    "sample_antipodal",
    "with_widths",
]

FloatArray = npt.NDArray[np.float64]
# Depth images arrive as float32 (from ROS) or float64 (computed here).
DepthArray = npt.NDArray[np.floating[Any]]


@dataclass(frozen=True, kw_only=True)
class SamplerConfig:
    """How antipodal grasps are drawn from a depth image.

    Attributes:
        friction: friction coefficient for the image-space antipodal test.
        edge_jump: a pixel is an edge when a 4-neighbor is this much farther (meters).
        depth_offsets: grasp depths are drawn uniformly this far below the nearer contact (m).
        candidate_pairs: random edge-pixel pairs tried per image.
    """

    friction: float = 0.5
    edge_jump: float = 0.006
    depth_offsets: tuple[float, float] = (0.0, 0.03)
    candidate_pairs: int = 6000


@dataclass(frozen=True, kw_only=True)
class PatchSpec:
    """The network's view of a grasp.

    Attributes:
        size: patch side in pixels.
        extent: the patch side in meters at the grasp depth.
        clip: depths relative to the grasp depth are clipped to ``[-clip, clip]`` meters.
    """

    size: int = 32
    extent: float = 0.11
    clip: float = 0.06


def inpaint(depth: DepthArray) -> FloatArray:
    """Fill missing pixels (0, negative or non-finite) from their neighbors.

    Each pass gives a missing pixel the farthest of its valid 4-neighbors: dropouts cluster at
    depth jumps, and taking the far side keeps edges sharp instead of inventing mid-air depths.

    Raises:
        ValueError: no pixel of the image is valid.
    """
    out = np.asarray(depth, dtype=np.float64).copy()
    valid = np.isfinite(out) & (out > 0)
    if not valid.any():
        msg = f"depth image {out.shape[1]}x{out.shape[0]} has no valid pixel (all zero, negative or NaN)"
        raise ValueError(msg)
    out[~valid] = 0.0
    missing = ~valid
    for _ in range(max(out.shape)):
        if not missing.any():
            break
        padded = np.pad(np.where(missing, -np.inf, out), 1, constant_values=-np.inf)
        best = np.maximum.reduce([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
        fill = missing & np.isfinite(best)
        out[fill] = best[fill]
        missing &= ~fill
    return out


def edge_pixels(depth: FloatArray, *, jump: float) -> tuple[FloatArray, FloatArray]:
    """Near-side depth-edge pixels and their outward image-plane normals.

    Args:
        depth: (H, W) inpainted depth (meters).
        jump: minimum depth step to a 4-neighbor (meters).

    Returns:
        ``(pixels, normals)``: (E, 2) ``(u, v)`` coordinates and (E, 2) unit normals pointing
        away from the object (towards increasing depth).
    """
    padded = np.pad(depth, 1, mode="edge")
    center = padded[1:-1, 1:-1]
    step = (
        np.maximum.reduce([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]]) - center
    )
    edges = step > jump
    # Sobel gradient: d(depth)/du and d(depth)/dv point from the object towards what is behind it.
    p = padded
    gu = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gv = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    rows, cols = np.nonzero(edges)
    grads = np.stack([gu[rows, cols], gv[rows, cols]], axis=-1)
    norms = np.linalg.norm(grads, axis=1)
    keep = norms > 1e-9
    pixels = np.stack([cols, rows], axis=-1).astype(np.float64)[keep]
    normals = grads[keep] / norms[keep, None]
    return pixels, normals


def sample_antipodal(
    depth: FloatArray,
    *,
    camera: Camera,
    gripper: Gripper,
    config: SamplerConfig,
    count: int,
    rng: np.random.Generator,
) -> Grasps:
    """Up to ``count`` antipodal grasps on an inpainted depth image.

    Args:
        depth: (H, W) inpainted depth in meters (see :func:`inpaint`).
        camera: the intrinsics of the image.
        gripper: limits the distance between contacts.
        config: sampling settings.
        count: the most grasps to return.
        rng: the random source (seed it for repeatable samples).

    Returns:
        The grasps (possibly fewer than ``count``, or none on an image without edges).
    """
    pixels, normals = edge_pixels(depth, jump=config.edge_jump)
    if pixels.shape[0] < 2 or count <= 0:
        return Grasps.empty()
    pairs = rng.integers(pixels.shape[0], size=(2, config.candidate_pairs))
    i, j = pairs[0], pairs[1]
    delta = pixels[j] - pixels[i]
    dist = np.linalg.norm(delta, axis=1)
    ok = dist > 0.5
    direction = delta / np.maximum(dist, 1e-9)[:, None]
    cone_cos = 1.0 / math.sqrt(1.0 + config.friction**2)
    # The line from contact i to contact j must point into the object at i and out of it at j.
    ok &= (-(normals[i] * direction).sum(axis=1) >= cone_cos) & (
        (normals[j] * direction).sum(axis=1) >= cone_cos
    )
    rows_i, cols_i = pixels[i, 1].astype(int), pixels[i, 0].astype(int)
    rows_j, cols_j = pixels[j, 1].astype(int), pixels[j, 0].astype(int)
    d_i, d_j = depth[rows_i, cols_i], depth[rows_j, cols_j]
    # Pixel distance to meters at the contacts' depth (fx ~ fy for the cameras we accept).
    focal = 0.5 * (camera.fx + camera.fy)
    width = dist * np.maximum(d_i, d_j) / focal
    ok &= (width >= gripper.min_width) & (width <= gripper.max_width - gripper.finger_width)
    chosen = np.nonzero(ok)[0]
    if chosen.size == 0:
        return Grasps.empty()
    chosen = chosen[:count]
    centers = 0.5 * (pixels[i[chosen]] + pixels[j[chosen]])
    angles = np.mod(np.arctan2(delta[chosen, 1], delta[chosen, 0]), math.pi)
    low, high = config.depth_offsets
    depths = np.minimum(d_i[chosen], d_j[chosen]) + rng.uniform(low, high, size=chosen.size)
    grasps = Grasps(centers=centers, angles=angles, depths=depths, widths=np.zeros(chosen.size))
    return with_widths(depth, camera=camera, gripper=gripper, grasps=grasps)


def with_widths(depth: FloatArray, *, camera: Camera, gripper: Gripper, grasps: Grasps) -> Grasps:
    """``grasps`` with their widths measured by :func:`measure_widths`."""
    return Grasps(
        centers=grasps.centers,
        angles=grasps.angles,
        depths=grasps.depths,
        widths=measure_widths(depth, camera=camera, gripper=gripper, grasps=grasps),
    )


def measure_widths(depth: FloatArray, *, camera: Camera, gripper: Gripper, grasps: Grasps) -> FloatArray:
    """The width of what rises above each grasp's depth between its jaws, in meters.

    Walks the image from the grasp center outwards along the jaw axis, both ways, until the surface
    drops below the grasp depth (or the jaws' full opening is reached).

    Returns:
        (N,) widths; 0 where the surface at the center is already below the grasp depth.
    """
    n = len(grasps)
    if n == 0:
        return np.zeros(0)
    h, w = depth.shape
    focal = 0.5 * (camera.fx + camera.fy)
    steps = max(2, math.ceil(gripper.max_width / 2.0 * focal / float(grasps.depths.min())) + 1)
    s = np.arange(steps, dtype=np.float64)  # pixels from the center
    reach_px = gripper.max_width / 2.0 * focal / grasps.depths  # (N,)
    axis = np.stack([np.cos(grasps.angles), np.sin(grasps.angles)], axis=-1)
    sides = []
    for sign in (1.0, -1.0):
        pts = grasps.centers[:, None, :] + sign * s[None, :, None] * axis[:, None, :]
        cols = np.clip(np.rint(pts[..., 0]).astype(int), 0, w - 1)
        rows = np.clip(np.rint(pts[..., 1]).astype(int), 0, h - 1)
        above = depth[rows, cols] < grasps.depths[:, None]
        above &= s[None, :] <= reach_px[:, None]
        # Index of the first pixel not above the grasp plane (steps if all are).
        first_free = np.where(above.all(axis=1), steps, np.argmin(above, axis=1))
        sides.append(first_free.astype(np.float64))
    width_px = np.where(sides[0] > 0, sides[0] + sides[1] - 1.0, 0.0)
    widths: FloatArray = np.clip(width_px * grasps.depths / focal, 0.0, gripper.max_width)
    return widths


def extract_patches(
    depth: FloatArray, *, camera: Camera, grasps: Grasps, spec: PatchSpec
) -> npt.NDArray[np.float32]:
    """Depth patches around each grasp, jaw axis horizontal, relative to the grasp depth.

    Args:
        depth: (H, W) inpainted depth in meters.
        camera: its intrinsics.
        grasps: N grasps.
        spec: patch size, metric extent and clipping.

    Returns:
        (N, size, size) float32: ``depth - grasp depth`` in meters (positive: below the grasp
        point), clipped to ``[-clip, clip]``; row index grows across the jaw axis, column index
        along it.
    """
    n = len(grasps)
    size = spec.size
    if n == 0:
        return np.zeros((0, size, size), dtype=np.float32)
    h, w = depth.shape
    offsets = (np.arange(size, dtype=np.float64) - (size - 1) / 2.0) * (spec.extent / size)  # meters
    along, across = np.meshgrid(offsets, offsets)  # (size, size): columns along the axis
    cos_a = np.cos(grasps.angles)[:, None, None]
    sin_a = np.sin(grasps.angles)[:, None, None]
    scale = 1.0 / grasps.depths[:, None, None]
    u = grasps.centers[:, 0, None, None] + (along * cos_a - across * sin_a) * camera.fx * scale
    v = grasps.centers[:, 1, None, None] + (along * sin_a + across * cos_a) * camera.fy * scale
    u = np.clip(u, 0.0, w - 1.0)
    v = np.clip(v, 0.0, h - 1.0)
    # Cameras are at least 8x8 pixels, so the right and bottom neighbors always exist.
    u0 = np.minimum(np.floor(u).astype(np.intp), w - 2)
    v0 = np.minimum(np.floor(v).astype(np.intp), h - 2)
    fu = u - u0
    fv = v - v0
    top = depth[v0, u0] * (1 - fu) + depth[v0, u0 + 1] * fu
    bottom = depth[v0 + 1, u0] * (1 - fu) + depth[v0 + 1, u0 + 1] * fu
    patch = top * (1 - fv) + bottom * fv
    relative: npt.NDArray[np.float32] = np.clip(
        patch - grasps.depths[:, None, None], -spec.clip, spec.clip
    ).astype(np.float32)
    return relative
