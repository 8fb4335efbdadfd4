"""A slow link offered three times what it carries: latency stays bounded, counters stay honest.

Both ends of the machine's veth are shaped to 1 Mbit/s (``tc qdisc ... tbf``). The machine
publishes a reliable topic of 4 KB messages at 100 Hz (3.2 Mbit/s) for 10 s. On main the link's
buffers absorbed it all and latency grew to 14 s while the stats said nothing was lost; here the
topic waits in its bounded backlog instead, so latency is bounded by what that backlog and the
flow window hold, and what does not fit is counted, message for message.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from link_fixtures import BridgePair, bridge_pair, netns_link, topic_stats
from netns_link import NetnsLink

from fogros_dist.net.flow import FREE_BYTES, LAG_LIMIT_S
from fogros_dist.net.sender import backlog_limits

pytestmark = pytest.mark.netns

__all__ = ["bridge_pair", "netns_link"]

LINK_BYTES_PER_S = 1_000_000 / 8
SIZE = 4000
RATE = 100.0
COUNT = 1000


def test_latency_is_bounded_by_the_backlog_and_every_drop_is_counted(
    netns_link: NetnsLink, bridge_pair: Callable[..., BridgePair]
) -> None:
    pair = bridge_pair(link=netns_link)
    netns_link.shape(rate="1mbit", latency="200ms")
    publisher = pair.publish(rate=RATE, count=COUNT, size=SIZE)
    pair.go(publisher)
    sent = pair.wait_sent(publisher, timeout=COUNT / RATE + 30)
    pair.received.wait_quiet(expected=sent, quiet_s=5.0, timeout=60.0)
    missed = pair.received.missed(sent)
    latencies = list(pair.received.latencies_s)
    stats = pair.stop()
    out, into = topic_stats(stats["machine"], "outbound"), topic_stats(stats["robot"], "inbound")

    # Offered 3.2x what the link carries: most messages cannot go, and each is counted once.
    assert len(missed) > sent / 2
    assert out["dropped_backlog"] + into["lost"] + into["dropped_history"] == len(missed), (out, into)
    assert into["messages"] == sent - len(missed)
    assert out["backlog_peak"] == backlog_limits(reliable=True, depth=pair.topic.qos.depth).max_messages

    # What may wait ahead of a message: the whole backlog, plus what the flow window lets be in
    # flight (at most LAG_LIMIT_S old, or FREE_BYTES): drained at the link's rate. Twice that,
    # plus a second, is a generous bound; main exceeded it within the first few seconds.
    backlog = backlog_limits(reliable=True, depth=pair.topic.qos.depth).max_messages * SIZE
    bound = 2 * (backlog / LINK_BYTES_PER_S + LAG_LIMIT_S + FREE_BYTES / LINK_BYTES_PER_S) + 1.0
    assert max(latencies) < bound, (max(latencies), bound)
