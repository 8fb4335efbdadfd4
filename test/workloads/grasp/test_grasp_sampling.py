"""Antipodal sampling, widths, inpainting and patches on images with known geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
from grasp_test_helpers import CAMERA_HEIGHT, one_grasp, single_object_scene

from fogros_dist.workloads.grasp.geometry import Gripper
from fogros_dist.workloads.grasp.labels import LabelConfig, robust_quality
from fogros_dist.workloads.grasp.sampling import (
    PatchSpec,
    SamplerConfig,
    extract_patches,
    inpaint,
    measure_widths,
    sample_antipodal,
)
from fogros_dist.workloads.grasp.scene import NoiseModel, generate_scene, render_depth

BOX = (0.02, 0.04, 0.025)  # 4 cm x 8 cm x 5 cm


def test_antipodal_samples_on_a_box_cross_its_narrow_side() -> None:
    scene = single_object_scene("box", BOX)
    image = render_depth(scene, noise=NoiseModel(), seed=1)
    depth = inpaint(image.depth)
    grasps = sample_antipodal(
        depth,
        camera=scene.camera,
        gripper=Gripper(),
        config=SamplerConfig(),
        count=50,
        rng=np.random.default_rng(0),
    )
    assert len(grasps) == 50
    rows = np.rint(grasps.centers[:, 1]).astype(int)
    cols = np.rint(grasps.centers[:, 0]).astype(int)
    assert (image.segmentation[rows, cols] == 1).all()
    # Only the 4 cm side fits between 8.5 cm jaws (minus a finger): angle ~0, width ~4 cm.
    turn = np.minimum(grasps.angles, math.pi - grasps.angles)
    assert float(np.median(turn)) < math.radians(15)
    assert float(np.median(grasps.widths)) == pytest.approx(0.04, abs=0.006)
    top = CAMERA_HEIGHT - 2 * BOX[2]
    assert (grasps.depths >= top - 0.005).all()
    assert (grasps.depths <= top + 0.035).all()


def test_sampling_is_deterministic_and_mostly_robust_on_random_scenes() -> None:
    scene = generate_scene(seed=3)
    depth = inpaint(render_depth(scene, noise=NoiseModel(), seed=3).depth)

    def draw() -> np.ndarray:
        g = sample_antipodal(
            depth,
            camera=scene.camera,
            gripper=Gripper(),
            config=SamplerConfig(),
            count=40,
            rng=np.random.default_rng(5),
        )
        return np.concatenate([g.centers.ravel(), g.angles, g.depths])

    assert np.array_equal(draw(), draw())
    grasps = sample_antipodal(
        depth,
        camera=scene.camera,
        gripper=Gripper(),
        config=SamplerConfig(),
        count=40,
        rng=np.random.default_rng(5),
    )
    quality = robust_quality(scene, grasps, gripper=Gripper(), config=LabelConfig(), seed=3)
    # Proposals are worth scoring: a good share succeeds, not all (else there is nothing to learn).
    assert 0.2 < float((quality >= 0.7).mean()) < 0.95


def test_inpaint_fills_dropouts_from_the_far_side() -> None:
    depth = np.full((10, 10), 0.6)
    depth[3:7, 3:7] = 0.5
    holes = depth.copy()
    holes[3, 3] = 0.0  # a corner of the object
    holes[8, 8] = np.nan
    filled = inpaint(holes)
    assert filled[8, 8] == pytest.approx(0.6)
    assert filled[3, 3] == pytest.approx(0.6)  # the farther neighbor wins: no mid-air depth
    assert (filled > 0).all()
    with pytest.raises(ValueError, match=r"depth image 10x10 has no valid pixel"):
        inpaint(np.zeros((10, 10)))


def test_widths_measure_what_rises_above_the_grasp_depth() -> None:
    scene = single_object_scene("box", BOX)
    depth = render_depth(scene).clean.astype(np.float64)
    center = scene.camera.principal_point
    top = CAMERA_HEIGHT - 2 * BOX[2]
    widths = [
        measure_widths(
            depth,
            camera=scene.camera,
            gripper=Gripper(),
            grasps=one_grasp(pixel=center, angle=a, depth=top + 0.01),
        )[0]
        for a in (0.0, math.pi / 2)
    ]
    assert widths[0] == pytest.approx(0.04, abs=0.005)
    assert widths[1] == pytest.approx(0.08, abs=0.005)
    off = one_grasp(pixel=(5.0, 5.0), angle=0.0, depth=top + 0.01)
    assert measure_widths(depth, camera=scene.camera, gripper=Gripper(), grasps=off)[0] == 0.0


def test_patches_are_aligned_with_the_jaw_axis() -> None:
    scene = single_object_scene("box", BOX)
    depth = render_depth(scene).clean.astype(np.float64)
    center = scene.camera.principal_point
    top = CAMERA_HEIGHT - 2 * BOX[2]
    spec = PatchSpec()
    grasps = [one_grasp(pixel=center, angle=a, depth=top + 0.02) for a in (0.0, math.pi, math.pi / 2)]
    p0, p180, p90 = (extract_patches(depth, camera=scene.camera, grasps=g, spec=spec)[0] for g in grasps)
    assert p0.shape == (spec.size, spec.size)
    # Relative to the grasp depth: the box top is 2 cm above (negative), the table 3 cm below.
    mid = spec.size // 2
    assert p0[mid, mid] == pytest.approx(-0.02, abs=1e-3)
    assert p0[0, 0] == pytest.approx(0.03, abs=1e-3)
    # Turning the grasp by pi turns the patch by pi; by pi/2 swaps the box's extents.
    assert np.allclose(np.rot90(p0, 2), p180, atol=2e-3)
    across_box = (p0[mid] < 0).sum()  # along the jaw axis: 4 cm of box
    along_box = (p90[mid] < 0).sum()  # along the jaw axis: 8 cm of box
    assert across_box == pytest.approx(0.04 / spec.extent * spec.size, abs=1.5)
    assert along_box == pytest.approx(0.08 / spec.extent * spec.size, abs=1.5)
