"""The bridges' own traffic beside the topics: heartbeats, goodbyes and reception reports.

Each bridge of a deployment puts, on Zenoh (express, above data priority, dropped rather than
queued when the link is congested: the next one supersedes it):

* ``@fogros/<deployment>/<machine>/link``: ``alive`` every :data:`~fogros_dist.net.link_health.HEARTBEAT_S`
  seconds, and ``bye`` when it stops;
* ``@fogros/<deployment>/<machine>/received``: the latest sequence number it got of each inbound
  topic, as JSON ``{"<topic>": <seq>}``, every :data:`REPORT_S` seconds when something changed and
  every second regardless.

and hears the other bridges' (its own are never delivered back: ``Locality.REMOTE``). Heartbeats
feed the :class:`~fogros_dist.net.link_health.LinkMonitor`; reports feed each outbound topic's
flow window (:mod:`fogros_dist.net.flow`); the bridge tokens
(``@fogros/<deployment>/<machine>/bridge``) going away tell the monitor a transport closed. A
malformed report (a stranger's) is ignored.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import zenoh

from fogros_dist.logs import module_logger
from fogros_dist.net.link_health import HEARTBEAT_S, LinkMonitor

__all__ = ["REPORT_S", "ControlChannel"]

_log = module_logger(__name__)

# How often a bridge reports what it received (when something did): the sender's flow window
# sees the link's state this much late at most.
REPORT_S = 0.05
_FULL_REPORT_S = 1.0
_ALIVE, _BYE = b"alive", b"bye"
# A report larger than this is not one of ours.
_MAX_REPORT_BYTES = 256 * 1024

# on_report(receiving bridge, topic, latest seq it got)
ReportFn = Callable[[str, str, int], None]


class ControlChannel:
    """Heartbeats, goodbyes and reports of one bridge (see the module doc).

    Args:
        session: the bridge's Zenoh session.
        prefix: ``@fogros/<deployment>``.
        machine: this bridge's machine name.
        monitor: told whenever a peer is heard, says goodbye or loses its transport.
        received: returns ``{inbound topic: latest seq received}`` for the next report.
        on_report: called for each topic of each peer's report.
        closing: set when the bridge closes.
    """

    def __init__(
        self,
        *,
        session: zenoh.Session,
        prefix: str,
        machine: str,
        monitor: LinkMonitor,
        received: Callable[[], Mapping[str, int]],
        on_report: ReportFn,
        closing: threading.Event,
    ) -> None:
        self._session = session
        self._prefix = prefix
        self._machine = machine
        self._monitor = monitor
        self._received = received
        self._on_report = on_report
        self._closing = closing
        self._declared: list[Any] = []
        self._link_pub: Any = None
        self._report_pub: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Declare the publishers and subscribers and start the heartbeat thread.

        Raises:
            zenoh.ZError: Zenoh refused a declaration.
        """
        options: dict[str, Any] = {
            "congestion_control": zenoh.CongestionControl.DROP,
            "priority": zenoh.Priority.INTERACTIVE_HIGH,
            "express": True,
            "allowed_destination": zenoh.Locality.REMOTE,
        }
        own = f"{self._prefix}/{self._machine}"
        self._link_pub = self._session.declare_publisher(f"{own}/link", **options)
        self._report_pub = self._session.declare_publisher(f"{own}/received", **options)
        self._declared += [self._link_pub, self._report_pub]
        remote = {"allowed_origin": zenoh.Locality.REMOTE}
        self._declared.append(
            self._session.declare_subscriber(f"{self._prefix}/*/link", _logged(self._on_link), **remote)
        )
        self._declared.append(
            self._session.declare_subscriber(
                f"{self._prefix}/*/received", _logged(self._on_received), **remote
            )
        )
        self._declared.append(
            self._session.liveliness().declare_subscriber(f"{self._prefix}/*/bridge", _logged(self._on_token))
        )
        self._thread = threading.Thread(target=self._run, name="bridge-link", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Say goodbye, stop the thread and withdraw every declaration (``closing`` is set)."""
        if self._link_pub is not None:
            try:
                self._link_pub.put(_BYE)
            except zenoh.ZError as err:
                _log.debug("goodbye not sent: %s", err)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        for entity in reversed(self._declared):
            try:
                entity.undeclare()
            except zenoh.ZError as err:  # the session may be closed already
                _log.debug("undeclare failed: %s", err)
        self._declared.clear()

    def _run(self) -> None:
        last_alive = last_full = 0.0
        reported: dict[str, int] = {}
        while not self._closing.wait(REPORT_S):
            now = time.monotonic()
            try:
                self._monitor.check()
                if now - last_alive >= HEARTBEAT_S:
                    last_alive = now
                    self._link_pub.put(_ALIVE)
                current = dict(self._received())
                if current and (current != reported or now - last_full >= _FULL_REPORT_S):
                    self._report_pub.put(json.dumps(current, separators=(",", ":")))
                    reported = current
                    last_full = now
            except zenoh.ZError as err:
                if not self._closing.is_set():
                    _log.debug("link heartbeat or report not sent: %s", err)
            except Exception:  # the link thread must outlive any one bad tick
                _log.exception("link health tick failed")

    def _peer(self, key: zenoh.KeyExpr) -> str | None:
        parts = str(key).split("/")
        if len(parts) != 4 or parts[2] == self._machine:
            return None
        return parts[2]

    def _on_link(self, sample: zenoh.Sample) -> None:
        peer = self._peer(sample.key_expr)
        if peer is None:
            return
        if sample.payload.to_bytes() == _BYE:
            self._monitor.said_goodbye(peer)
        else:
            self._monitor.heard(peer)

    def _on_received(self, sample: zenoh.Sample) -> None:
        peer = self._peer(sample.key_expr)
        if peer is None or len(sample.payload) > _MAX_REPORT_BYTES:
            return
        try:
            report = json.loads(sample.payload.to_bytes())
        except ValueError:
            return
        if not isinstance(report, dict):
            return
        self._monitor.heard(peer)
        for topic, seq in report.items():
            if isinstance(topic, str) and isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0:
                self._on_report(peer, topic, seq)

    def _on_token(self, sample: zenoh.Sample) -> None:
        peer = self._peer(sample.key_expr)
        if peer is None:
            return
        # Only heartbeats and reports make a peer connected: a token alone may be anyone's.
        if sample.kind == zenoh.SampleKind.DELETE:
            self._monitor.transport_closed(peer)


def _logged(callback: Callable[[zenoh.Sample], None]) -> Callable[[zenoh.Sample], None]:
    """``callback``, logging what it raises (Zenoh would only print it and carry on)."""

    def call(sample: zenoh.Sample) -> None:
        try:
            callback(sample)
        except Exception:
            _log.exception("handling %s failed", sample.key_expr)

    return call
