"""The robot's side of the dead-man switch: refresh the machine's heartbeat file while we run.

It lives in the supervisor process (`fogros-dist up`, or the launch process): when that process
dies, the heartbeats stop and the machine powers itself off ``deadman_minutes`` later. A failed
beat is only logged; the switch on the machine is what acts on silence.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from fogros_dist.logs import module_logger

__all__ = ["Heartbeat"]

_log = module_logger(__name__)


class Heartbeat:
    """Calls ``beat`` every ``interval_s`` seconds on a daemon thread until :meth:`stop`.

    Args:
        name: what the heartbeat is for (thread name, log lines).
        beat: refreshes the heartbeat; may raise (logged, retried at the next interval).
        interval_s: seconds between beats; a few beats fit in the dead-man limit.
    """

    def __init__(self, *, name: str, beat: Callable[[], None], interval_s: float) -> None:
        self._name = name
        self._beat = beat
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{name}", daemon=True)
        self.failures = 0

    def start(self) -> None:
        """Begin beating (the first beat happens at once)."""
        self._thread.start()

    def stop(self, *, timeout: float = 5.0) -> None:
        """Stop beating; wait up to ``timeout`` for a beat in progress."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        # Event.wait, not sleep: stop() ends the wait at once.
        while not self._stop.is_set():
            try:
                self._beat()
            except Exception as err:
                self.failures += 1
                _log.debug("heartbeat %s failed (%d so far): %s", self._name, self.failures, err)
            self._stop.wait(self._interval_s)
