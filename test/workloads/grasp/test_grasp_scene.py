"""Synthetic depth scenes: determinism and geometry against hand-computed depths."""

from __future__ import annotations

import numpy as np
import pytest
from grasp_test_helpers import CAMERA_HEIGHT, single_object_scene

from fogros_dist.workloads.grasp.scene import Camera, NoiseModel, generate_scene, render_depth


def test_same_seed_same_scene_and_image() -> None:
    first, again, other = generate_scene(seed=7), generate_scene(seed=7), generate_scene(seed=8)
    assert [o.kind for o in first.objects] == [o.kind for o in again.objects]
    assert np.array_equal(first.camera_position, again.camera_position)
    a = render_depth(first, noise=NoiseModel(), seed=7)
    b = render_depth(again, noise=NoiseModel(), seed=7)
    assert np.array_equal(a.depth, b.depth)
    assert np.array_equal(a.segmentation, b.segmentation)
    assert not np.array_equal(a.clean, render_depth(other).clean)


def test_random_scenes_are_sane() -> None:
    for seed in range(5):
        scene = generate_scene(seed=seed)
        assert 2 <= len(scene.objects) <= 5
        image = render_depth(scene, noise=NoiseModel(), seed=seed)
        assert image.depth.shape == (scene.camera.height, scene.camera.width)
        assert image.depth.dtype == np.float32
        # Every pixel sees the table or an object; the camera is 0.55-0.70 m away.
        assert (image.segmentation >= 0).all()
        assert float(image.clean.min()) > 0.4
        assert float(image.clean.max()) < 0.8
        # Each object is visible and the sensor drops a few pixels (zeros), not many.
        assert set(np.unique(image.segmentation)) >= {1, 2}
        assert 0.001 < float((image.depth == 0).mean()) < 0.05
        # Noise is millimeters, not centimeters.
        valid = image.depth > 0
        assert float(np.median(np.abs(image.depth[valid] - image.clean[valid]))) < 0.006


@pytest.mark.parametrize(
    ("kind", "size", "top"),
    [
        ("box", (0.03, 0.02, 0.025), 0.05),
        ("cylinder", (0.02, 0.02, 0.04), 0.08),
        ("ellipsoid", (0.03, 0.025, 0.02), 0.04),
    ],
)
def test_depth_matches_the_geometry(kind: str, size: tuple[float, float, float], top: float) -> None:
    scene = single_object_scene(kind, size)  # type: ignore[arg-type]
    image = render_depth(scene)  # no noise
    cx, cy = scene.camera.principal_point
    center = image.clean[round(cy), round(cx)]
    assert center == pytest.approx(CAMERA_HEIGHT - top, abs=1e-4)
    # The table is parallel to the image plane: the same z-depth in every corner.
    assert image.clean[0, 0] == pytest.approx(CAMERA_HEIGHT, abs=1e-6)
    assert image.clean[-1, -1] == pytest.approx(CAMERA_HEIGHT, abs=1e-6)
    assert image.segmentation[0, 0] == 0
    assert image.segmentation[round(cy), round(cx)] == 1


def test_box_outline_has_the_projected_size() -> None:
    scene = single_object_scene("box", (0.03, 0.02, 0.025))
    image = render_depth(scene)
    rows, cols = np.nonzero(image.segmentation == 1)
    # From straight above, the top face (at 0.55 m) is the silhouette: 2 * 0.03 * 200 / 0.55 px.
    assert cols.max() - cols.min() + 1 == pytest.approx(2 * 0.03 * 200 / 0.55, abs=1.5)
    assert rows.max() - rows.min() + 1 == pytest.approx(2 * 0.02 * 200 / 0.55, abs=1.5)


def test_camera_round_trips_through_camera_info_k() -> None:
    camera = Camera(width=64, height=48, fx=80.0, fy=81.0, cx=31.0, cy=24.5)
    assert Camera.from_k(k=list(camera.k), width=64, height=48) == camera
    with pytest.raises(ValueError, match=r"focal lengths fx=0.0, fy=81.0 must be > 0"):
        Camera.from_k(k=[0.0, 0, 31, 0, 81, 24.5, 0, 0, 1], width=64, height=48)
    points = camera.deproject(pixels=np.array([[10.0, 20.0]]), depths=np.array([0.5]))
    assert camera.project(points) == pytest.approx(np.array([[10.0, 20.0]]))
