"""Fixtures for the grasp workload's tests: one small model trained once per session.

Training is real (generated scenes, analytic labels, the same loop `fogros-dist train grasp`
runs) but small: a 24-pixel patch and 200 scenes train in about 15 s on one CPU thread.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from grasp_test_helpers import TrainedGraspModel

from fogros_dist.workloads.grasp.dataset import DatasetConfig
from fogros_dist.workloads.grasp.model import ModelConfig
from fogros_dist.workloads.grasp.sampling import PatchSpec
from fogros_dist.workloads.grasp.train import GraspTraining, TrainConfig, run_training


@pytest.fixture(scope="session")
def grasp_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainedGraspModel]:
    # Workplace rule: tests use one thread (the machine is shared); the demo and CLI do not.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    model_dir = tmp_path_factory.mktemp("grasp_models")
    settings = GraspTraining(
        data=DatasetConfig(scenes=200, seed=0),
        eval_scenes=40,
        plan_images=0,
        optim=TrainConfig(epochs=4, seed=0),
        model=ModelConfig(patch=PatchSpec(size=24)),
        out=model_dir / "grasp.pt",
    )
    model, metrics = run_training(settings, report=lambda _line: None)
    yield TrainedGraspModel(model_dir=model_dir, path=model_dir / "grasp.pt", model=model, metrics=metrics)
    torch.set_num_threads(previous)
