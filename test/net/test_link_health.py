"""Link health: one line per disconnect and reconnect, with the outage's duration, and counts."""

from __future__ import annotations

import logging

import pytest

from fogros_dist.net.link_health import STALL_S, LinkMonitor
from fogros_dist.net.stats import BridgeStats, format_link, format_stats_table, peer_link_states


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _monitor(clock: Clock, restored: list[str], gone: list[str]) -> LinkMonitor:
    return LinkMonitor(own="robot", clock=clock, on_restored=restored.append, on_gone=gone.append)


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "fogros_dist.net.link_health"]


def test_a_silent_peer_is_lost_then_restored_with_the_outage_duration(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fogros_dist.net.link_health")
    clock, restored, gone = Clock(), [], []  # type: ignore[var-annotated]
    monitor = _monitor(clock, restored, gone)
    monitor.heard("gpu")
    monitor.heard("robot")  # never a peer of itself
    assert monitor.snapshot()["connected"] is True
    clock.now += STALL_S - 0.1
    monitor.check()
    assert monitor.snapshot()["disconnects"] == 0
    clock.now += 0.3
    monitor.check()
    snap = monitor.snapshot()
    assert (snap["connected"], snap["disconnects"]) == (False, 1)
    assert snap["peers"]["gpu"]["down_for_s"] == pytest.approx(STALL_S + 0.2)
    clock.now += 1.2  # heard again 3.4 s after it was last heard
    monitor.heard("gpu")
    snap = monitor.snapshot()
    assert (snap["connected"], snap["disconnects"], snap["last_outage_s"]) == (True, 1, pytest.approx(3.4))
    assert restored == ["gpu"]
    assert gone == []
    assert _lines(caplog) == [
        "link to peer bridge gpu is up",
        "link to peer bridge gpu lost: nothing heard for 2.2 s (disconnect #1)",
        "link to peer bridge gpu restored after a 3.4 s outage (disconnect #1)",
    ]
    assert format_link(snap) == "gpu connected, 1 disconnect, last outage 3.4 s"


def test_a_goodbye_is_no_outage_and_a_closed_transport_is(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fogros_dist.net.link_health")
    clock, restored, gone = Clock(), [], []  # type: ignore[var-annotated]
    monitor = _monitor(clock, restored, gone)
    monitor.heard("gpu")
    monitor.heard("cpu")
    # gpu's bridge stops: its token goes, its goodbye arrives just after.
    monitor.transport_closed("gpu")
    clock.now += 0.1
    monitor.said_goodbye("gpu")
    # cpu's transport closes (its lease ran out) with no goodbye.
    monitor.transport_closed("cpu")
    clock.now += 1.0
    monitor.check()
    snap = monitor.snapshot()
    assert snap["peers"]["gpu"] | {"last_heard_s_ago": None} == {
        "connected": False,
        "disconnects": 0,
        "last_outage_s": None,
        "down_for_s": None,
        "stopped": True,
        "last_heard_s_ago": None,
    }
    assert (snap["peers"]["cpu"]["connected"], snap["peers"]["cpu"]["disconnects"]) == (False, 1)
    assert snap["connected"] is False  # cpu is down; a stopped gpu does not count
    assert gone == ["gpu"]
    assert "link to peer bridge cpu lost: its transport closed after 0.1 s of silence (disconnect #1)" in (
        _lines(caplog)
    )


def test_a_peer_away_for_long_is_forgotten_once() -> None:
    clock, gone = Clock(), []  # type: ignore[var-annotated]
    monitor = LinkMonitor(own="gpu", forget_s=10.0, clock=clock, on_gone=gone.append)
    monitor.heard("robot")
    clock.now += 3.0
    monitor.check()
    clock.now += 8.0
    monitor.check()
    monitor.check()
    assert gone == ["robot"]
    clock.now += 1.0
    monitor.heard("robot")  # back after 12 s: an outage that ended, not a new peer
    assert monitor.snapshot()["peers"]["robot"]["last_outage_s"] == pytest.approx(12.0)


def test_the_stats_carry_the_link_and_the_table_shows_it() -> None:
    clock = Clock()
    monitor = LinkMonitor(own="robot", clock=clock)
    stats = BridgeStats(deployment="d", side="robot", machine="robot")
    stats.set_link_source(monitor.snapshot)
    assert stats.snapshot()["link"] == {
        "connected": False,
        "disconnects": 0,
        "last_outage_s": None,
        "peers": {},
    }
    monitor.heard("gpu")
    stats.topic("/grasps", "inbound").record(10)
    table = format_stats_table(stats.snapshot())
    assert table.splitlines()[-1] == "robot link: gpu connected, 0 disconnects"


def test_peer_states_read_as_a_status_column() -> None:
    clock = Clock()
    monitor = LinkMonitor(own="robot", clock=clock)
    for peer in ("gpu", "cpu", "old"):
        monitor.heard(peer)
    monitor.said_goodbye("old")
    clock.now += 3.0
    monitor.heard("gpu")
    monitor.check()  # cpu: silent for 3 s
    snapshot = {"link": monitor.snapshot()}
    assert peer_link_states(snapshot) == {"cpu": "DOWN for 3 s, 1 outage", "gpu": "up", "old": "stopped"}
    clock.now += 1.0
    monitor.heard("cpu")
    assert peer_link_states({"link": monitor.snapshot()})["cpu"] == "up, 1 outage (last 4.0 s)"
    assert peer_link_states({"topics": []}) == {}
