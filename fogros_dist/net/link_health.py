"""Is each peer bridge reachable, how often was it not, for how long: one line per change.

A bridge hears from each peer bridge several times a second (its heartbeat, and its reports of
what it received: :mod:`fogros_dist.net.control`). A peer is *connected* while it has been heard
within :data:`STALL_S`. It is disconnected when it goes silent for longer (a cut cable, a dead
Wi-Fi: Zenoh's own transport only gives up after its 10 s lease) or when its bridge token goes
(the transport closed). Each disconnect is logged as one line, and so is each reconnect, with
the outage's duration: from the last time the peer was heard before it to the first time after.
A peer that says goodbye (its bridge stops) is not a disconnect. A link so congested that
nothing gets through for STALL_S looks, and is reported, like an outage.

The counts are in the bridge's stats (``link``), which ``fogros-dist list`` and the demo show.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fogros_dist.logs import module_logger

__all__ = ["FORGET_S", "HEARTBEAT_S", "STALL_S", "LinkMonitor"]

_log = module_logger(__name__)

# How often a bridge says it is alive.
HEARTBEAT_S = 0.25
# Silence this long is an outage: eight heartbeats, and more than the second that flow control
# lets data wait in the link ahead of them (flow.MAX_LAG_S).
STALL_S = 2.0
# A bridge token that goes this long before its goodbye arrives is a closed transport.
_GOODBYE_GRACE_S = 0.5
# A peer away this long is forgotten by flow control (it no longer holds back other receivers).
FORGET_S = 60.0


@dataclass
class _Peer:
    connected: bool = False
    heard_at: float = 0.0
    disconnects: int = 0
    down_at: float | None = None  # when the current outage was noticed
    last_outage_s: float | None = None
    outage_ended_at: float = 0.0
    left: bool = False
    forgotten: bool = False
    token_gone_at: float | None = None


class LinkMonitor:
    """The link state of every peer bridge of one bridge; every method is thread-safe.

    Args:
        own: this bridge's machine name (never a peer of itself).
        stall_s: see :data:`STALL_S`.
        forget_s: see :data:`FORGET_S`.
        on_restored: called with a peer's name when its link comes back (after the line is logged).
        on_gone: called with a peer's name when it said goodbye or stayed away ``forget_s``.
        clock: seconds, monotonic (a parameter so tests can move time).
    """

    def __init__(
        self,
        *,
        own: str,
        stall_s: float = STALL_S,
        forget_s: float = FORGET_S,
        on_restored: Callable[[str], None] | None = None,
        on_gone: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._own = own
        self._stall_s = stall_s
        self._forget_s = forget_s
        self._on_restored = on_restored
        self._on_gone = on_gone
        self._clock = clock
        self._lock = threading.Lock()
        self._peers: dict[str, _Peer] = {}

    def heard(self, peer: str) -> None:
        """``peer`` was heard from just now (a heartbeat, a report)."""
        if peer == self._own:
            return
        now = self._clock()
        restored: float | None = None
        with self._lock:
            state = self._peers.setdefault(peer, _Peer())
            if state.left:
                # It stopped and came back (a restarted bridge): a fresh start, not an outage.
                _log.info("peer bridge %s is back", peer)
                state.left = False
                state.connected = False
                state.down_at = None
            state.forgotten = False
            state.token_gone_at = None
            if not state.connected:
                if state.down_at is not None:
                    restored = now - state.heard_at
                    state.last_outage_s = restored
                    state.outage_ended_at = now
                    state.down_at = None
                else:
                    _log.info("link to peer bridge %s is up", peer)
                state.connected = True
            state.heard_at = now
            count = state.disconnects
        if restored is not None:
            _log.warning(
                "link to peer bridge %s restored after a %.1f s outage (disconnect #%d)",
                peer,
                restored,
                count,
            )
            if self._on_restored is not None:
                self._on_restored(peer)

    def transport_closed(self, peer: str) -> None:
        """``peer``'s bridge token went away: its transport closed, unless a goodbye follows
        within :data:`_GOODBYE_GRACE_S` (the two may arrive in either order)."""
        now = self._clock()
        with self._lock:
            state = self._peers.get(peer)
            if state is not None and not state.left:
                state.token_gone_at = now

    def said_goodbye(self, peer: str) -> None:
        """``peer``'s bridge is stopping: not an outage."""
        with self._lock:
            state = self._peers.setdefault(peer, _Peer())
            if state.left:
                return
            state.left = True
            state.connected = False
            state.down_at = None
            state.token_gone_at = None
        _log.info("peer bridge %s stopped", peer)
        if self._on_gone is not None:
            self._on_gone(peer)

    def check(self) -> None:
        """Declare silent peers disconnected, and forget long-gone ones (call it a few times a
        second)."""
        now = self._clock()
        gone: list[str] = []
        with self._lock:
            for peer, state in self._peers.items():
                gone_at = state.token_gone_at
                if state.connected and gone_at is not None and now - gone_at > _GOODBYE_GRACE_S:
                    silent = gone_at - state.heard_at
                    self._lose(peer, state, now, f"its transport closed after {silent:.1f} s of silence")
                elif state.connected and now - state.heard_at > self._stall_s:
                    self._lose(peer, state, now, f"nothing heard for {now - state.heard_at:.1f} s")
                elif (
                    not state.connected
                    and not state.left
                    and not state.forgotten
                    and state.down_at is not None
                    and now - state.heard_at > self._forget_s
                ):
                    state.forgotten = True
                    gone.append(peer)
        for peer in gone:
            _log.warning(
                "peer bridge %s unreachable for %.0f s: no longer waiting for it", peer, self._forget_s
            )
            if self._on_gone is not None:
                self._on_gone(peer)

    def snapshot(self) -> dict[str, Any]:
        """The ``link`` section of the bridge's stats (see :mod:`fogros_dist.net.stats`)."""
        now = self._clock()
        with self._lock:
            peers = {name: _peer_snapshot(state, now) for name, state in sorted(self._peers.items())}
            active = [p for p in self._peers.values() if not p.left]
            latest = max(
                (p for p in self._peers.values() if p.last_outage_s is not None),
                key=lambda p: p.outage_ended_at,
                default=None,
            )
        return {
            "connected": bool(active) and all(p.connected for p in active),
            "disconnects": sum(p["disconnects"] for p in peers.values()),
            "last_outage_s": None if latest is None else round(latest.last_outage_s or 0.0, 3),
            "peers": peers,
        }

    def _lose(self, peer: str, state: _Peer, now: float, why: str) -> None:
        # Called with the lock held.
        state.connected = False
        state.down_at = now
        state.disconnects += 1
        _log.warning("link to peer bridge %s lost: %s (disconnect #%d)", peer, why, state.disconnects)


def _peer_snapshot(state: _Peer, now: float) -> dict[str, Any]:
    return {
        "connected": state.connected,
        "disconnects": state.disconnects,
        "last_outage_s": None if state.last_outage_s is None else round(state.last_outage_s, 3),
        "down_for_s": round(now - state.heard_at, 3) if state.down_at is not None else None,
        "stopped": state.left,
        "last_heard_s_ago": round(now - state.heard_at, 3) if state.heard_at else None,
    }
