"""Trajectory metrics as SLAM benchmarks compute them, and a top-view plot.

ATE: the estimate is rigidly aligned to the ground truth (Umeyama's closed form, SE(3) by default,
Sim(3) on request), then the RMSE of the position differences is reported. RPE: for every pose i
and the first pose j at least ``delta`` metres further along the ground truth path (or ``delta``
frames later), the error of the estimated relative motion against the true one; no alignment is
needed. Both follow the TUM RGB-D / KITTI conventions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from fogros_dist.workloads.slam.odometry import rotation_angle

__all__ = [
    "Alignment",
    "AteResult",
    "RpeResult",
    "absolute_trajectory_error",
    "plot_trajectory",
    "relative_pose_error",
    "umeyama",
]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, kw_only=True, eq=False)
class Alignment:
    """``target ~= scale * rotation @ source + translation``."""

    rotation: FloatArray
    translation: FloatArray
    scale: float

    def apply(self, points: FloatArray) -> FloatArray:
        """Map (N, 3) points from the source frame into the target frame."""
        mapped: FloatArray = self.scale * points @ self.rotation.T + self.translation
        return mapped


@dataclass(frozen=True, kw_only=True, eq=False)
class AteResult:
    """Absolute trajectory error after alignment.

    Attributes:
        rmse_m, mean_m, median_m, max_m: statistics of the per-pose position errors.
        errors_m: (K,) per-pose position errors.
        alignment: what maps the estimate onto the ground truth.
        aligned: (K, 3) estimated positions after alignment.
    """

    rmse_m: float
    mean_m: float
    median_m: float
    max_m: float
    errors_m: FloatArray
    alignment: Alignment
    aligned: FloatArray


@dataclass(frozen=True, kw_only=True, eq=False)
class RpeResult:
    """Relative pose error over pose pairs ``delta`` apart.

    Attributes:
        delta: the pair spacing, in ``unit``.
        unit: ``"m"`` (distance along the ground truth) or ``"frames"``.
        pairs: how many pairs were compared.
        trans_rmse_m, trans_mean_m: translational error statistics.
        rot_rmse_deg, rot_mean_deg: rotational error statistics.
        drift_percent: mean translational error over mean true distance between pairs, in percent.
    """

    delta: float
    unit: Literal["m", "frames"]
    pairs: int
    trans_rmse_m: float
    trans_mean_m: float
    rot_rmse_deg: float
    rot_mean_deg: float
    drift_percent: float


def _positions(poses: FloatArray, what: str) -> FloatArray:
    array = np.asarray(poses, dtype=np.float64)
    if array.ndim == 3 and array.shape[1:] == (4, 4):
        return array[:, :3, 3]
    if array.ndim == 2 and array.shape[1] == 3:
        return array
    msg = f"{what} has shape {array.shape}: pass (K, 4, 4) poses or (K, 3) positions"
    raise ValueError(msg)


def umeyama(source: FloatArray, target: FloatArray, *, with_scale: bool = False) -> Alignment:
    """The least-squares similarity (or rigid, without scale) transform from ``source`` to ``target``.

    Args:
        source: (N, 3) points.
        target: (N, 3) corresponding points.
        with_scale: also estimate a scale (Sim(3)); otherwise the scale is 1 (SE(3)).

    Raises:
        ValueError: shapes differ or fewer than 3 points are given.
    """
    src = np.asarray(source, dtype=np.float64)
    dst = np.asarray(target, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or src.shape[0] < 3:
        msg = f"umeyama needs two (N >= 3, 3) arrays of equal shape, got {src.shape} and {dst.shape}"
        raise ValueError(msg)
    mu_src, mu_dst = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - mu_src, dst - mu_dst
    covariance = dst_c.T @ src_c / src.shape[0]
    u, sigma, vt = np.linalg.svd(covariance)
    # Flip the weakest axis if needed so the result is a rotation, not a reflection.
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1.0
    rotation = u @ sign @ vt
    scale = 1.0
    if with_scale:
        variance = float((src_c**2).sum() / src.shape[0])
        scale = float(np.trace(np.diag(sigma) @ sign) / variance) if variance > 0 else 1.0
    translation = mu_dst - scale * rotation @ mu_src
    return Alignment(rotation=rotation, translation=translation, scale=scale)


def absolute_trajectory_error(
    *, estimate: FloatArray, ground_truth: FloatArray, with_scale: bool = False
) -> AteResult:
    """ATE of ``estimate`` against ``ground_truth`` (corresponding poses, same order).

    Args:
        estimate: (K, 4, 4) poses or (K, 3) positions.
        ground_truth: the same shape.
        with_scale: align with Sim(3) (monocular methods) instead of SE(3).

    Raises:
        ValueError: the shapes differ or fewer than 3 poses are given.
    """
    est = _positions(estimate, "estimate")
    gt = _positions(ground_truth, "ground_truth")
    if est.shape != gt.shape:
        msg = f"estimate has {est.shape[0]} poses, ground_truth {gt.shape[0]}: pass corresponding poses"
        raise ValueError(msg)
    alignment = umeyama(est, gt, with_scale=with_scale)
    aligned = alignment.apply(est)
    errors = np.linalg.norm(aligned - gt, axis=1)
    return AteResult(
        rmse_m=float(np.sqrt(np.mean(errors**2))),
        mean_m=float(errors.mean()),
        median_m=float(np.median(errors)),
        max_m=float(errors.max()),
        errors_m=errors,
        alignment=alignment,
        aligned=aligned,
    )


def relative_pose_error(
    *,
    estimate: FloatArray,
    ground_truth: FloatArray,
    delta: float = 1.0,
    unit: Literal["m", "frames"] = "m",
) -> RpeResult:
    """RPE over pairs ``delta`` metres (along the ground truth path) or frames apart.

    Args:
        estimate: (K, 4, 4) poses.
        ground_truth: (K, 4, 4) corresponding poses.
        delta: pair spacing (> 0; a whole number of frames for ``unit="frames"``).
        unit: ``"m"`` or ``"frames"``.

    Raises:
        ValueError: bad shapes, a bad ``delta`` or ``unit``, or no pair fits in the trajectory.
    """
    est = np.asarray(estimate, dtype=np.float64)
    gt = np.asarray(ground_truth, dtype=np.float64)
    if est.ndim != 3 or est.shape[1:] != (4, 4) or est.shape != gt.shape:
        msg = f"RPE needs two (K, 4, 4) pose arrays of equal shape, got {est.shape} and {gt.shape}"
        raise ValueError(msg)
    if unit not in ("m", "frames"):
        msg = f"RPE unit {unit!r} is invalid: use 'm' or 'frames'"
        raise ValueError(msg)
    if not delta > 0 or (unit == "frames" and delta != int(delta)):
        msg = f"RPE delta {delta} is invalid: use a positive distance, or a whole number of frames"
        raise ValueError(msg)
    count = gt.shape[0]
    if unit == "frames":
        starts = np.arange(max(0, count - int(delta)))
        ends = starts + int(delta)
    else:
        travelled = np.concatenate(([0.0], np.cumsum(np.linalg.norm(np.diff(gt[:, :3, 3], axis=0), axis=1))))
        ends = np.searchsorted(travelled, travelled + delta - 1e-9)
        starts = np.arange(count)[ends < count]
        ends = ends[ends < count]
    if starts.size == 0:
        msg = (
            f"no pose pair is {delta:g} {unit} apart in a trajectory of {count} poses: "
            "use a smaller delta or a longer sequence"
        )
        raise ValueError(msg)
    trans, rot, true_dist = [], [], []
    for i, j in zip(starts, ends, strict=True):
        true_rel = np.linalg.inv(gt[i]) @ gt[j]
        est_rel = np.linalg.inv(est[i]) @ est[j]
        error = np.linalg.inv(true_rel) @ est_rel
        trans.append(float(np.linalg.norm(error[:3, 3])))
        rot.append(math.degrees(rotation_angle(error[:3, :3])))
        true_dist.append(float(np.linalg.norm(true_rel[:3, 3])))
    t, r = np.asarray(trans), np.asarray(rot)
    mean_dist = float(np.mean(true_dist))
    return RpeResult(
        delta=float(delta),
        unit=unit,
        pairs=int(starts.size),
        trans_rmse_m=float(np.sqrt(np.mean(t**2))),
        trans_mean_m=float(t.mean()),
        rot_rmse_deg=float(np.sqrt(np.mean(r**2))),
        rot_mean_deg=float(r.mean()),
        drift_percent=float(100.0 * t.mean() / mean_dist) if mean_dist > 0 else math.nan,
    )


def plot_trajectory(
    *,
    estimate: FloatArray,
    ground_truth: FloatArray,
    path: Path,
    map_points: npt.NDArray[np.floating] | None = None,
    title: str = "",
) -> Path:
    """Write a top view (x-y) PNG of the aligned estimate over the ground truth; return ``path``.

    Args:
        estimate: (K, 4, 4) poses or (K, 3) positions; aligned to ``ground_truth`` (SE(3)) first.
        ground_truth: the same shape.
        path: the PNG to write (parent folders are created).
        map_points: optional (M, 3) map in the estimate's frame, drawn faintly underneath.
        title: the figure's title.

    Raises:
        ValueError: as :func:`absolute_trajectory_error`.
        OSError: the file cannot be written.
    """
    # Figure + the Agg canvas directly: no pyplot global state, no GUI backend, thread-safe.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ate = absolute_trajectory_error(estimate=estimate, ground_truth=ground_truth)
    gt = _positions(ground_truth, "ground_truth")
    figure = Figure(figsize=(6.4, 6.4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if map_points is not None and len(map_points):
        world = ate.alignment.apply(np.asarray(map_points, dtype=np.float64))
        axes.scatter(world[:, 0], world[:, 1], s=0.2, c="0.75", linewidths=0, label="map", rasterized=True)
    axes.plot(gt[:, 0], gt[:, 1], "-", color="black", linewidth=2.0, label="ground truth")
    axes.plot(ate.aligned[:, 0], ate.aligned[:, 1], "--", color="tab:red", linewidth=1.5, label="estimate")
    axes.plot(gt[0, 0], gt[0, 1], "o", color="tab:green", label="start")
    axes.set_xlabel("x [m]")
    axes.set_ylabel("y [m]")
    axes.set_aspect("equal", adjustable="datalim")
    axes.grid(True, linewidth=0.3)
    axes.legend(loc="best")
    axes.set_title(title or f"ATE {ate.rmse_m:.3f} m over {len(gt)} poses")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
