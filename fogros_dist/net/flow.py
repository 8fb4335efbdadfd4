"""End-to-end flow control for one outbound topic: how much is on the way to the receiving bridges.

Zenoh's queues and the kernel's socket buffers hold megabytes, which on a slow link is a minute
of data: a sender that fills them makes every later message that much older on arrival. So each
receiving bridge reports, a few times a second, the latest sequence number it got of each topic
(:mod:`fogros_dist.net.control` carries the reports), and the sender keeps no more unconfirmed
than about :data:`MAX_LAG_S` of what the slowest receiver has been confirming per second (its
delivery rate, measured over the last :data:`RATE_WINDOW_S`). Beyond that the topic's messages wait
in its bounded backlog (:mod:`fogros_dist.net.sender`). What is in flight therefore never holds
much more than a second of the link's capacity, whatever the buffers below could take. Up to
:data:`FREE_BYTES` in flight are always allowed (so a short outage of a small-message topic is
buffered by the link itself and delivered in full when it returns), and so is one message when
nothing is in flight; and nothing more goes while the oldest unconfirmed message is older than
:data:`LAG_LIMIT_S` (the link slowed down after the rate was measured).

A receiver that never reported (a plain Zenoh subscriber) does not slow anyone down. A receiver
whose link came back is *settled*: everything sent before counts as done for it (what the
broken transport lost shows up as a gap at the receiver). Messages unconfirmed after
``expire_s`` stop counting as in flight (a best-effort message Zenoh dropped is never
confirmed on its own).
"""

from __future__ import annotations

from collections import deque

__all__ = ["FREE_BYTES", "LAG_LIMIT_S", "MAX_LAG_S", "RATE_WINDOW_S", "FlowWindow"]

# In flight this much is always allowed: a short outage of a small-message topic is then
# buffered by Zenoh and TCP and delivered in full when the link returns.
FREE_BYTES = 64 * 1024
# Beyond FREE_BYTES, at most this many seconds of the measured delivery rate are in flight.
MAX_LAG_S = 1.0
# ... and nothing more goes while the oldest unconfirmed message is older than this.
LAG_LIMIT_S = 2.0
# The delivery rate is what receivers confirmed over this many seconds.
RATE_WINDOW_S = 2.0
# However small the messages, this many unconfirmed ones close the window (bounds memory).
_MAX_PENDING = 65_536


class FlowWindow:
    """Unconfirmed messages of one outbound topic; not thread-safe (the route's lock guards it).

    Args:
        expire_s: seconds after which an unconfirmed message no longer counts as in flight.
        min_span_s: the shortest span a delivery rate is measured over (about the receivers'
            report period: one report's bytes arrived within it).
    """

    def __init__(self, *, expire_s: float, min_span_s: float = 0.05) -> None:
        self._expire_s = expire_s
        self._min_span_s = min_span_s
        self._pending: deque[tuple[int, float, int]] = deque()  # (seq, sent at, bytes)
        self._pending_bytes = 0
        self._receivers: dict[str, int] = {}  # receiving bridge -> latest seq it confirmed
        self._last_sent = 0
        self._delivered: deque[tuple[float, int]] = deque()  # (confirmed at, bytes)
        self._delivered_bytes = 0

    @property
    def receivers(self) -> tuple[str, ...]:
        """The receiving bridges that have confirmed something."""
        return tuple(self._receivers)

    @property
    def in_flight_bytes(self) -> int:
        """Bytes sent and not yet confirmed by the slowest receiver."""
        return self._pending_bytes

    def lag(self, now: float) -> float:
        """Seconds since the oldest unconfirmed message was sent (0 when none)."""
        return now - self._pending[0][1] if self._pending else 0.0

    def delivery_rate(self, now: float) -> float:
        """Bytes per second the slowest receiver confirmed over the last RATE_WINDOW_S."""
        delivered = self._delivered
        while delivered and now - delivered[0][0] > RATE_WINDOW_S:
            self._delivered_bytes -= delivered.popleft()[1]
        if not delivered:
            return 0.0
        return self._delivered_bytes / max(self._min_span_s, now - delivered[0][0] + self._min_span_s)

    def sent(self, seq: int, nbytes: int, now: float) -> None:
        """Record that message ``seq`` of ``nbytes`` was put on Zenoh at ``now``."""
        self._last_sent = seq
        if self._receivers:
            self._pending.append((seq, now, nbytes))
            self._pending_bytes += nbytes

    def confirmed(self, receiver: str, seq: int, now: float) -> None:
        """``receiver`` reports ``seq`` as the latest message it got (numbers beyond what was
        sent, left from an earlier sender process, count as everything sent)."""
        seq = min(seq, self._last_sent)
        self._receivers[receiver] = max(seq, self._receivers.get(receiver, 0))
        self._trim(now, measure=True)

    def settle(self, receiver: str, now: float) -> None:
        """``receiver``'s link came back: what was sent before no longer waits for it."""
        if receiver in self._receivers:
            self._receivers[receiver] = self._last_sent
            self._trim(now, measure=False)

    def forget(self, receiver: str, now: float) -> None:
        """``receiver`` is gone for good (its bridge said goodbye, or stayed away too long)."""
        if self._receivers.pop(receiver, None) is not None:
            if not self._receivers:
                self._pending.clear()
                self._pending_bytes = 0
            self._trim(now, measure=False)

    def is_open(self, now: float) -> bool:
        """Whether the next message may be put on Zenoh now."""
        pending = self._pending
        while pending and now - pending[0][1] > self._expire_s:
            self._pop()
        if not pending or self._pending_bytes <= FREE_BYTES:
            return True
        if len(pending) >= _MAX_PENDING or now - pending[0][1] > LAG_LIMIT_S:
            return False
        return self._pending_bytes <= self.delivery_rate(now) * MAX_LAG_S

    def retry_in(self, now: float) -> float:
        """Seconds until a closed window can open without a confirmation (its oldest message
        expires); a confirmation opens it sooner."""
        if not self._pending:
            return 0.0
        return max(0.0, self._pending[0][1] + self._expire_s - now)

    def _trim(self, now: float, *, measure: bool) -> None:
        if not self._receivers:
            return
        slowest = min(self._receivers.values())
        confirmed = 0
        while self._pending and self._pending[0][0] <= slowest:
            confirmed += self._pop()
        if measure and confirmed:
            self._delivered.append((now, confirmed))
            self._delivered_bytes += confirmed

    def _pop(self) -> int:
        _, _, nbytes = self._pending.popleft()
        self._pending_bytes -= nbytes
        return nbytes
