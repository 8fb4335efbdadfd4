"""A cut link between a machine (its own network namespace) and the robot: 3 s and 12 s outages.

Real bridge processes on both ends of a veth pair; the link goes down with ``ip link set ... down``
and comes back. A publisher on the machine sends numbered messages of a reliable topic at 50 Hz;
a subscriber on the robot's graph records which numbers it got. What it missed must equal what the
bridges counted, message for message, and each outage appears as one "lost" and one "restored"
line, with its duration, on both bridges.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from link_fixtures import BridgePair, bridge_pair, netns_link, topic_stats
from netns_link import NetnsLink

pytestmark = pytest.mark.netns

__all__ = ["bridge_pair", "netns_link"]

RATE = 50.0


def _outage(pair: BridgePair, link: NetnsLink, *, count: int, cut_at: float, cut_for: float) -> int:
    publisher = pair.publish(rate=RATE, count=count)
    pair.go(publisher)
    time.sleep(cut_at)
    link.down()
    time.sleep(cut_for)
    link.up()
    sent = pair.wait_sent(publisher, timeout=count / RATE + 30)
    # Zenoh reconnects within seconds, TCP resends what it held: wait until it all arrived.
    pair.received.wait_quiet(expected=sent, quiet_s=5.0, timeout=60.0)
    return sent


def _outage_lines(log: str, peer: str) -> list[float]:
    """The outage durations of every "restored" line, after checking a "lost" line precedes it."""
    lost = re.findall(rf"link to peer bridge {peer} lost: .* \(disconnect #(\d+)\)", log)
    restored = re.findall(rf"link to peer bridge {peer} restored after a ([0-9.]+) s outage", log)
    assert len(lost) == len(restored), log
    return [float(d) for d in restored]


def _missed_equals_counted(pair: BridgePair, sent: int) -> list[int]:
    missed = pair.received.missed(sent)
    stats = pair.stop()
    out, into = topic_stats(stats["machine"], "outbound"), topic_stats(stats["robot"], "inbound")
    counted = (
        out["dropped_backlog"]
        + out["dropped_oversize"]
        + out["dropped_other"]
        + into["lost"]
        + into["dropped_history"]
        + into["dropped_malformed"]
        + into["dropped_oversize"]
        + into["dropped_other"]
    )
    assert into["seq_resets"] == 0
    assert counted == len(missed), (out, into)
    assert into["messages"] == sent - len(missed)
    for side in ("machine", "robot"):
        # The final stats: written after the peer said goodbye, so it shows as stopped.
        link = stats[side]["link"]
        assert link["disconnects"] == 1, link
        assert link["last_outage_s"] is not None, link
    return missed


def test_a_3_s_outage_loses_nothing_and_is_logged_with_its_duration(
    netns_link: NetnsLink, bridge_pair: Callable[..., BridgePair]
) -> None:
    pair = bridge_pair(link=netns_link)
    sent = _outage(pair, netns_link, count=400, cut_at=2.0, cut_for=3.0)
    # 150 small messages fit in what Zenoh and TCP buffer: all of them arrive, and the burst is
    # replayed at a pace the subscriber's depth-10 history absorbs (main delivered 14 of 150).
    missed = _missed_equals_counted(pair, sent)
    assert missed == []
    assert sorted(pair.received.seqs) == list(range(1, sent + 1))
    for side, peer in (("machine", "robot"), ("robot", "gpu")):
        (duration,) = _outage_lines(pair.log(side), peer)
        # From the last message heard before the cut to the first after: the cut, plus up to one
        # TCP retransmission backoff (generous).
        assert 2.9 <= duration <= 3.0 + 8.0, pair.log(side)


def test_a_12_s_outage_outlives_zenohs_lease_and_the_loss_is_counted_exactly(
    netns_link: NetnsLink, bridge_pair: Callable[..., BridgePair]
) -> None:
    pair = bridge_pair(link=netns_link)
    sent = _outage(pair, netns_link, count=1200, cut_at=2.0, cut_for=12.0)
    missed = _missed_equals_counted(pair, sent)
    # Messages sent after the link returned arrive again.
    assert max(pair.received.seqs) == sent
    assert len(missed) < sent
    for side, peer in (("machine", "robot"), ("robot", "gpu")):
        (duration,) = _outage_lines(pair.log(side), peer)
        assert 11.9 <= duration <= 12.0 + 10.0, pair.log(side)
