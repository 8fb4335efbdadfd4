"""The trained GQ-CNN against the analytic labels on held-out scenes; saving and loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from grasp_test_helpers import TrainedGraspModel

from fogros_dist.errors import ConfigError
from fogros_dist.workloads.grasp.model import GQCNN, ModelConfig, load_model, save_model


def test_network_beats_85_percent_on_held_out_scenes(grasp_model: TrainedGraspModel) -> None:
    metrics = grasp_model.metrics
    # Held-out scenes come from another seed stream: none of them was trained on.
    assert metrics["heldout_samples"] >= 3000
    assert metrics["heldout_accuracy"] > 0.85
    assert metrics["heldout_precision"] > 0.8
    assert metrics["heldout_recall"] > 0.75
    # Not a majority-class answer: both classes are well represented.
    assert 0.3 < metrics["heldout_positive_rate"] < 0.7


def test_saved_model_loads_with_its_config_and_metrics(grasp_model: TrainedGraspModel) -> None:
    model, metrics = load_model(grasp_model.path)
    assert model.config == grasp_model.model.config
    assert metrics["heldout_accuracy"] == pytest.approx(grasp_model.metrics["heldout_accuracy"])
    patches = torch.zeros((3, 24, 24))
    depths = torch.full((3,), 0.6)
    assert torch.allclose(model.quality(patches, depths), grasp_model.model.quality(patches, depths))


def test_missing_or_foreign_model_file_fails_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"grasp model .*nope\.pt does not exist: train one with `fogros-dist train grasp`"
    ):
        load_model(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(
        ConfigError, match=r"junk\.pt cannot be read .*retrain with `fogros-dist train grasp`"
    ):
        load_model(junk)
    other = tmp_path / "other.pt"
    torch.save({"format": 99}, other)
    with pytest.raises(ConfigError, match=r"has format 99, this version reads 1"):
        load_model(other)


def test_patch_size_must_fit_the_network(tmp_path: Path) -> None:
    from fogros_dist.workloads.grasp.sampling import PatchSpec

    with pytest.raises(ConfigError, match=r"patch size 20 must be a multiple of 8"):
        GQCNN(ModelConfig(patch=PatchSpec(size=20)))
    save_model(GQCNN(ModelConfig()), tmp_path / "m.pt")
    assert (tmp_path / "m.pt").is_file()
    assert not (tmp_path / "m.pt.tmp").exists()
