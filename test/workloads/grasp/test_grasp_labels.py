"""Analytic labels on a box of known size under a camera looking straight down."""

from __future__ import annotations

import math

import numpy as np
import pytest
from grasp_test_helpers import CAMERA_HEIGHT, one_grasp, single_object_scene

from fogros_dist.workloads.grasp.geometry import Gripper
from fogros_dist.workloads.grasp.labels import LabelConfig, grasp_success, robust_labels, robust_quality

# A box 4 cm along x, 8 cm along y, 5 cm tall: its top is 0.55 m from the camera.
BOX = (0.02, 0.04, 0.025)
TOP = CAMERA_HEIGHT - 2 * BOX[2]
GRIPPER = Gripper()
LABELS = LabelConfig()


def _quality(
    *, pixel: tuple[float, float] | None = None, angle: float = 0.0, depth: float = TOP + 0.02
) -> float:
    scene = single_object_scene("box", BOX)
    grasp = one_grasp(pixel=pixel or scene.camera.principal_point, angle=angle, depth=depth)
    return float(robust_quality(scene, grasp, gripper=GRIPPER, config=LABELS, seed=0)[0])


def test_antipodal_grasp_across_the_narrow_side_is_robust() -> None:
    scene = single_object_scene("box", BOX)
    grasp = one_grasp(pixel=scene.camera.principal_point, angle=0.0, depth=TOP + 0.02)
    assert robust_labels(scene, grasp, gripper=GRIPPER, config=LABELS, seed=0).tolist() == [True]
    assert _quality() == 1.0
    # pi-periodic: the same grasp with the jaws swapped.
    assert _quality(angle=math.pi - 1e-9) == 1.0


def test_grasp_on_the_empty_table_is_not() -> None:
    assert _quality(pixel=(15.0, 15.0)) == 0.0


def test_grasp_above_the_object_closes_on_nothing() -> None:
    assert _quality(depth=TOP - 0.01) == 0.0


def test_grasp_through_the_table_collides() -> None:
    assert _quality(depth=CAMERA_HEIGHT + 0.005) == 0.0


def test_diagonal_grasp_is_outside_the_friction_cone() -> None:
    # 45 degrees to the faces is outside atan(0.5) = 26.6 degrees; a steeper cone (mu 1.2) holds.
    assert _quality(angle=math.radians(45)) == 0.0
    scene = single_object_scene("box", BOX)
    points = one_grasp(pixel=scene.camera.principal_point, angle=0.0, depth=TOP + 0.02).points(scene.camera)
    axis = np.array([[math.cos(math.radians(45)), math.sin(math.radians(45)), 0.0]])
    kwargs = {"points": points, "axes": axis, "gripper": GRIPPER}
    assert grasp_success(scene, friction=0.5, **kwargs).tolist() == [False]  # type: ignore[arg-type]
    assert grasp_success(scene, friction=1.2, **kwargs).tolist() == [True]  # type: ignore[arg-type]


def test_the_long_side_does_not_fit_the_gripper_robustly() -> None:
    # 8 cm between the jaws of an 8.5 cm gripper: small pose errors put a finger on the box.
    assert _quality(angle=math.pi / 2) < LABELS.threshold


@pytest.mark.parametrize("kind", ["cylinder", "ellipsoid"])
def test_round_objects_are_graspable_through_their_center(kind: str) -> None:
    size = (0.025, 0.025, 0.025)
    scene = single_object_scene(kind, size)  # type: ignore[arg-type]
    # Halfway down the object: the normals there are horizontal (the ellipsoid's equator).
    grasp = one_grasp(pixel=scene.camera.principal_point, angle=1.0, depth=CAMERA_HEIGHT - size[2])
    assert robust_quality(scene, grasp, gripper=GRIPPER, config=LABELS, seed=0)[0] >= LABELS.threshold
    # Near the top of the ellipsoid the surface faces the camera: the jaws would slip off.
    if kind == "ellipsoid":
        high = one_grasp(
            pixel=scene.camera.principal_point, angle=1.0, depth=CAMERA_HEIGHT - 2 * size[2] + 0.004
        )
        assert robust_quality(scene, high, gripper=GRIPPER, config=LABELS, seed=0)[0] == 0.0
