"""The main job, small: depth images cross robot DDS -> bridge -> Local grasp_planner -> bridge ->
robot, and the grasps that come back are judged against the scenes' exact geometry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from fogros_dist.demo import ensure_model, run_demo, summarize
from fogros_dist.deploy.state import StateStore
from fogros_dist.workloads.grasp.dataset import DatasetConfig
from fogros_dist.workloads.grasp.model import ModelConfig
from fogros_dist.workloads.grasp.sampling import PatchSpec
from fogros_dist.workloads.grasp.train import GraspTraining, TrainConfig

# Far smaller than the demo's own training run: this test checks the plumbing, not the model.
TINY_TRAINING = GraspTraining(
    data=DatasetConfig(scenes=40, seed=0),
    eval_scenes=10,
    plan_images=0,
    optim=TrainConfig(epochs=2),
    model=ModelConfig(patch=PatchSpec(size=24)),
)


@pytest.fixture
def one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.usefixtures("one_thread")
def test_demo_trains_a_model_then_round_trips_every_depth_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CYCLONEDDS_URI", "")  # run_demo installs its own loopback config
    store = StateStore(tmp_path / "home")
    lines: list[str] = []
    result = run_demo(
        requests=4,
        rate_hz=20,
        model_dir=tmp_path / "models",
        training=TINY_TRAINING,
        store=store,
        report=lines.append,
    )
    # No model was cached: one was trained and saved where the node loaded it from.
    assert result.trained_seconds is not None
    assert result.model_path == tmp_path / "models" / "grasp.pt"
    assert result.model_path.is_file()
    assert any("no grasp model" in line for line in lines)
    assert result.sent == 4
    assert result.answered == 4
    assert len(result.round_trips_ms) == 4
    assert result.grasps >= 4
    assert len(result.confidences) == 4
    assert 0 <= result.top1_robust <= 4
    # The figure lands beside the deployments unless a path is given.
    assert result.png_path == (tmp_path / "home" / "demo_grasps.png").resolve()
    assert result.png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Every measured image (and the warm-up ones) crossed both bridges in both directions.
    counts = {
        (side, t["topic"], t["direction"]): t["messages"]
        for side in ("robot", "gpu")
        for t in result.bridge_stats[side]["topics"]
    }
    assert counts[("robot", "/camera/depth", "outbound")] >= 4
    assert counts[("gpu", "/camera/depth", "inbound")] == counts[("robot", "/camera/depth", "outbound")]
    assert counts[("robot", "/grasps", "inbound")] >= 4
    assert counts[("robot", "/grasps/quality", "inbound")] >= 4
    summary = summarize(result)
    assert any("round trip robot -> cloud -> robot" in line for line in summary)
    assert any("best grasp robust (analytic labels) in" in line for line in summary)
    assert store.names() == []
    # A second run finds the cached model and trains nothing.
    path, metrics, trained = ensure_model(tmp_path / "models", report=lines.append)
    assert (path, trained) == (result.model_path, None)
    assert "heldout_accuracy" in metrics
