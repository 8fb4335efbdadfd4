"""Cancellation below the provider boundary: what every wait of the SSH layer checks.

Every operation that can last (an SSH wait, a push, an install, a build, an agent request) takes a
keyword argument ``cancel``: an event with ``is_set``/``wait`` (the deployment's
``ProvisionContext.cancel``, a :class:`threading.Event`), or None for "never cancelled" (teardown
must run to its end even though the deployment's event is set). A cancelled operation stops what
it started on the host and raises :class:`~fogros_dist.errors.Cancelled` with one line saying what
was interrupted, within about a second of the event being set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from fogros_dist.errors import Cancelled

__all__ = ["CHECK_EVERY_S", "REPORT_EVERY_S", "AnyOf", "CancelEvent", "cancelled", "raise_if_cancelled"]

# The longest a wait that cannot be woken by the event goes without looking at it.
CHECK_EVERY_S = 0.2
# A long wait's progress line repeats at most this often (as the AWS provider's waits do).
REPORT_EVERY_S = 5.0


class CancelEvent(Protocol):
    """What a ``cancel`` argument must offer; :class:`threading.Event` does."""

    def is_set(self) -> bool:
        """Whether the operation should stop."""

    def wait(self, timeout: float | None = None) -> bool:
        """Block until set or ``timeout`` passes; whether it is set."""


@dataclass(frozen=True)
class AnyOf:
    """Set as soon as any of ``events`` is: a job stopped both by the user (the deployment's
    event) and by its owner (``terminate`` of an `up` that failed for another reason)."""

    events: tuple[CancelEvent, ...]

    def is_set(self) -> bool:
        """Whether any of the events is set."""
        return any(event.is_set() for event in self.events)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until one of the events is set or ``timeout`` passes (polled: an Event cannot
        wake on another's)."""
        end = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = CHECK_EVERY_S if end is None else min(CHECK_EVERY_S, end - time.monotonic())
            if left <= 0:
                return False
            self.events[0].wait(left)
        return True


def cancelled(machine: str, doing: str) -> Cancelled:
    """The error of an operation on ``machine`` stopped on request: ``machine 'gpu': stopped on
    request while <doing>``."""
    return Cancelled(f"machine {machine!r}: stopped on request while {doing}")


def raise_if_cancelled(cancel: CancelEvent | None, *, machine: str, doing: str) -> None:
    """Raise :func:`cancelled` if ``cancel`` is set (between two steps of an operation)."""
    if cancel is not None and cancel.is_set():
        raise cancelled(machine, doing)
