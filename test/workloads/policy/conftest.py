"""Fixtures for the policy workload's tests: one small trained policy shared by the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from policy_test_helpers import TrainedPolicy, train_args

from fogros_dist.workloads.policy import WORKLOAD


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The test machine is shared: one intra-op thread (a tiny MLP runs fastest on one anyway)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def trained_policy(tmp_path_factory: pytest.TempPathFactory) -> TrainedPolicy:
    """Record 50 demonstrations as bags, train, evaluate and save, once per session."""
    out = tmp_path_factory.mktemp("policy-model") / "policy.pt"
    lines: list[str] = []
    metrics = WORKLOAD.train(train_args(f"--out {out}"), report=lines.append)
    return TrainedPolicy(path=out, metrics=metrics, report=tuple(lines))
