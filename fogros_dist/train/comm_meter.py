"""What a rank's gradient communication costs, measured per optimizer step: the payload bytes its
collectives carry, the time they are in flight, and the bytes the process wrote to its sockets.

The counting layer wraps the torch.distributed functions that DDP's Python side and every comm
hook call (``all_reduce``, ``all_gather``, ``all_gather_single``, ``all_gather_into_tensor``,
``broadcast`` and ``_broadcast_coalesced``, the last being how DDP broadcasts module buffers such as
BatchNorm statistics each forward): torch's hooks look them up on the ``torch.distributed`` module
at each call, so replacing the module's attributes reaches them. The wrappers pass every call
through unchanged; only while a :class:`CommMeter` that is :meth:`CommMeter.activate`-d has a step
open (:meth:`CommMeter.step`) do they also count:

* bytes: ``numel * element_size`` of the tensor this rank hands in (all_reduce's tensor,
  all_gather's input, broadcast's tensor on every rank, the sum of the buffers broadcast
  coalesced). That is the payload, not the wire traffic: gloo's ring all-reduce moves about
  ``2 (W-1)/W`` of it per rank, plus headers.
* time: from the call to its completion (the work's future, through ``add_done_callback``, for
  the async calls hooks make; the call itself for blocking ones); a step's communication time is
  the union of those intervals, and the rest of the step (forward, backward, the hooks' own
  compression arithmetic, the optimizer) is its compute time.
* written bytes (a cross-check on the wire): the growth of ``wchar`` in ``/proc/self/io`` over the
  step. gloo sends with ``writev`` on its TCP pairs, which ``wchar`` counts for every thread of the
  process; nothing else of a step writes files. It is a per-process figure, unlike ``/proc/net``'s
  per-namespace counters, but includes gloo's framing. Absent where ``/proc/self/io`` cannot be read.

Collectives outside a step (DDP's initial parameter broadcast, the loop's per-epoch loss
all-reduce) pass through uncounted. Times are the host's wall clock: measured on gloo (CPU); on
CUDA, work still queued on the GPU when a step's block ends is not waited for, and NCCL's traffic
(NVLink, InfiniBand, its own sockets' sends) is not what ``wchar`` counts.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["COUNTED_COLLECTIVES", "CommMeter", "CommSummary"]

# The functions of torch.distributed the counting layer wraps, and where each one's outgoing
# payload is: (positional index, keyword) of the tensor, or of the list of tensors.
_PAYLOAD: dict[str, tuple[int, str]] = {
    "all_reduce": (0, "tensor"),
    "all_gather": (1, "tensor"),
    "all_gather_single": (1, "input_tensor"),
    "all_gather_into_tensor": (1, "input_tensor"),
    "broadcast": (0, "tensor"),
    "_broadcast_coalesced": (1, "tensors"),
}
COUNTED_COLLECTIVES = tuple(_PAYLOAD)

_IO = Path("/proc/self/io")
_active: CommMeter | None = None
_install_lock = threading.Lock()
_installed = False


@dataclass(frozen=True)
class CommSummary:
    """A rank's per-step means over the steps a meter saw (zeros when it saw none)."""

    steps: int
    bytes_per_step: float
    bytes_last_step: float
    comm_seconds_per_step: float
    compute_seconds_per_step: float
    written_bytes_per_step: float | None

    def as_metrics(self) -> dict[str, float]:
        """The summary under the names the run's metrics use."""
        out = {
            "measured_steps": float(self.steps),
            "bytes_per_step": self.bytes_per_step,
            "bytes_last_step": self.bytes_last_step,
            "comm_seconds_per_step": self.comm_seconds_per_step,
            "compute_seconds_per_step": self.compute_seconds_per_step,
        }
        if self.written_bytes_per_step is not None:
            out["written_bytes_per_step"] = self.written_bytes_per_step
        return out


@dataclass
class _Step:
    started: float
    written_before: int | None
    payload: int = 0
    # [launch, completion or None while in flight], one per counted call.
    intervals: list[list[float | None]] = field(default_factory=list)


class CommMeter:
    """Per-step communication of this process; see the module's doc. Thread-safe: hooks' future
    callbacks launch collectives from gloo's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._step: _Step | None = None
        self._steps = 0
        self._payload = 0
        self._last_payload = 0
        self._comm_seconds = 0.0
        self._step_seconds = 0.0
        self._written: int | None = 0

    def activate(self) -> CommMeter:
        """Make this the meter the process's collectives count into (installing the counting
        layer on first use; it stays, passing calls through, for the life of the process)."""
        global _active
        _install()
        _active = self
        return self

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        """Count the collectives launched inside the block as one optimizer step."""
        current = _Step(started=time.perf_counter(), written_before=_written_bytes())
        with self._lock:
            self._step = current
        try:
            yield
        finally:
            ended = time.perf_counter()
            written = _written_bytes()
            with self._lock:
                self._step = None
                self._steps += 1
                self._payload += current.payload
                self._last_payload = current.payload
                self._comm_seconds += _covered(current.intervals, current.started, ended)
                self._step_seconds += ended - current.started
                if self._written is not None and written is not None and current.written_before is not None:
                    self._written += written - current.written_before
                else:
                    self._written = None

    def _launch(self, payload: int) -> list[float | None] | None:
        """Record a collective about to start; None outside a step."""
        with self._lock:
            if self._step is None:
                return None
            interval: list[float | None] = [time.perf_counter(), None]
            self._step.payload += payload
            self._step.intervals.append(interval)
            return interval

    def summary(self) -> CommSummary:
        """This rank's per-step means so far."""
        with self._lock:
            steps = max(1, self._steps)
            comm = self._comm_seconds / steps
            return CommSummary(
                steps=self._steps,
                bytes_per_step=self._payload / steps,
                bytes_last_step=float(self._last_payload),
                comm_seconds_per_step=comm,
                compute_seconds_per_step=self._step_seconds / steps - comm,
                written_bytes_per_step=None if self._written is None else self._written / steps,
            )

    def summary_across_ranks(self, device: torch.device | None = None) -> CommSummary:
        """The mean of every rank's :meth:`summary` (a collective: every rank calls it; outside a
        step, so it is not counted), reduced on ``device`` (NCCL's ranks: their GPU). This rank's
        own outside a process group."""
        import torch.distributed as dist

        own = self.summary()
        if not (dist.is_available() and dist.is_initialized()):
            return own
        written = own.written_bytes_per_step
        values = torch.tensor(
            [
                float(own.steps),
                own.bytes_per_step,
                own.bytes_last_step,
                own.comm_seconds_per_step,
                own.compute_seconds_per_step,
                0.0 if written is None else written,
                1.0 if written is None else 0.0,  # ranks that could not read /proc/self/io
            ],
            dtype=torch.float64,
            device=device,
        )
        dist.all_reduce(values)
        world = dist.get_world_size()
        values = values.cpu()
        mean = (values / world).tolist()
        return CommSummary(
            steps=round(mean[0]),
            bytes_per_step=mean[1],
            bytes_last_step=mean[2],
            comm_seconds_per_step=mean[3],
            compute_seconds_per_step=mean[4],
            written_bytes_per_step=None if values[6] > 0 else mean[5],
        )


def _covered(intervals: Sequence[Sequence[float | None]], start: float, end: float) -> float:
    """Seconds of [start, end] during which at least one interval was open (one still open at
    the step's end counts up to it)."""
    spans = sorted(
        (start if s is None else max(start, s), end if e is None else min(end, e)) for s, e in intervals
    )
    total, reach = 0.0, start
    for low, high in spans:
        begin = max(low, reach)
        if high > begin:
            total += high - begin
            reach = high
    return total


def _written_bytes() -> int | None:
    """``wchar`` of /proc/self/io: bytes this process passed to write()/writev()."""
    try:
        for line in _IO.read_text().splitlines():
            key, _, value = line.partition(":")
            if key == "wchar":
                return int(value)
    except (OSError, ValueError):
        return None
    return None


def _payload_bytes(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    index, keyword = _PAYLOAD[name]
    sent = args[index] if len(args) > index else kwargs.get(keyword)
    tensors = sent if isinstance(sent, (list, tuple)) else [sent]
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def _counting(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def counted(*args: Any, **kwargs: Any) -> Any:
        meter = _active
        interval = meter._launch(_payload_bytes(name, args, kwargs)) if meter is not None else None
        result = original(*args, **kwargs)
        if interval is None:
            return result
        future = result.get_future() if hasattr(result, "get_future") else None
        if future is None:  # a blocking call: it is done
            interval[1] = time.perf_counter()
        else:

            def done(_: torch.futures.Future[Any]) -> None:
                interval[1] = time.perf_counter()

            future.add_done_callback(done)
        return result

    counted.__fogros_counted__ = True  # type: ignore[attr-defined]
    return counted


def _install() -> None:
    """Wrap :data:`COUNTED_COLLECTIVES` on the torch.distributed module, once per process."""
    global _installed
    import torch.distributed as dist

    with _install_lock:
        if _installed:
            return
        for name in COUNTED_COLLECTIVES:
            original = getattr(dist, name, None)
            if original is not None and not getattr(original, "__fogros_counted__", False):
                setattr(dist, name, _counting(name, original))
        _installed = True
