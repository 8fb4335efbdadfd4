"""Replaying a burst into a DDS history at a pace its subscribers can take.

When a link comes back after an outage, everything it buffered arrives at once. Published on the
graph as fast as it comes (150 messages in under 2 ms), it overruns every subscriber's history: a
reliable KeepLast(10) reader keeps the last 10 of them and DDS drops the rest without telling
anyone (measured here: a Python subscriber on loopback took 38 of 150). So an inbound topic may
run ahead of the pace at which the sending bridge originally took the messages from its graph
(the time in each message's attachment) by at most ``depth`` messages, and otherwise goes at
:data:`SPEEDUP` times that pace: a subscriber that kept up with the original publisher keeps up
with the replay, and a 3 s outage is caught up in 0.75 s. In steady state messages arrive at
their original pace and nothing waits. A single wait is capped (:data:`MAX_WAIT_S`) so that a
forged time cannot stall a topic.
"""

from __future__ import annotations

from collections import deque

__all__ = ["MAX_WAIT_S", "SPEEDUP", "ReplayPacer"]

# How much faster than they were first published a burst is replayed.
SPEEDUP = 4.0
# The longest one message waits for its turn, whatever its attachment claims.
MAX_WAIT_S = 0.5


class ReplayPacer:
    """Pace of one inbound topic; not thread-safe (the route's lock guards it).

    Args:
        depth: the topic's history depth: how many messages may go out at once.
        speedup: see :data:`SPEEDUP`.
    """

    def __init__(self, *, depth: int, speedup: float = SPEEDUP) -> None:
        self._speedup = speedup
        # (original time ns, published at s) of the latest ``depth`` messages published.
        self._recent: deque[tuple[int, float]] = deque(maxlen=max(1, depth))

    def wait(self, origin_ns: int | None, now: float) -> float:
        """Seconds message with original time ``origin_ns`` must wait before it is published."""
        if origin_ns is None or len(self._recent) < (self._recent.maxlen or 1):
            return 0.0
        first_origin, first_published = self._recent[0]
        span = (origin_ns - first_origin) / 1e9
        if span <= 0:
            return 0.0  # times that go back: a restarted sender, nothing to pace against
        return min(MAX_WAIT_S, max(0.0, first_published + span / self._speedup - now))

    def published(self, origin_ns: int | None, now: float) -> None:
        """Record that the message was published at ``now``."""
        if origin_ns is not None:
            self._recent.append((origin_ns, now))
