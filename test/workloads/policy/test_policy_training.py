"""Behaviour cloning end to end: bags -> dataset -> training -> open-loop evaluation -> saved model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from policy_test_helpers import TrainedPolicy, train_args

from fogros_dist.errors import ConfigError
from fogros_dist.workloads.policy import WORKLOAD
from fogros_dist.workloads.policy.dataset import DEFAULT_MAPPING, ChunkDataset, Episode, Normalizer
from fogros_dist.workloads.policy.evaluate import evaluate_policy
from fogros_dist.workloads.policy.model import ChunkPolicy, PolicyConfig, load_policy
from fogros_dist.workloads.policy.train import TrainConfig, train_policy


def test_bc_policy_succeeds_at_least_80_percent(trained_policy: TrainedPolicy) -> None:
    m = trained_policy.metrics
    assert m["eval_episodes"] == 50
    assert m["success_rate"] >= 0.8, trained_policy.report
    assert m["success_ci_low"] <= m["success_rate"] <= m["success_ci_high"]
    assert m["expert_success_rate"] >= 0.95
    assert m["expert_ci_low"] <= m["expert_success_rate"] <= m["expert_ci_high"]
    assert math.isfinite(m["val_loss"])
    assert m["train_episodes"] == 40
    assert m["val_episodes"] == 10
    assert any(line.startswith("  policy ") and "; expert " in line for line in trained_policy.report)
    assert trained_policy.report[-1] == f"saved {trained_policy.path}"


def test_saved_policy_round_trips_and_reproduces_its_success_rate(trained_policy: TrainedPolicy) -> None:
    loaded = load_policy(trained_policy.path)
    assert loaded.mapping == DEFAULT_MAPPING
    assert loaded.metrics == pytest.approx(trained_policy.metrics)
    assert loaded.model.config == PolicyConfig(observation_dim=6, action_dim=2, chunk=8, hidden=128, layers=2)
    assert list(loaded.action_low) == [-0.5, -0.5]
    chunk = loaded.model.predict(np.zeros(6))
    assert chunk.shape == (1, 8, 2)
    # Same seed, same evaluation episodes: the saved weights give the reported rate exactly.
    rate = evaluate_policy(loaded.model.predict, episodes=50, seed=0)
    assert rate.rate == trained_policy.metrics["success_rate"]


def test_training_is_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(0)
    episodes = [
        Episode(
            bag=Path(f"e{i}"),
            times=np.arange(30, dtype=np.int64),
            observations=rng.normal(size=(30, 3)),
            actions=rng.normal(size=(30, 2)),
        )
        for i in range(4)
    ]
    norm = Normalizer.fit(episodes)
    data = ChunkDataset(episodes, chunk=4, normalizer=norm)
    weights = []
    for run in range(2):
        torch.manual_seed(0)
        model = ChunkPolicy(PolicyConfig(observation_dim=3, action_dim=2, chunk=4, hidden=16, layers=1), norm)
        torch.manual_seed(run)  # whatever the global state, the loop's order follows its own seed
        result = train_policy(
            model, train=data, val=data, config=TrainConfig(epochs=3, batch_size=16, seed=5)
        )
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        assert result.steps == 3 * math.ceil(len(data) / 16)
    assert torch.equal(weights[0], weights[1])


def test_missing_or_foreign_model_is_one_line_naming_path_and_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "policy.pt"
    with pytest.raises(ConfigError) as err:
        load_policy(missing)
    assert str(err.value) == (
        f"policy model {missing} does not exist: "
        "train one with `fogros-dist train policy` or pass -p model:=PATH"
    )
    foreign = tmp_path / "foreign.pt"
    foreign.write_bytes(b"not a policy")
    with pytest.raises(ConfigError, match=r"foreign.pt is not a readable policy .*fogros-dist train policy"):
        load_policy(foreign)
    other = tmp_path / "other.pt"
    torch.save({"format": "something/2"}, other)
    with pytest.raises(ConfigError, match=r"has format 'something/2', expected 'fogros_dist.policy/1'"):
        load_policy(other)


def test_bad_train_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--reuse-bags needs --bag-dir DIR"):
        WORKLOAD.train(train_args("--reuse-bags"), report=lambda _line: None)
    with pytest.raises(ConfigError, match=r"--execute \(9\) cannot exceed --chunk \(8\)"):
        WORKLOAD.train(train_args("--execute 9"), report=lambda _line: None)
    with pytest.raises(ConfigError, match=r"no rosbag2 bags"):
        WORKLOAD.train(train_args(f"--reuse-bags --bag-dir {tmp_path}"), report=lambda _line: None)
