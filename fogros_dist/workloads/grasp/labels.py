"""Analytic grasp-quality labels from the known scene geometry.

A parallel-jaw grasp succeeds (in this model) when:

1. neither finger, descending along the approach axis to the grasp depth, hits anything (an object
   or the table) on the way;
2. closing from the full opening, both jaws first touch the same object (not the table, not two
   different objects) and the object is no thinner than the gripper's minimum width;
3. the grasp is antipodal: the closing force at each contact lies inside the friction cone
   (half-angle ``atan(mu)``) around the inward surface normal there.

The robust quality is the fraction of grasps that still succeed when the gripper pose (center,
depth, angle) and the friction coefficient are perturbed, as in Dex-Net's robust metrics; a grasp
is labeled robust when that fraction reaches a threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fogros_dist.workloads.grasp.geometry import Grasps, Gripper
from fogros_dist.workloads.grasp.scene import TABLE_ID, Scene, cast_rays

__all__ = ["LabelConfig", "grasp_success", "robust_labels", "robust_quality"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# Where the descending fingers start, in front of the camera (meters along the optical axis).
_FINGER_START_Z = 0.01


@dataclass(frozen=True, kw_only=True)
class LabelConfig:
    """The friction model and the perturbations a robust grasp must survive.

    Attributes:
        friction: Coulomb friction coefficient ``mu`` between jaw pads and objects.
        perturbations: perturbed grasps evaluated per grasp.
        translation_std: std of the grasp center's offset across the optical axis (meters).
        depth_std: std of the grasp depth's offset (meters).
        angle_std_deg: std of the jaw angle's offset (degrees).
        friction_std: relative std of the friction coefficient.
        threshold: a grasp is robust when at least this fraction of perturbed grasps succeed.
    """

    friction: float = 0.5
    perturbations: int = 25
    translation_std: float = 0.003
    depth_std: float = 0.003
    angle_std_deg: float = 6.0
    friction_std: float = 0.1
    threshold: float = 0.7

    def __post_init__(self) -> None:
        if self.perturbations < 1:
            msg = f"label perturbations {self.perturbations} must be >= 1"
            raise ValueError(msg)
        if not 0.0 < self.threshold <= 1.0:
            msg = f"robust threshold {self.threshold} must be in (0, 1]"
            raise ValueError(msg)


def grasp_success(
    scene: Scene,
    *,
    points: FloatArray,
    axes: FloatArray,
    friction: FloatArray | float,
    gripper: Gripper,
) -> BoolArray:
    """Whether each camera-frame grasp succeeds, by the rules in the module docstring.

    Args:
        scene: the scene with its exact geometry.
        points: (N, 3) grasp centers in the camera frame.
        axes: (N, 3) unit jaw axes in the camera frame (perpendicular to the optical axis).
        friction: friction coefficient, one for all or (N,).
        gripper: the gripper.

    Returns:
        (N,) success flags.
    """
    n = points.shape[0]
    if n == 0:
        return np.zeros(0, dtype=bool)
    half = gripper.max_width / 2.0
    tips = np.concatenate([points - half * axes, points + half * axes])
    # 1. Fingers descend along the optical axis (+z in the camera frame) to just below the tips.
    perp = np.stack([-axes[:, 1], axes[:, 0], np.zeros(n)], axis=-1)
    perp2 = np.concatenate([perp, perp])
    finger_points = np.concatenate(
        [tips + s * gripper.finger_width / 2.0 * perp2 for s in (-1.0, 0.0, 1.0)]
    )  # (3 * 2N, 3)
    starts = finger_points.copy()
    starts[:, 2] = _FINGER_START_Z
    reach = finger_points[:, 2] + gripper.tip_clearance - _FINGER_START_Z
    down = np.zeros_like(starts)
    down[:, 2] = 1.0
    finger_hits = cast_rays(scene, scene.to_world(starts), scene.dirs_to_world(down))
    finger_free = (finger_hits.t >= reach).reshape(3, 2 * n).all(axis=0).reshape(2, n).all(axis=0)
    # 2. Jaws close from the open tips towards each other along the axis.
    dirs = np.concatenate([axes, -axes])
    close = cast_rays(scene, scene.to_world(tips), scene.dirs_to_world(dirs))
    t1, t2 = close.t[:n], close.t[n:]
    id1, id2 = close.ids[:n], close.ids[n:]
    touches = (
        ~close.inside[:n]
        & ~close.inside[n:]
        & (t1 <= gripper.max_width)
        & (t2 <= gripper.max_width)
        & (id1 == id2)
        & (id1 > TABLE_ID)  # an object: not the table (0), not nothing (-1)
    )
    width = gripper.max_width - np.where(touches, t1 + t2, 0.0)
    touches &= width >= gripper.min_width
    # 3. Friction cones: jaw 1 pushes along +axis, so -n1 must lie within atan(mu) of +axis.
    axes_w = scene.dirs_to_world(axes)
    n1, n2 = close.normals[:n], close.normals[n:]
    cone_cos = 1.0 / np.sqrt(1.0 + np.asarray(friction, dtype=np.float64) ** 2)
    in_cone = (-(n1 * axes_w).sum(axis=1) >= cone_cos) & ((n2 * axes_w).sum(axis=1) >= cone_cos)
    result: BoolArray = finger_free & touches & in_cone
    return result


def robust_quality(
    scene: Scene, grasps: Grasps, *, gripper: Gripper, config: LabelConfig, seed: int
) -> FloatArray:
    """The fraction of perturbed copies of each grasp that succeed.

    Args:
        scene: the scene with its exact geometry.
        grasps: the grasps (image terms; the scene's camera deprojects them).
        gripper: the gripper.
        config: friction and perturbations.
        seed: seeds the perturbations (the same seed gives the same qualities).

    Returns:
        (N,) qualities in ``[0, 1]``.
    """
    n = len(grasps)
    if n == 0:
        return np.zeros(0)
    k = config.perturbations
    rng = np.random.default_rng(np.random.SeedSequence([seed, 11]))
    points = np.repeat(grasps.points(scene.camera), k, axis=0)
    angles = np.repeat(grasps.angles, k)
    points[:, :2] += rng.normal(0.0, config.translation_std, size=(n * k, 2))
    points[:, 2] += rng.normal(0.0, config.depth_std, size=n * k)
    angles = angles + rng.normal(0.0, math.radians(config.angle_std_deg), size=n * k)
    axes = np.stack([np.cos(angles), np.sin(angles), np.zeros_like(angles)], axis=-1)
    friction = np.maximum(config.friction * (1.0 + rng.normal(0.0, config.friction_std, size=n * k)), 0.0)
    ok = grasp_success(scene, points=points, axes=axes, friction=friction, gripper=gripper)
    quality: FloatArray = ok.reshape(n, k).mean(axis=1)
    return quality


def robust_labels(
    scene: Scene, grasps: Grasps, *, gripper: Gripper, config: LabelConfig, seed: int
) -> BoolArray:
    """Whether each grasp is robust: its :func:`robust_quality` reaches ``config.threshold``."""
    labels: BoolArray = robust_quality(scene, grasps, gripper=gripper, config=config, seed=seed) >= (
        config.threshold - 1e-9
    )
    return labels
