"""Bridge statistics: counters, latency percentiles, atomic JSON files and the table."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from fogros_dist.errors import ConfigError
from fogros_dist.net.stats import BridgeStats, TopicStats, format_stats_table, read_stats


def test_counters_and_nearest_rank_percentiles() -> None:
    stats = TopicStats(topic="/chatter", direction="inbound", window=1000)
    for ms in range(1, 101):  # 1..100 ms
        stats.record(10, latency_ns=ms * 1_000_000)
    stats.record(5)  # no attachment: counted, no latency sample
    stats.drop_malformed()
    stats.drop_other()
    stats.lose(3)
    snap = stats.snapshot()
    assert snap["messages"] == 101
    assert snap["bytes"] == 1005
    assert (snap["dropped_malformed"], snap["dropped_other"], snap["lost"]) == (1, 1, 3)
    assert snap["latency_ms"] == {"samples": 100, "median": 50.0, "p99": 99.0, "max": 100.0}
    json.dumps(snap)  # JSON-able as is


def test_latency_ring_keeps_the_latest_window() -> None:
    stats = TopicStats(topic="/t", direction="inbound", window=4)
    for ms in (100, 100, 100, 100, 1, 2, 3, 4):
        stats.record(1, latency_ns=ms * 1_000_000)
    assert stats.snapshot()["latency_ms"]["max"] == 4.0
    with pytest.raises(ConfigError, match="latency window 0 is too small"):
        TopicStats(topic="/t", direction="inbound", window=0)


def test_counts_from_many_threads_add_up() -> None:
    stats = BridgeStats(deployment="d", side="machine", machine="gpu")

    def hammer() -> None:
        topic = stats.topic("/chatter", "inbound")
        for _ in range(10_000):
            topic.record(3, latency_ns=1000)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (topic,) = stats.snapshot()["topics"]
    assert (topic["messages"], topic["bytes"]) == (40_000, 120_000)


def test_write_is_atomic_and_readable(tmp_path: Path) -> None:
    stats = BridgeStats(deployment="d", side="robot", machine="robot")
    stats.topic("/grasps", "inbound", type_name="std_msgs/msg/String").record(7, latency_ns=2_500_000)
    stats.topic("/camera", "outbound").record(6_000_000)
    path = tmp_path / "stats.json"
    stats.write(path)
    stats.write(path)  # replaces, never appends or leaves temporaries
    assert [p.name for p in tmp_path.iterdir()] == ["stats.json"]
    data = read_stats(path)
    assert [(t["direction"], t["topic"]) for t in data["topics"]] == [
        ("inbound", "/grasps"),
        ("outbound", "/camera"),
    ]
    assert (data["deployment"], data["side"], data["machine"]) == ("d", "robot", "robot")


def test_read_stats_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing.json' does not exist: is the bridge running"):
        read_stats(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="is not a bridge stats file"):
        read_stats(tmp_path / "bad.json")


def test_table_for_one_snapshot_and_for_several_bridges() -> None:
    stats = BridgeStats(deployment="d", side="robot", machine="robot")
    stats.topic("/grasps", "inbound").record(2_000_000, latency_ns=1_234_000)
    stats.topic("/camera", "outbound").record(6_000_000)
    table = format_stats_table(stats.snapshot())
    lines = table.splitlines()
    headers = (
        "bridge",
        "topic",
        "dir",
        "msgs",
        "MB",
        "malformed",
        "dropped",
        "lost",
        "lat med ms",
        "lat p99 ms",
    )
    assert [h for h in lines[0].split("  ") if h] == [h.strip() for h in headers]
    assert lines[2].split() == ["robot", "/grasps", "in", "1", "2.00", "0", "0", "0", "1.23", "1.23"]
    assert lines[3].split() == ["robot", "/camera", "out", "1", "6.00", "0", "0", "0", "-", "-"]
    several = format_stats_table({"robot": stats.snapshot(), "gpu": {}})
    assert "gpu     (no topics or no stats yet)" in several
