"""Per-topic link statistics of a bridge: counters, one-way latency, link health, JSON snapshots.

Counters are updated on the bridge's hot path (one lock per topic and direction, held for a few
additions); medians and percentiles are computed only when a snapshot is taken. A snapshot is a
plain JSON-able dict, written atomically to the bridge's stats file every second, so the CLI and
the demo can read it at any time without seeing half a file.

What each counter of a topic means (every message counts in exactly one place, so the messages a
subscriber on the far side missed are the sending side's ``dropped_*`` plus the receiving side's
``lost`` and ``dropped_*``):

* ``messages``, ``bytes``: outbound, put on Zenoh; inbound, published on the graph.
* ``dropped_oversize``: larger than ``BridgeSpec.max_message_bytes``; outbound, never put on
  Zenoh; inbound, never copied out of Zenoh (Zenoh itself discards, uncounted, whatever exceeds
  its own limit, which is set just above that size: only a stranger sends such messages).
* ``dropped_backlog`` (outbound): did not fit in the topic's bounded backlog while the link was
  slow or down (a reliable topic refuses the newest, a best-effort one evicts the oldest).
* ``lost`` (inbound): gaps in the sending bridge's sequence numbers, i.e. put on Zenoh by the
  sending bridge and never received: dropped by a Zenoh queue (best-effort topics), or in flight
  on a link whose transport closed. A gap is only known once a later message arrives.
* ``seq_resets`` (inbound): sequence numbers that went back or jumped further than the sender
  can have sent in the time (a restarted bridge, or a stranger's forged attachment); such a jump
  starts counting afresh and adds nothing to ``lost``.
* ``dropped_history`` (inbound): arrived in a burst (the backlog of an outage) faster than the
  graph's subscribers can be expected to take it: the bridge replays bursts at a bounded speed
  so that no more than the topic's history depth is ever published ahead of the original pace,
  and these did not fit in that replay queue. What a subscriber's own DDS history overwrites
  because the subscriber itself is slower than the original publisher is not visible to the
  bridge (it happens in the subscriber's process) and is not counted anywhere.
* ``dropped_malformed`` (inbound): bytes that are not a valid message of the topic's type.
* ``dropped_codec`` (inbound): a codec frame that does not decode (truncated, bad magic or
  version, a decoder error, a size other than it announced; :mod:`fogros_dist.net.codecs`).
  Counted apart from ``dropped_malformed``: it says the compressed payload broke on the way, not
  that the sender's graph published a bad message.
* ``dropped_other``: anything else (no publisher yet, Zenoh or the graph refused it).
* ``backlog`` / ``backlog_peak`` (outbound): messages waiting in the backlog now / at most.

``bytes`` counts what crossed the link outbound (after encoding) and what was published inbound
(after decoding); a topic's ``codec`` section (:mod:`fogros_dist.net.codec_stats`) has the raw
CDR bytes and the wire bytes side by side, encode/decode times and PSNR of lossy frames.

``link`` (see :mod:`fogros_dist.net.link_health`): whether every peer bridge is connected, how
many disconnects there were and how long the last outage lasted, in total and per peer.

``services`` (see :mod:`fogros_dist.net.service_bridge`): per service and role (``remote``: served
here for a server on the far side; ``local``: answered by this graph's server) the ``calls``,
``answered``, ``timed_out``, ``errors`` and ``in_flight`` counts and the call latency.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from fogros_dist.errors import ConfigError
from fogros_dist.net.codec_stats import CodecStats

__all__ = [
    "DEFAULT_LATENCY_WINDOW",
    "BridgeStats",
    "Direction",
    "TopicStats",
    "format_link",
    "format_stats_table",
    "peer_link_states",
    "read_stats",
    "write_json_atomic",
]

Direction = Literal["outbound", "inbound"]

# Enough samples for a stable p99 over the last minute at 20-30 Hz, small enough to sort per
# snapshot on a robot's CPU (a few hundred microseconds).
DEFAULT_LATENCY_WINDOW = 2048


class TopicStats:
    """Counters for one topic in one direction; every method is safe to call from any thread.

    Args:
        topic: the ROS topic name.
        direction: ``outbound`` (graph -> Zenoh) or ``inbound`` (Zenoh -> graph).
        type_name: the message type, when known.
        window: how many of the latest latency samples to keep.
    """

    def __init__(
        self,
        *,
        topic: str,
        direction: Direction,
        type_name: str | None = None,
        window: int = DEFAULT_LATENCY_WINDOW,
    ) -> None:
        if window < 1:
            msg = f"latency window {window} is too small: use at least 1 sample"
            raise ConfigError(msg)
        self.topic = topic
        self.direction: Direction = direction
        self._lock = threading.Lock()
        self._type = type_name
        self._messages = 0
        self._bytes = 0
        self._dropped_malformed = 0
        self._dropped_codec = 0
        self.codec = CodecStats()  # what the topic's codec did (bytes before/after, time, PSNR)
        self._dropped_other = 0
        self._dropped_oversize = 0
        self._dropped_backlog = 0
        self._dropped_history = 0
        self._lost = 0
        self._seq_resets = 0
        self._backlog = 0
        self._backlog_peak = 0
        self._ring: list[int] = [0] * window
        self._ring_next = 0
        self._ring_full = False
        self._last_message_ns = 0

    def set_type(self, type_name: str) -> None:
        """Record the message type once the bridge has learned it."""
        with self._lock:
            self._type = type_name

    def record(self, nbytes: int, latency_ns: int | None = None) -> None:
        """Count one forwarded message of ``nbytes``, with its one-way latency if known."""
        now = time.time_ns()
        with self._lock:
            self._messages += 1
            self._bytes += nbytes
            self._last_message_ns = now
            if latency_ns is not None:
                ring = self._ring
                ring[self._ring_next] = latency_ns
                self._ring_next += 1
                if self._ring_next == len(ring):
                    self._ring_next = 0
                    self._ring_full = True

    def drop_malformed(self) -> None:
        """Count one message dropped because its bytes are not a valid message of the topic."""
        with self._lock:
            self._dropped_malformed += 1

    def drop_codec(self) -> None:
        """Count one message dropped because its codec frame did not decode."""
        with self._lock:
            self._dropped_codec += 1

    def drop_other(self) -> None:
        """Count one message dropped for another reason (no publisher yet, graph refused it)."""
        with self._lock:
            self._dropped_other += 1

    def drop_oversize(self) -> None:
        """Count one message dropped for being larger than the bridge's message size limit."""
        with self._lock:
            self._dropped_oversize += 1

    def drop_backlog(self, count: int = 1) -> None:
        """Count ``count`` messages that did not fit in the topic's outbound backlog."""
        if count > 0:
            with self._lock:
                self._dropped_backlog += count

    def drop_history(self, count: int = 1) -> None:
        """Count ``count`` messages of a burst that did not fit in the inbound replay queue."""
        if count > 0:
            with self._lock:
                self._dropped_history += count

    def lose(self, count: int) -> None:
        """Count ``count`` messages that never arrived (a gap in the sender's sequence numbers)."""
        if count > 0:
            with self._lock:
                self._lost += count

    def reset_sequence(self) -> None:
        """Count one implausible jump of the sender's sequence numbers (restart or forgery)."""
        with self._lock:
            self._seq_resets += 1

    def set_backlog(self, count: int) -> None:
        """Record how many messages wait in the topic's outbound backlog now."""
        with self._lock:
            self._backlog = count
            self._backlog_peak = max(self._backlog_peak, count)

    def snapshot(self) -> dict[str, Any]:
        """The counters now, as a JSON-able dict (latencies in milliseconds, None if no sample)."""
        with self._lock:
            samples = self._ring[:] if self._ring_full else self._ring[: self._ring_next]
            out: dict[str, Any] = {
                "topic": self.topic,
                "direction": self.direction,
                "type": self._type,
                "messages": self._messages,
                "bytes": self._bytes,
                "dropped_malformed": self._dropped_malformed,
                "dropped_codec": self._dropped_codec,
                "dropped_other": self._dropped_other,
                "dropped_oversize": self._dropped_oversize,
                "dropped_backlog": self._dropped_backlog,
                "dropped_history": self._dropped_history,
                "lost": self._lost,
                "seq_resets": self._seq_resets,
                "backlog": self._backlog,
                "backlog_peak": self._backlog_peak,
                "last_message_unix_ns": self._last_message_ns or None,
            }
        out["codec"] = self.codec.snapshot()
        samples.sort()
        out["latency_ms"] = {
            "samples": len(samples),
            "median": _percentile_ms(samples, 0.5),
            "p99": _percentile_ms(samples, 0.99),
            "max": samples[-1] / 1e6 if samples else None,
        }
        return out


class BridgeStats:
    """The statistics of one bridge process: a :class:`TopicStats` per topic and direction.

    Args:
        deployment: the deployment the bridge belongs to.
        side: ``robot`` or ``machine``.
        machine: the machine name of this side.
        window: latency samples kept per topic.
    """

    def __init__(
        self, *, deployment: str, side: str, machine: str, window: int = DEFAULT_LATENCY_WINDOW
    ) -> None:
        self.deployment = deployment
        self.side = side
        self.machine = machine
        self._window = window
        self._lock = threading.Lock()
        self._topics: dict[tuple[str, Direction], TopicStats] = {}
        self._started_ns = time.time_ns()
        self._link: Callable[[], dict[str, Any]] | None = None
        self._services: Callable[[], list[dict[str, Any]]] | None = None

    def set_link_source(self, source: Callable[[], dict[str, Any]]) -> None:
        """Take the snapshot's ``link`` section from ``source()`` (the bridge's link monitor)."""
        with self._lock:
            self._link = source

    def set_services_source(self, source: Callable[[], list[dict[str, Any]]]) -> None:
        """Take the snapshot's ``services`` section from ``source()`` (the service bridge's
        per-service counters: :meth:`fogros_dist.net.service_bridge.ServiceBridge.snapshot`)."""
        with self._lock:
            self._services = source

    def topic(self, name: str, direction: Direction, *, type_name: str | None = None) -> TopicStats:
        """The counters of ``name`` in ``direction``, created on first use."""
        key = (name, direction)
        with self._lock:
            found = self._topics.get(key)
            if found is None:
                found = TopicStats(topic=name, direction=direction, type_name=type_name, window=self._window)
                self._topics[key] = found
            return found

    def snapshot(self) -> dict[str, Any]:
        """Every topic's counters plus who wrote them and when, as a JSON-able dict."""
        with self._lock:
            topics = list(self._topics.values())
            link = self._link
            services = self._services
        now = time.time_ns()
        out: dict[str, Any] = {
            "deployment": self.deployment,
            "side": self.side,
            "machine": self.machine,
            "pid": os.getpid(),
            "time_unix_ns": now,
            "uptime_s": round((now - self._started_ns) / 1e9, 3),
            "topics": [t.snapshot() for t in sorted(topics, key=lambda t: (t.direction, t.topic))],
        }
        if link is not None:
            out["link"] = link()
        if services is not None:
            out["services"] = services()
        return out

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`snapshot` to ``path`` atomically (readers see the old or the new file).

        Raises:
            OSError: the directory is missing or not writable.
        """
        write_json_atomic(path, self.snapshot())


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename.

    Raises:
        OSError: the directory is missing or not writable.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_stats(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a stats file written by a bridge.

    Raises:
        ConfigError: the file is missing or is not a bridge stats snapshot.
    """
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        msg = f"bridge stats file {str(path)!r} does not exist: is the bridge running (or did it ever start)?"
        raise ConfigError(msg) from None
    except (OSError, ValueError) as err:
        msg = f"bridge stats file {str(path)!r} is unreadable ({err}): delete it; the bridge rewrites it"
        raise ConfigError(msg) from err
    if not isinstance(data, dict) or not isinstance(data.get("topics"), list):
        msg = f"{str(path)!r} is not a bridge stats file (no 'topics' list)"
        raise ConfigError(msg)
    return data


_COLUMNS = (
    ("bridge", "<"),
    ("topic", "<"),
    ("dir", "<"),
    ("msgs", ">"),
    ("MB", ">"),
    ("malformed", ">"),
    ("dropped", ">"),
    ("lost", ">"),
    ("lat med ms", ">"),
    ("lat p99 ms", ">"),
)


def format_stats_table(stats: Mapping[str, Any]) -> str:
    """A per-topic text table of one snapshot, or of ``{name: snapshot}`` for several bridges.

    Latency is one-way, from the sending bridge taking the message from its graph to the
    receiving bridge publishing it (inbound topics only; an outbound row shows ``-``); across
    hosts it is only as good as their clock synchronization. ``dropped`` adds up every
    ``dropped_*`` counter but ``dropped_malformed``. A snapshot with a ``link`` section adds one
    line per bridge below the table (see :func:`format_link`). Empty or unreadable snapshots are
    shown as such rather than failing.

    Args:
        stats: a :meth:`BridgeStats.snapshot` dict, or a mapping of bridge names to such dicts.

    Returns:
        The table as lines joined by newlines (no trailing newline).
    """
    snapshots: dict[str, Any] = {}
    if "topics" in stats:
        snapshots[str(stats.get("machine", "bridge"))] = stats
    else:
        snapshots = dict(stats)
    rows: list[tuple[str, ...]] = []
    for name, snap in snapshots.items():
        topics = snap.get("topics") if isinstance(snap, Mapping) else None
        if not topics:
            rows.append((str(name), "(no topics or no stats yet)", "", "", "", "", "", "", "", ""))
            continue
        for topic in topics:
            lat = topic.get("latency_ms") or {}
            rows.append(
                (
                    str(name),
                    str(topic.get("topic", "?")),
                    "out" if topic.get("direction") == "outbound" else "in",
                    str(topic.get("messages", 0)),
                    f"{topic.get('bytes', 0) / 1e6:.2f}",
                    str(topic.get("dropped_malformed", 0)),
                    str(sum(int(topic.get(key, 0) or 0) for key in _DROPS)),
                    str(topic.get("lost", 0)),
                    _fmt_ms(lat.get("median")),
                    _fmt_ms(lat.get("p99")),
                )
            )
    headers = tuple(c for c, _ in _COLUMNS)
    widths = [
        max(len(headers[i]), *(len(r[i]) for r in rows)) if rows else len(headers[i])
        for i in range(len(headers))
    ]

    def line(cells: tuple[str, ...]) -> str:
        parts = [f"{c:{a}{w}}" for c, (_, a), w in zip(cells, _COLUMNS, widths, strict=True)]
        return "  ".join(parts).rstrip()

    out = [line(headers), line(tuple("-" * w for w in widths))]
    out.extend(line(r) for r in rows)
    for name, snap in snapshots.items():
        link = snap.get("link") if isinstance(snap, Mapping) else None
        if isinstance(link, Mapping):
            out.append(f"{name} link: {format_link(link)}")
    return "\n".join(out)


def format_link(link: Mapping[str, Any]) -> str:
    """One line for a snapshot's ``link`` section: each peer's state, disconnects and last outage.

    E.g. ``gpu connected, 2 disconnects, last outage 3.4 s``, or ``no peer bridge seen yet``.
    """
    peers = link.get("peers")
    if not isinstance(peers, Mapping) or not peers:
        return "no peer bridge seen yet"
    parts = []
    for name, peer in sorted(peers.items()):
        if not isinstance(peer, Mapping):
            continue
        state = "connected" if peer.get("connected") else "DISCONNECTED"
        count = int(peer.get("disconnects", 0) or 0)
        text = f"{name} {state}, {count} disconnect{'' if count == 1 else 's'}"
        outage = peer.get("last_outage_s")
        if outage is not None:
            text += f", last outage {float(outage):.1f} s"
        parts.append(text)
    return "; ".join(parts)


def peer_link_states(snapshot: Mapping[str, Any]) -> dict[str, str]:
    """Each peer bridge's link in a few words, for a status column (e.g. in ``fogros-dist list``,
    from the robot bridge's stats file): ``up``, ``up, 2 outages (last 3.4 s)``, ``DOWN for 12 s``
    or ``stopped``. Empty when the snapshot has no ``link`` section."""
    link = snapshot.get("link")
    peers = link.get("peers") if isinstance(link, Mapping) else None
    if not isinstance(peers, Mapping):
        return {}
    states = {}
    for name, peer in sorted(peers.items()):
        if not isinstance(peer, Mapping):
            continue
        count = int(peer.get("disconnects", 0) or 0)
        if peer.get("stopped"):
            text = "stopped"
        elif not peer.get("connected"):
            down = peer.get("down_for_s")
            text = "DOWN" if down is None else f"DOWN for {float(down):.0f} s"
        else:
            text = "up"
        if count and not peer.get("stopped"):
            outage = peer.get("last_outage_s")
            last = "" if outage is None else f" (last {float(outage):.1f} s)"
            text += f", {count} outage{'' if count == 1 else 's'}{last}"
        states[str(name)] = text
    return states


# The counters the table's "dropped" column adds up (malformed messages have a column of their own).
_DROPS = ("dropped_other", "dropped_oversize", "dropped_backlog", "dropped_history", "dropped_codec")


def _percentile_ms(sorted_ns: list[int], q: float) -> float | None:
    if not sorted_ns:
        return None
    # Nearest-rank percentile: an actual sample, never an interpolation between two.
    index = max(0, math.ceil(q * len(sorted_ns)) - 1)
    return round(sorted_ns[index] / 1e6, 4)


def _fmt_ms(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f}"
