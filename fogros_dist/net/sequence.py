"""Sanity-checked sequence numbers: how many messages of a topic a receiving bridge never got.

The sending bridge numbers each message of a topic it puts on Zenoh (1, 2, 3, ... per bridge
process). The receiving side counts a gap as loss only when the jump is one the sender can
really have made: at most :data:`SLACK` plus :data:`RATE_FACTOR` times the messages the topic
has been arriving at per second, times the seconds since the last one. Anything else, a number
that goes back (the sending bridge restarted and counts from 1 again), a repeat, or a jump far
ahead (a stranger's forged attachment, a corrupted one), is a *reset*: counted apart, adding
nothing to the loss, and counting starts afresh from that number. A forged number therefore
costs at most two resets (the forged one, and the genuine sender's next one, which then goes
back), never an absurd loss.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RATE_FACTOR", "SLACK", "SequenceCheck", "SequenceTracker"]

# A gap this large is always plausible (a few seconds of a fast topic): losses this small are
# counted even before the topic's rate is known.
SLACK = 1024
# How much faster than its average so far a topic may have run while nothing arrived.
RATE_FACTOR = 4.0


@dataclass(frozen=True)
class SequenceCheck:
    """What one sequence number says: ``lost`` messages before it, or a ``reset``."""

    lost: int = 0
    reset: bool = False


class SequenceTracker:
    """Checks the sequence numbers of one topic as they arrive; not thread-safe (one per route,
    called from that route's receiving thread).

    Args:
        clock: seconds, monotonic (a parameter so tests can move time).
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last = 0
        self._since = 0.0  # when counting (re)started
        self._count = 0  # messages seen since then
        self._last_at = 0.0

    @property
    def last(self) -> int:
        """The latest accepted sequence number (0 before the first)."""
        return self._last

    def observe(self, seq: int) -> SequenceCheck:
        """Account for message ``seq``; returns how many messages went missing just before it,
        or that it is a reset (see the module doc)."""
        now = self._clock()
        last = self._last
        if last == 0:
            self._restart(seq, now)
            return SequenceCheck()
        if seq <= last or seq - last - 1 > self.plausible_gap(now):
            self._restart(seq, now)
            return SequenceCheck(reset=True)
        self._last = seq
        self._count += 1
        self._last_at = now
        return SequenceCheck(lost=seq - last - 1)

    def plausible_gap(self, now: float) -> int:
        """The largest gap accepted as loss at ``now``: SLACK plus RATE_FACTOR x the average rate
        since counting started x the seconds since the last message."""
        elapsed = max(now - self._since, 1.0)
        rate = self._count / elapsed
        return SLACK + int(RATE_FACTOR * rate * max(0.0, now - self._last_at))

    def _restart(self, seq: int, now: float) -> None:
        self._last = seq
        self._since = now
        self._count = 1
        self._last_at = now
