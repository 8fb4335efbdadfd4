"""`fogros-dist bench`'s harness: the same requests answered on the robot and offloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
from ros_packages import needs_message_packages

from fogros_dist.deploy.state import StateStore
from fogros_dist.workloads import get_workload
from fogros_dist.workloads.bench import run_bench

# SLAM answers with nav_msgs/Odometry.
pytestmark = needs_message_packages("nav_msgs")


def test_both_phases_answer_every_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CYCLONEDDS_URI", "")  # run_bench installs its own loopback config
    store = StateStore(tmp_path / "home")
    # SLAM needs no trained model, which keeps this test fast.
    bench = run_bench(
        get_workload("slam"), requests=3, model_dir=tmp_path, store=store, report=lambda _l: None
    )
    result = bench.as_dict()
    assert [p.phase for p in bench.phases] == ["robot", "offloaded"]
    for phase in ("robot", "offloaded"):
        assert result["phases"][phase]["count"] == 3
        assert result["phases"][phase]["missing"] == 0
        assert result["phases"][phase]["median_ms"] > 0
    assert result["ratio"] > 0
    assert store.names() == []
