"""The CEM planner: refinement raises predicted quality; plans are deterministic and good."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from grasp_test_helpers import TrainedGraspModel

from fogros_dist.workloads.grasp.dataset import TEST_SPLIT, DatasetConfig, split_scenes
from fogros_dist.workloads.grasp.draw import draw_grasps
from fogros_dist.workloads.grasp.labels import LabelConfig, robust_labels
from fogros_dist.workloads.grasp.plan import CemConfig, GraspPlanner
from fogros_dist.workloads.grasp.scene import NoiseModel, render_depth


def _held_out_images(count: int) -> list:
    scenes = split_scenes(DatasetConfig(scenes=count, seed=0, split=TEST_SPLIT, first_scene=100))
    return [(s, render_depth(s, noise=NoiseModel(), seed=s.seed)) for s in scenes]


def test_cem_improves_predicted_quality_over_the_proposals(grasp_model: TrainedGraspModel) -> None:
    planner = GraspPlanner(grasp_model.model, cem=CemConfig(iterations=3))
    initial, refined = [], []
    for scene, image in _held_out_images(6):
        result = planner.plan(image.depth, camera=scene.camera)
        assert len(result.history) == 4
        assert list(result.best_history) == sorted(result.best_history)
        initial.append(result.history[0])
        refined.append(result.history[-1])
        # Every returned grasp is at least as good as the best proposal's score allows.
        assert result.qualities[0] == pytest.approx(result.best_history[-1])
        assert list(result.qualities) == sorted(result.qualities, reverse=True)
    # The last population scores higher on average than the antipodal proposals, image by image.
    assert float(np.mean(refined)) > float(np.mean(initial)) + 0.05
    assert sum(r > i for r, i in zip(refined, initial, strict=True)) >= 5


def test_plans_are_deterministic_and_mostly_robust(grasp_model: TrainedGraspModel) -> None:
    planner = GraspPlanner(grasp_model.model)
    robust_top = 0
    images = _held_out_images(6)
    for scene, image in images:
        first = planner.plan(image.depth, camera=scene.camera)
        again = planner.plan(image.depth, camera=scene.camera)
        assert np.array_equal(first.grasps.centers, again.grasps.centers)
        assert 1 <= len(first.grasps) <= 5
        labels = robust_labels(
            scene, first.grasps, gripper=planner.model.config.gripper, config=LabelConfig(), seed=1
        )
        robust_top += int(labels[0])
    assert robust_top >= 4


def test_plan_rejects_mismatched_size(grasp_model: TrainedGraspModel) -> None:
    scene, image = _held_out_images(1)[0]
    with pytest.raises(ValueError, match=r"depth image is 80x120 but the camera info says 160x120"):
        GraspPlanner(grasp_model.model).plan(image.depth[:, :80], camera=scene.camera)
    with pytest.raises(ValueError, match=r"has no valid pixel"):
        GraspPlanner(grasp_model.model).plan(np.full_like(image.depth, np.nan), camera=scene.camera)


def test_plan_is_drawn_as_a_png(grasp_model: TrainedGraspModel, tmp_path: Path) -> None:
    from PIL import Image

    scene, image = _held_out_images(1)[0]
    result = GraspPlanner(grasp_model.model).plan(image.depth, camera=scene.camera)
    target = tmp_path / "figs" / "plan.png"
    data = draw_grasps(
        depth=image.depth, camera=scene.camera, grasps=result.grasps, qualities=result.qualities, path=target
    )
    assert target.read_bytes() == data
    with Image.open(io.BytesIO(data)) as png:
        assert png.format == "PNG"
        assert png.size == (scene.camera.width * 4, scene.camera.height * 4)
        # The best grasp is drawn in its quality's color (near-green for a confident plan).
        rgb = np.asarray(png.convert("RGB"))
        assert ((rgb[..., 1] > 200) & (rgb[..., 0] < 60)).any()
