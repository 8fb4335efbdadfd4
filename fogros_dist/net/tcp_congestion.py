"""A warning for hosts whose TCP congestion control pauses the bridge's link every ten seconds.

The bridge's Zenoh link is one TCP connection. Under BBR (v1, the Linux ``bbr`` module) a
connection that has not seen a new minimum round trip for ten seconds enters ProbeRTT: its window
drops to four packets for 200 ms plus a round trip. A camera stream keeps the link busy, so that
happens every ten seconds and every frame in flight waits: measured by bench/bridge_wan.py on a
50 Mbit/s, 40 ms link, p99 one-way 230-240 ms under BBR against 50-80 ms under a loss-based one
(BENCHMARKS.md, "Camera streams over a WAN"). Loss-based congestion control (cubic, the default of
Debian, Ubuntu and Amazon Linux) does not pause, so a bridge only says so where BBR is the default.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_SETTING", "congestion_control_warning"]

DEFAULT_SETTING = Path("/proc/sys/net/ipv4/tcp_congestion_control")


def congestion_control_warning(setting: Path = DEFAULT_SETTING) -> str:
    """One line to log when new TCP connections here use BBR; "" otherwise (or where unknown)."""
    try:
        name = setting.read_text().strip()
    except OSError:
        return ""
    if not name.startswith("bbr"):
        return ""
    return (
        f"TCP congestion control on this host is {name}: its ProbeRTT phase pauses the bridge's "
        "link for about 200 ms every 10 s while streams keep it busy; for steady latency use a "
        "loss-based one on the robot and cloud machines (sudo sysctl -w "
        "net.ipv4.tcp_congestion_control=cubic)"
    )
