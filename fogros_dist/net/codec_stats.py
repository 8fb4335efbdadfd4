"""What a topic's codec did: bytes before and after, time spent, and PSNR of lossy frames.

One :class:`CodecStats` belongs to each :class:`~fogros_dist.net.stats.TopicStats` (its
``codec`` section of a snapshot). Outbound it counts encoding (``raw_bytes`` taken from the
graph, ``wire_bytes`` put on Zenoh, ``time_ms`` spent encoding); inbound it counts decoding
(``wire_bytes`` received, ``raw_bytes`` handed on to validation, ``time_ms`` spent decoding).
Messages that cross as they are (codec ``none``, small messages) count in both byte totals and
in ``used`` but add no time sample.
"""

from __future__ import annotations

import math
import threading
from typing import Any

__all__ = ["CodecStats"]

# Enough samples for a stable p99 at camera rates; small enough to sort per snapshot.
_WINDOW = 1024


class CodecStats:
    """Codec counters of one topic in one direction; safe to call from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._setting = "none"
        self._used: dict[str, int] = {}
        self._raw_bytes = 0
        self._wire_bytes = 0
        self._errors = 0
        self._times_ns: list[int] = []
        self._times_next = 0
        self._time_total_ns = 0
        self._psnr: list[float] = []
        self._psnr_next = 0
        self._psnr_every = 0

    def set_setting(self, setting: str, *, psnr_every: int = 0) -> None:
        """Record the topic's codec setting (``auto``, ``jpeg:90``, ...) and how often a lossy frame
        is sampled for PSNR (every ``psnr_every``-th; 0: never)."""
        with self._lock:
            self._setting = setting
            self._psnr_every = psnr_every

    def record(self, codec: str, raw: int, wire: int, elapsed_ns: int | None) -> None:
        """Count one message that ``codec`` turned from ``raw`` into ``wire`` bytes (or back)."""
        with self._lock:
            self._used[codec] = self._used.get(codec, 0) + 1
            self._raw_bytes += raw
            self._wire_bytes += wire
            if elapsed_ns is not None:
                self._time_total_ns += elapsed_ns
                _push(self._times_ns, self._times_next, elapsed_ns)
                self._times_next = (self._times_next + 1) % _WINDOW

    def record_psnr(self, db: float) -> None:
        """Keep one PSNR sample (dB) of a lossy frame."""
        with self._lock:
            _push(self._psnr, self._psnr_next, db)
            self._psnr_next = (self._psnr_next + 1) % _WINDOW

    def error(self) -> None:
        """Count one message the encoder could not encode (it was sent as it was)."""
        with self._lock:
            self._errors += 1

    def snapshot(self) -> dict[str, Any]:
        """The counters as a JSON-able dict; ``ratio`` is raw / wire bytes (None before any)."""
        with self._lock:
            times = sorted(self._times_ns)
            psnr = sorted(self._psnr)
            out: dict[str, Any] = {
                "setting": self._setting,
                "used": dict(sorted(self._used.items())),
                "raw_bytes": self._raw_bytes,
                "wire_bytes": self._wire_bytes,
                "ratio": round(self._raw_bytes / self._wire_bytes, 3) if self._wire_bytes else None,
                "errors": self._errors,
                "time_ms": {
                    "samples": len(times),
                    "median": _rank(times, 0.5, 1e-6),
                    "p99": _rank(times, 0.99, 1e-6),
                    "total": round(self._time_total_ns / 1e6, 3),
                },
                "psnr_db": {
                    "every_n_lossy": self._psnr_every,
                    "samples": len(psnr),
                    "min": round(psnr[0], 2) if psnr else None,
                    "median": _rank(psnr, 0.5, 1.0),
                },
            }
        return out


def _push(ring: list[Any], index: int, value: Any) -> None:
    if len(ring) < _WINDOW:
        ring.append(value)
    else:
        ring[index] = value


def _rank(ordered: list[Any], q: float, scale: float) -> float | None:
    if not ordered:
        return None
    value = ordered[max(0, math.ceil(q * len(ordered)) - 1)] * scale
    return None if math.isinf(value) else round(value, 4)
