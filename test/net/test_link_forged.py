"""A stranger's forged sequence number cannot make ``lost`` absurd (plaintext link, no TLS).

A third Zenoh session, linked to the machine bridge like any peer that reaches its port, puts a
valid message on the topic's key with a crafted attachment. On main that set ``lost`` to 4.6e18.
The sanity check stands by itself (TLS, which will refuse strangers, is not involved): the jump is
counted as a reset, and the genuine stream's counting carries on.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import zenoh
from net_test_helpers import DEPLOYMENT, STRING, TIMEOUT, Inbox, Link, string_cdr, wait_for

from fogros_dist.net.bridge import ATTACHMENT, wait_for_peer_bridge
from fogros_dist.net.zenoh_config import build_config
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import BridgeSpec, TopicSpec

CHATTER = TopicSpec(name="/chatter", type=STRING)


def _inbound(link: Link) -> dict[str, object]:
    (entry,) = [t for t in link.machine.bridge.stats.snapshot()["topics"] if t["direction"] == "inbound"]
    return entry


def test_forged_and_wrapped_sequence_numbers_are_resets_not_losses(
    bridge_link: Callable[..., Link], types: MessageTypes
) -> None:
    link = bridge_link(robot_out=[CHATTER], machine_in=[CHATTER])
    inbox = Inbox()
    subscription = link.machine.app.subscribe(CHATTER, inbox)
    publisher = link.robot.app.publisher(CHATTER)
    assert wait_for(lambda: subscription.matched_count() == 1)
    assert wait_for(lambda: publisher.matched_count() == 1)

    def genuine(count: int) -> None:
        for i in range(count):
            publisher.publish(string_cdr(types, f"genuine {i}"))
            inbox.get()

    genuine(20)
    stranger = zenoh.open(
        build_config(connect=(f"tcp/127.0.0.1:{link.port}",), bridge=BridgeSpec(protocol="tcp"))
    )
    try:
        wait_for_peer_bridge(stranger, deployment=DEPLOYMENT, machine="gpu", timeout=TIMEOUT)
        forger = stranger.declare_publisher("chatter", congestion_control=zenoh.CongestionControl.BLOCK)
        assert wait_for(lambda: forger.matching_status.matching)
        for seq in (4_611_686_018_427_387_904, 2**64 - 1):  # main's 4.6e18, and a wrapped counter
            forger.put(string_cdr(types, "forged"), attachment=ATTACHMENT.pack(time.time_ns(), seq))
            assert types.deserialize(STRING, inbox.get()).data == "forged"  # valid, so published
            genuine(10)
    finally:
        stranger.close()
    stats = _inbound(link)
    # Each forged number is one reset, and the genuine sender's next number (going back) another.
    assert (stats["lost"], stats["seq_resets"], stats["messages"]) == (0, 4, 42)
