"""One inbound topic's way onto the graph: published as it arrives, bursts replayed at a safe pace.

A message that arrives while nothing of its topic waits, and that its
:class:`~fogros_dist.net.pacing.ReplayPacer` lets through, is published right away on the Zenoh
thread that received it (the hot path, as before). A burst (what a link buffered during an outage)
waits in the topic's replay queue and the topic's delivery thread publishes it at the pacer's
speed, so no subscriber's history is overrun by it. The Zenoh thread itself never waits: Zenoh's
channel to it is bounded, and a blocked one would stall the whole session's receiving. What the
replay queue cannot hold is counted (``dropped_history``): reliable topics refuse the newest,
best-effort ones evict the oldest.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from fogros_dist.net.backlog import Backlog, BacklogLimits
from fogros_dist.net.pacing import ReplayPacer
from fogros_dist.net.stats import TopicStats

__all__ = ["REPLAY_BYTES", "REPLAY_MESSAGES", "TopicDelivery"]

# How much of a burst may wait for its turn: more than a sender can have had in flight and in its
# backlog (flow.py, sender.py), so that a reliable topic's burst is replayed whole.
REPLAY_MESSAGES = 4096
REPLAY_BYTES = 64 * 1024 * 1024

# publish(cdr, latency in ns or None): publishes on the graph and counts (or counts the failure).
PublishFn = Callable[[bytes, int | None], None]


class TopicDelivery:
    """Publishes one inbound topic's messages on the graph, in order (see the module doc).

    Args:
        name: the topic name, for the delivery thread's name.
        publish: publishes one message and updates the topic's counters.
        stats: the topic's counters (for ``dropped_history``).
        reliable: the topic's reliability (chooses the replay queue's policy).
        depth: the topic's history depth (how far a burst may run ahead of the original pace).
        closing: set when the bridge closes; publishing stops.
        clock: seconds, monotonic.
    """

    def __init__(
        self,
        *,
        name: str,
        publish: PublishFn,
        stats: TopicStats,
        reliable: bool,
        depth: int,
        closing: threading.Event,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self._publish = publish
        self._stats = stats
        self._closing = closing
        self._clock = clock
        self._cond = threading.Condition()
        self._pacer = ReplayPacer(depth=depth)
        self._queue: Backlog[tuple[bytes, int | None]] = Backlog(
            BacklogLimits(max_messages=REPLAY_MESSAGES, max_bytes=REPLAY_BYTES, evict_oldest=not reliable)
        )
        self._busy = False
        self._thread: threading.Thread | None = None

    def offer(self, cdr: bytes, origin_ns: int | None, received_ns: int) -> None:
        """Publish ``cdr`` now or after the burst it belongs to (Zenoh thread; never waits)."""
        now = self._clock()
        with self._cond:
            if self._queue or self._busy or self._pacer.wait(origin_ns, now) > 0:
                self._enqueue(cdr, origin_ns)
                return
            self._busy = True
            self._pacer.published(origin_ns, now)
        try:
            self._publish(cdr, None if origin_ns is None else received_ns - origin_ns)
        finally:
            with self._cond:
                self._busy = False
                if self._queue:
                    self._cond.notify_all()

    def close(self, timeout: float = 2.0) -> None:
        """Wake the delivery thread (``closing`` is set by then) and wait up to ``timeout``."""
        with self._cond:
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _enqueue(self, cdr: bytes, origin_ns: int | None) -> None:
        # Called with the lock held.
        self._stats.drop_history(self._queue.push((cdr, origin_ns), len(cdr)))
        if self._thread is None:
            self._thread = threading.Thread(target=self._drain, name=f"deliver {self._name}", daemon=True)
            self._thread.start()
        self._cond.notify_all()

    def _drain(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closing.is_set():
                        return
                    wait = None
                    if self._queue and not self._busy:
                        now = self._clock()
                        head = self._queue.peek()
                        wait = self._pacer.wait(head[1], now)
                        if wait <= 0:
                            self._queue.pop()
                            cdr, origin_ns = head
                            self._pacer.published(origin_ns, now)
                            break
                    self._cond.wait(wait)
                self._busy = True
            try:
                latency = None if origin_ns is None else time.time_ns() - origin_ns
                self._publish(cdr, latency)
            finally:
                with self._cond:
                    self._busy = False
