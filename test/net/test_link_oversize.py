"""Messages above ``max_message_bytes`` are dropped and counted on both sides; memory stays flat.

Two bridge processes on loopback with a 1 MiB limit (the default is 64 MiB). On the sending side a
40 MB message from the robot's graph is dropped before it is put on Zenoh. On the receiving side a
stranger's Zenoh session puts, straight at the machine bridge, one message just over the limit
(counted by the bridge, never copied out of Zenoh) and one of 40 MB (discarded by Zenoh itself,
whose limit the bridge sets just above its own, before it takes that memory). On main a 52 MB
message went through and a bridge's memory ratcheted from 51 to 201 MB. Each bridge's resident
memory is read from /proc/<pid>/status.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import zenoh
from link_app import STRING, payload_text
from link_fixtures import BridgePair, bridge_pair, rss_kib, topic_stats
from net_test_helpers import DEPLOYMENT, TIMEOUT, wait_for

from fogros_dist.errors import ConfigError
from fogros_dist.net.bridge import ATTACHMENT, wait_for_peer_bridge
from fogros_dist.net.zenoh_config import build_config, config_values, zenoh_message_limit
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import BridgeSpec

__all__ = ["bridge_pair"]

LIMIT = 1024 * 1024
HUGE = 40_000_000
MB = 1024


def _settled_rss(pid: int) -> int:
    """RSS after the process has had a moment to free what it was handed (KiB)."""
    time.sleep(1.0)
    return rss_kib(pid)


def test_oversize_messages_are_dropped_counted_and_memory_stays_bounded(
    bridge_pair: Callable[..., BridgePair], types: MessageTypes
) -> None:
    pair = bridge_pair(link=None, bridge=BridgeSpec(protocol="tcp", max_message_bytes=LIMIT), sender="robot")
    publisher = pair.publish(rate=1.0, count=1, size=100)
    pair.go(publisher)  # one small message: the path works
    assert wait_for(lambda: pair.received.count() == 1, timeout=TIMEOUT)
    before = {"robot": _settled_rss(pair.robot.pid), "machine": _settled_rss(pair.machine.pid)}

    # Sending side: three 40 MB messages from the robot's graph.
    for _ in range(3):
        big = pair.publish(rate=1.0, count=1, size=HUGE)
        pair.go(big)
        pair.wait_sent(big, timeout=60)

    # Receiving side: a stranger puts straight at the machine bridge.
    stranger = zenoh.open(build_config(connect=(pair.endpoint,), bridge=BridgeSpec(protocol="tcp")))
    try:
        wait_for_peer_bridge(stranger, deployment=DEPLOYMENT, machine="gpu", timeout=TIMEOUT)
        put = stranger.declare_publisher(
            pair.topic.name.lstrip("/"), congestion_control=zenoh.CongestionControl.BLOCK
        )
        assert wait_for(lambda: put.matching_status.matching)
        cls = types.message_class(STRING)
        just_over = types.serialize(STRING, cls(data=payload_text(10_000, LIMIT + 1000)))
        assert LIMIT < len(just_over) < LIMIT + 64 * 1024  # between our limit and Zenoh's
        put.put(just_over, attachment=ATTACHMENT.pack(time.time_ns(), 2))
        for _ in range(3):
            put.put(b"\x00" * HUGE, attachment=ATTACHMENT.pack(time.time_ns(), 3))
        ok = types.serialize(STRING, cls(data=payload_text(10_001, 100)))
        put.put(ok)  # still forwarded afterwards
        assert wait_for(lambda: pair.received.count() == 2, timeout=TIMEOUT)
    finally:
        stranger.close()
    after = {"robot": _settled_rss(pair.robot.pid), "machine": _settled_rss(pair.machine.pid)}

    stats = pair.stop()
    out, into = topic_stats(stats["robot"], "outbound"), topic_stats(stats["machine"], "inbound")
    assert (out["dropped_oversize"], out["messages"]) == (3, 1)
    assert (into["dropped_oversize"], into["messages"]) == (1, 2)
    assert sorted(pair.received.seqs) == [1, 10_001]
    # The machine bridge never held a 40 MB message. The robot bridge's DDS reader received each
    # of the three (Cyclone reassembles a sample before anyone can look at its size) and keeps
    # about one message's worth of receive buffers for reuse (measured: +43 MB): it must not
    # ratchet, as main did (51 -> 201 MB for one 52 MB message).
    assert after["machine"] - before["machine"] < 20 * MB, (before, after)
    assert after["robot"] - before["robot"] < 1.5 * HUGE / 1024, (before, after)


def test_the_limit_is_checked_and_zenohs_own_limit_matches_it() -> None:
    with pytest.raises(ConfigError, match=r"max_message_bytes 10 is out of range: use 1024"):
        BridgeSpec(max_message_bytes=10)
    values = config_values(
        listen=("tcp/127.0.0.1:7447",), bridge=BridgeSpec(protocol="tcp", max_message_bytes=LIMIT)
    )
    assert values["transport/link/rx/max_message_size"] == zenoh_message_limit(LIMIT) < LIMIT + 128 * 1024
    assert config_values(listen=("tcp/127.0.0.1:7447",), bridge=BridgeSpec(protocol="tcp"))[
        "transport/link/rx/max_message_size"
    ] == zenoh_message_limit(64 * 1024 * 1024)
