"""One outbound topic's way onto Zenoh: in order, within its flow window, through a bounded backlog.

The graph adapter delivers each message on its own thread. While the topic has nothing waiting
and its :class:`~fogros_dist.net.flow.FlowWindow` is open (always, on a healthy link), the message
is put on Zenoh right there, as before: no thread hop on the hot path. Otherwise it joins the
topic's :class:`~fogros_dist.net.backlog.Backlog` (reliable: the newest is refused when full;
best-effort: the oldest is evicted), and the topic's sender thread puts the backlog on Zenoh as
the window opens. The graph adapter's thread never waits for the link, so its DDS reader never
overflows unseen; whatever the backlog cannot hold is counted (``dropped_backlog``).

Every message carries :data:`ATTACHMENT`: the time the bridge took it from its graph (so latency
includes any wait in the backlog, and the receiving side can replay a burst at the original
pace) and its sequence number, assigned when it is put on Zenoh (so a gap at the receiver is a
message Zenoh or the link lost, never one the backlog dropped).
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import zenoh

from fogros_dist.logs import module_logger
from fogros_dist.net.backlog import Backlog, BacklogLimits
from fogros_dist.net.flow import FlowWindow
from fogros_dist.net.stats import TopicStats

__all__ = ["ATTACHMENT", "BACKLOG_BYTES", "RELIABLE_BACKLOG_MESSAGES", "TopicSender", "backlog_limits"]

_log = module_logger(__name__)

# (time the sending bridge took the message from its graph, ns since the epoch; per-topic
# sequence number from 1), little endian.
ATTACHMENT = struct.Struct("<qQ")

# A reliable topic's backlog holds at least this many messages (more if its history is deeper):
# a few seconds of a typical topic while the link is down or slow.
RELIABLE_BACKLOG_MESSAGES = 64
# No backlog holds more bytes than this (one larger message is still accepted when it is empty).
BACKLOG_BYTES = 32 * 1024 * 1024
# Unconfirmed messages stop counting as in flight after this long: a best-effort one Zenoh
# dropped is never confirmed; a reliable one is only lost with its transport, which a
# reconnection settles, so this is a last resort.
_EXPIRE_BEST_EFFORT_S = 2.0
_EXPIRE_RELIABLE_S = 30.0
# A sender thread waiting for its window to open looks again at least this often.
_RECHECK_S = 0.5


def backlog_limits(*, reliable: bool, depth: int) -> BacklogLimits:
    """The backlog limits of a topic with this QoS."""
    if reliable:
        return BacklogLimits(
            max_messages=max(depth, RELIABLE_BACKLOG_MESSAGES), max_bytes=BACKLOG_BYTES, evict_oldest=False
        )
    return BacklogLimits(max_messages=depth, max_bytes=BACKLOG_BYTES, evict_oldest=True)


class TopicSender:
    """Puts one outbound topic's messages on a Zenoh publisher (see the module doc).

    Args:
        name: the topic name, for logs.
        publisher: the topic's ``zenoh.Publisher``.
        stats: the topic's counters.
        reliable: the topic's reliability (chooses the backlog policy).
        depth: the topic's history depth.
        closing: set when the bridge closes; puts stop.
        clock: seconds, monotonic.
    """

    def __init__(
        self,
        *,
        name: str,
        publisher: Any,
        stats: TopicStats,
        reliable: bool,
        depth: int,
        closing: threading.Event,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self._publisher = publisher
        self._stats = stats
        self._closing = closing
        self._clock = clock
        self._cond = threading.Condition()
        self._backlog: Backlog[tuple[bytes, int]] = Backlog(backlog_limits(reliable=reliable, depth=depth))
        self._window = FlowWindow(expire_s=_EXPIRE_RELIABLE_S if reliable else _EXPIRE_BEST_EFFORT_S)
        self._busy = False
        self._seq = 0
        self._thread: threading.Thread | None = None
        self._warned = False

    @property
    def last_seq(self) -> int:
        """The sequence number of the latest message put on Zenoh."""
        return self._seq

    def offer(self, cdr: bytes) -> None:
        """Send ``cdr`` now if nothing waits and the window is open, else queue it (graph thread)."""
        origin_ns = time.time_ns()
        with self._cond:
            if self._backlog or self._busy or not self._window.is_open(self._clock()):
                self._enqueue(cdr, origin_ns)
                return
            self._busy = True
        try:
            self._put(cdr, origin_ns)
        finally:
            with self._cond:
                self._busy = False
                if self._backlog:
                    self._cond.notify_all()

    def confirmed(self, receiver: str, seq: int) -> None:
        """``receiver`` reports ``seq`` as the latest message of this topic it got."""
        with self._cond:
            self._window.confirmed(receiver, seq, self._clock())
            self._cond.notify_all()

    def settle(self, receiver: str) -> None:
        """``receiver``'s link came back: stop waiting for what it may have lost."""
        with self._cond:
            self._window.settle(receiver, self._clock())
            self._cond.notify_all()

    def forget(self, receiver: str) -> None:
        """``receiver`` is gone: stop waiting for it at all."""
        with self._cond:
            self._window.forget(receiver, self._clock())
            self._cond.notify_all()

    def close(self, timeout: float = 2.0) -> None:
        """Wake the sender thread (``closing`` is set by then) and wait up to ``timeout`` for it
        (a put blocked on a dead link may keep it longer; it is a daemon thread)."""
        with self._cond:
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _enqueue(self, cdr: bytes, origin_ns: int) -> None:
        # Called with the lock held.
        dropped = self._backlog.push((cdr, origin_ns), len(cdr))
        if dropped:
            self._stats.drop_backlog(dropped)
            if not self._warned:
                self._warned = True
                _log.warning(
                    "%s: the link is not keeping up; messages that do not fit in the backlog of %d "
                    "are dropped and counted (dropped_backlog; further ones only counted)",
                    self._name,
                    self._backlog.limits.max_messages,
                )
        self._stats.set_backlog(len(self._backlog))
        if self._thread is None:
            self._thread = threading.Thread(target=self._drain, name=f"send {self._name}", daemon=True)
            self._thread.start()
        self._cond.notify_all()

    def _drain(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closing.is_set():
                        return
                    now = self._clock()
                    if self._backlog and not self._busy and self._window.is_open(now):
                        item = self._backlog.pop()
                        break
                    wait = (
                        None
                        if not self._backlog
                        else min(_RECHECK_S, self._window.retry_in(now) or _RECHECK_S)
                    )
                    self._cond.wait(wait)
                self._busy = True
                self._stats.set_backlog(len(self._backlog))
            try:
                if item is not None:
                    self._put(*item)
            finally:
                with self._cond:
                    self._busy = False

    def _put(self, cdr: bytes, origin_ns: int) -> None:
        # Only the one holding ``_busy`` puts, so sequence numbers go out in order.
        self._seq += 1
        seq = self._seq
        with self._cond:
            self._window.sent(seq, len(cdr), self._clock())
        try:
            self._publisher.put(cdr, attachment=ATTACHMENT.pack(origin_ns, seq))
        except zenoh.ZError as err:
            # Not sent, so not a gap the receiver should count as lost: the number is reused.
            self._seq -= 1
            self._stats.drop_other()
            if not self._closing.is_set():
                _log.warning("Zenoh put on %s failed: %s", self._name, err)
            return
        self._stats.record(len(cdr))
