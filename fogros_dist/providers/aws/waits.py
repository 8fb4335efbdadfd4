"""Every wait of the AWS provider: bounded, cancellable within a second, and shown while it lasts.

A :class:`Wait` polls quickly at first, then every few seconds; between polls it waits on the
deployment's cancel event (set by Ctrl-C, SIGTERM or `down`), so a cancelled wait raises
:class:`~fogros_dist.errors.Cancelled` at once. From its second attempt on it reports progress as
stage ``waiting``: what is awaited, the attempt, the seconds elapsed and the last status seen.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

from fogros_dist.errors import Cancelled

__all__ = ["REPORT_EVERY_S", "Wait", "check_cancelled", "wait_for_port"]

Progress = Callable[[str, str], None]

# A wait's progress line repeats at most this often (the first poll is quiet: most waits end there).
REPORT_EVERY_S = 5.0
# The longest a cancel request waits for a poll to notice it.
_CANCEL_CHECK_S = 1.0


def check_cancelled(cancel: threading.Event | None, *, machine: str, doing: str) -> None:
    """Raise Cancelled if ``cancel`` is set (between two API calls of a stage)."""
    if cancel is not None and cancel.is_set():
        msg = f"aws machine {machine!r}: stopped on request while {doing}"
        raise Cancelled(msg)


class Wait:
    """One wait for ``what`` on ``machine``, at most ``timeout_s`` seconds.

    Args:
        machine: the machine it is for (in messages).
        what: what is awaited, e.g. ``instance i-0abc to be running``.
        timeout_s: how long to keep polling; :meth:`attempts` then simply ends.
        cancel: set on request to stop; None: the wait cannot be cancelled (teardown).
        progress: receives ``("waiting", line)``; None: silent.
        longest_s: the longest pause between two polls.
    """

    def __init__(
        self,
        *,
        machine: str,
        what: str,
        timeout_s: float,
        cancel: threading.Event | None = None,
        progress: Progress | None = None,
        longest_s: float = 5.0,
    ) -> None:
        self.machine = machine
        self.what = what
        self.timeout_s = timeout_s
        self._cancel = cancel
        self._progress = progress
        self._longest_s = longest_s
        self._started = time.monotonic()
        self._status = ""
        self.attempt = 0

    @property
    def elapsed(self) -> float:
        """Seconds since the wait began."""
        return time.monotonic() - self._started

    def status(self, text: str) -> None:
        """What the last poll saw (e.g. ``pending``); shown in the next progress line."""
        self._status = text

    def attempts(self) -> Iterator[int]:
        """Yield 1, 2, ... until ``timeout_s`` has passed, pausing between yields.

        Raises:
            Cancelled: ``cancel`` was set (checked before every attempt and during every pause).
        """
        self._started = time.monotonic()
        deadline = self._started + self.timeout_s
        delay = 0.1
        reported_at = float("-inf")
        while True:
            self._check()
            self.attempt += 1
            now = time.monotonic()
            if self._progress is not None and self.attempt > 1 and now - reported_at >= REPORT_EVERY_S:
                reported_at = now
                seen = f"; {self._status}" if self._status else ""
                self._progress("waiting", f"{self.what} (attempt {self.attempt}, {self.elapsed:.0f} s{seen})")
            yield self.attempt
            if time.monotonic() + delay > deadline:
                return
            self._pause(delay)
            delay = min(delay * 2, self._longest_s)

    def _pause(self, seconds: float) -> None:
        if self._cancel is None:
            time.sleep(seconds)
            return
        # Event.wait returns as soon as the event is set; the cap only bounds a lost wake-up.
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self._cancel.wait(min(left, _CANCEL_CHECK_S)):
                break
        self._check()

    def _check(self) -> None:
        check_cancelled(self._cancel, machine=self.machine, doing=f"waiting for {self.what}")


def wait_for_port(wait: Wait, *, host: str, port: int) -> bool:
    """Poll until a TCP connection to ``host``:``port`` is accepted (sshd of a booting instance).

    Each attempt gives up after a second, so cancellation is noticed within about a second even
    while a SYN goes unanswered. Returns False if ``wait`` timed out.

    Raises:
        Cancelled: ``wait``'s cancel event was set.
    """
    for _ in wait.attempts():
        try:
            with socket.create_connection((host, port), timeout=_CANCEL_CHECK_S):
                return True
        except OSError as err:
            wait.status(err.strerror or type(err).__name__)
    return False
