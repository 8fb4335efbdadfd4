"""Parallel-jaw grasps in a depth image, and the gripper that executes them.

A grasp is planar with respect to the camera, as in Dex-Net 2.0: the gripper approaches along the
optical axis, its jaws close along an axis in the image plane. It is written in image terms
(center pixel, angle, depth) and is a pose in the camera frame once the intrinsics are known.
Grasps are kept as arrays (one row per grasp) because every step works on batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fogros_dist.workloads.grasp.scene import Camera

__all__ = ["Grasps", "Gripper"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, kw_only=True)
class Gripper:
    """A parallel-jaw gripper (lengths in meters).

    Attributes:
        max_width: the jaws' full opening; they close from there until they touch something.
        min_width: objects thinner than this cannot be held.
        finger_width: breadth of a finger across the closing axis (checked for collisions).
        tip_clearance: how far the fingertips reach below the grasp point.
    """

    max_width: float = 0.085
    min_width: float = 0.005
    finger_width: float = 0.012
    tip_clearance: float = 0.005


@dataclass(frozen=True, kw_only=True, eq=False)
class Grasps:
    """N planar grasps, one per row.

    Attributes:
        centers: (N, 2) center pixel ``(u, v)`` (sub-pixel).
        angles: (N,) jaw axis angle in the image, radians from +u towards +v, in ``[0, pi)``
            (a parallel-jaw grasp is the same grasp turned by pi).
        depths: (N,) z-depth of the grasp center in meters (where the jaws close).
        widths: (N,) the object's width between the jaws at that depth, measured in the depth
            image (meters; 0 where unknown).
    """

    centers: FloatArray
    angles: FloatArray
    depths: FloatArray
    widths: FloatArray

    def __post_init__(self) -> None:
        n = self.angles.shape[0]
        if self.centers.shape != (n, 2) or self.depths.shape != (n,) or self.widths.shape != (n,):
            msg = (
                f"grasp arrays disagree: centers {self.centers.shape}, angles {self.angles.shape}, "
                f"depths {self.depths.shape}, widths {self.widths.shape}: use (N, 2), (N,), (N,), (N,)"
            )
            raise ValueError(msg)

    def __len__(self) -> int:
        return int(self.angles.shape[0])

    @classmethod
    def empty(cls) -> Grasps:
        """No grasps."""
        return cls(centers=np.zeros((0, 2)), angles=np.zeros(0), depths=np.zeros(0), widths=np.zeros(0))

    @classmethod
    def concat(cls, parts: Sequence[Grasps]) -> Grasps:
        """All grasps of ``parts``, in order."""
        if not parts:
            return cls.empty()
        return cls(
            centers=np.concatenate([p.centers for p in parts]),
            angles=np.concatenate([p.angles for p in parts]),
            depths=np.concatenate([p.depths for p in parts]),
            widths=np.concatenate([p.widths for p in parts]),
        )

    def take(self, index: npt.NDArray[np.intp] | npt.NDArray[np.bool_] | slice) -> Grasps:
        """The grasps selected by an index array, mask or slice."""
        return Grasps(
            centers=self.centers[index],
            angles=self.angles[index],
            depths=self.depths[index],
            widths=self.widths[index],
        )

    def points(self, camera: Camera) -> FloatArray:
        """(N, 3) grasp centers in the camera frame (meters)."""
        return camera.deproject(pixels=self.centers, depths=self.depths)

    def axes(self) -> FloatArray:
        """(N, 3) unit jaw axes in the camera frame (in its x-y plane)."""
        return np.stack([np.cos(self.angles), np.sin(self.angles), np.zeros_like(self.angles)], axis=-1)

    def quaternions(self) -> FloatArray:
        """(N, 4) gripper orientations in the camera frame as ``(x, y, z, w)``.

        The gripper frame has x along the jaw axis and z along the approach (the optical axis),
        so it is the camera frame turned about z by the grasp angle.
        """
        half = self.angles / 2.0
        zeros = np.zeros_like(half)
        return np.stack([zeros, zeros, np.sin(half), np.cos(half)], axis=-1)
