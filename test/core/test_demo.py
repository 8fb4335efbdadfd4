"""The main job, small: every frame crosses robot DDS -> bridge -> Local node -> bridge -> robot."""

from __future__ import annotations

from pathlib import Path

import pytest

from fogros_dist.demo import run_demo, summarize
from fogros_dist.deploy.state import StateStore


def test_demo_round_trips_every_frame_with_correct_edges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CYCLONEDDS_URI", "")  # run_demo installs its own loopback config
    store = StateStore(tmp_path / "home")
    result = run_demo(frames=8, width=64, height=48, rate_hz=50, store=store, report=lambda _line: None)
    assert result.sent == 8
    assert result.answered == 8
    assert result.correct == 8
    assert len(result.round_trips_ms) == 8
    # Every measured frame (and the warm-up ones) crossed both bridges in both directions.
    counts = {
        (side, t["topic"], t["direction"]): t["messages"]
        for side in ("robot", "gpu")
        for t in result.bridge_stats[side]["topics"]
    }
    assert counts[("robot", "/camera/image", "outbound")] >= 8
    assert counts[("gpu", "/camera/image", "inbound")] == counts[("robot", "/camera/image", "outbound")]
    assert counts[("robot", "/camera/edges", "inbound")] >= 8
    assert "round trip robot -> cloud -> robot" in summarize(result)[1]
    assert store.names() == []
