"""bench/wan_link.py's emulated WAN holds its delay and its rate, and leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from wan_link import measure_link, open_wan, wan_unavailable


@pytest.fixture(autouse=True)
def _needs_wan() -> None:
    why = wan_unavailable()
    if why:
        pytest.skip(f"WAN link: {why}")


def _namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def test_delay_and_rate_hold() -> None:
    link = open_wan(rate="20mbit", delay_ms=15.0)
    try:
        found = measure_link(link, samples=20, seconds=2.0, warmup=1.0)
        wire = link.wire_bytes()
    finally:
        link.close()
    # 15 ms each way: the round trip is 30 ms, plus a little for the relay's wake-ups.
    assert 30.0 <= found["tcp_rtt_min_ms"] <= found["tcp_rtt_median_ms"] <= 36.0
    # The token bucket caps the payload below the line rate (IP/TCP headers take ~4 %), each way.
    for direction in ("tcp_rate_up_mbit_s", "tcp_rate_down_mbit_s"):
        assert 12.0 <= found[direction] <= 20.0, (direction, found)
    # The TUN counters saw at least the payload that crossed (2 s at >= 12 Mbit/s robot -> cloud).
    assert wire["robot_to_cloud"] >= 12e6 / 8 * 2


def test_close_removes_namespaces_and_relay() -> None:
    link = open_wan()
    names = {link.robot_ns, link.cloud_ns}
    assert names <= _namespaces()
    relay = link.relay
    link.close()
    assert not names & _namespaces()
    assert relay is not None
    assert relay.poll() is not None


def _congestion_control(netns: str) -> str:
    shown = subprocess.run(
        ["ip", "netns", "exec", netns, "sysctl", "-n", "net.ipv4.tcp_congestion_control"],
        capture_output=True,
        text=True,
        check=True,
    )
    return shown.stdout.strip()


def test_congestion_control_is_set_in_both_namespaces_and_a_refused_one_says_why() -> None:
    link = open_wan(congestion_control="reno")
    try:
        assert {_congestion_control(link.robot_ns), _congestion_control(link.cloud_ns)} == {"reno"}
        # Any other one a namespace may take here (bbr on this machine, cubic on most hosts).
        allowed = Path("/proc/sys/net/ipv4/tcp_allowed_congestion_control").read_text().split()
        other = next((name for name in allowed if name != "reno"), "reno")
        link.set_congestion_control(other)
        assert {_congestion_control(link.robot_ns), _congestion_control(link.cloud_ns)} == {other}
        with pytest.raises(RuntimeError, match=r"'no-such-cc' cannot be set .*choose one of"):
            link.set_congestion_control("no-such-cc")
        assert link.congestion_control == other  # unchanged by the refusal
    finally:
        link.close()
