"""A process supervised on a remote host, seen from the robot.

The host's agent did the supervising (its own session, a PID file, output to files, an exit-code
file written when it ends), so this handle holds no state the host does not also have: it can be
rebuilt from a :class:`~fogros_dist.spec.ProcessRecord` in any process (``fogros-dist down``
after the supervisor crashed). Output is streamed back over an SSH channel from byte offsets; if
the connection drops, the follower reconnects and resumes where it stopped, while the process
itself runs on untouched.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from fogros_dist.errors import ProvisionError
from fogros_dist.logs import module_logger
from fogros_dist.remote.agent import HostAgent
from fogros_dist.remote.runner import ConnectionLost, HostUnreachable
from fogros_dist.spec import ProcessRecord

__all__ = ["RemoteProcess", "Sink"]

_log = module_logger(__name__)
# Receives one line of output: (machine, process name, stream, text); the same shape as the
# providers' OutputSink.
Sink = Callable[[str, str, Literal["stdout", "stderr"], str], None]
# How often poll() asks the host, with and without a follower that reports the exit itself.
_POLL_INTERVAL_S = 0.5
_POLL_INTERVAL_FOLLOWED_S = 5.0
# How long one poll waits for the host's answer before taking the process to be still running.
_POLL_WAIT_S = 2.0
# After a failed reconnect (the runner already retried a bounded number of times), wait this
# long before the follower tries again; the process may well still run.
_RECONNECT_PAUSE_S = 3.0
# Exit code reported for a process that vanished without its wrapper recording how it ended.
UNKNOWN_EXIT = -1


class RemoteProcess:
    """A handle on a process the host agent supervises (implements ``RunningProcess``)."""

    def __init__(
        self,
        *,
        agent: HostAgent,
        record: ProcessRecord,
        rundir: str,
        from_start: bool = True,
        begins: tuple[int, int] = (0, 0),
    ) -> None:
        """Args:
        agent: the host's agent (and through it, the connection).
        record: what identifies the process.
        rundir: the host directory with its PID and exit-code files.
        from_start: follow its output from the first byte it wrote (a process started just
            now), or only what it writes from now on (one attached to later).
        begins: with ``from_start``, where its stdout and stderr begin in their log files (a node
            started again appends to its earlier run's).
        """
        self._agent = agent
        self._record = record
        self._rundir = rundir
        self._offsets = {
            "stdout": begins[0] if from_start else -1,
            "stderr": begins[1] if from_start else -1,
        }
        self._exit: int | None = None
        self._ended = threading.Event()
        self._last_check = 0.0
        # Why the last check could not reach the host (None: it did); warned once per outage.
        self._unreachable: str | None = None
        self._checking: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stop_following = threading.Event()
        self._followers: list[threading.Thread] = []

    @property
    def record(self) -> ProcessRecord:
        """What identifies the process across restarts of the supervisor."""
        return self._record

    def poll(self) -> int | None:
        """Exit code if ended (negative: killed by that signal; -1: vanished), else None.

        Asks the host at most every 0.5 s (every 5 s while a follower reports the exit), and waits
        at most 2 s for the answer: a supervisor polling many processes in one loop is never held
        up by one whose host is lost (reaching it may take a whole retry budget). Until the host
        answers, or while it cannot be reached, the process is taken to be still running (see
        :attr:`unreachable`); the answer, when it comes, counts for the next poll.
        """
        if self._ended.is_set():
            return self._exit
        interval = _POLL_INTERVAL_FOLLOWED_S if self._following() else _POLL_INTERVAL_S
        now = time.monotonic()
        with self._lock:
            if self._checking is not None and self._checking.is_alive():
                return None  # the poll that started it already waited for it
            if now - self._last_check < interval:
                return None
            self._last_check = now
            check = threading.Thread(
                target=self._check, name=f"poll-{self._record.machine}-{self._record.name}", daemon=True
            )
            self._checking = check
        check.start()
        check.join(_POLL_WAIT_S)
        return self._exit if self._ended.is_set() else None

    def _check(self) -> None:
        try:
            state = self._agent.status(self._rundir, [self._record.name])[self._record.name]
        except (ProvisionError, OSError) as err:  # OSError: a socket that failed under paramiko
            if self._unreachable is None:
                _log.warning("%s: cannot check %s now (%s)", self._record.machine, self._record.name, err)
            self._unreachable = str(err)
            return
        if self._unreachable is not None:
            _log.warning("%s: reached again (checking %s)", self._record.machine, self._record.name)
            self._unreachable = None
        self._absorb(state)

    @property
    def unreachable(self) -> str | None:
        """Why the last check could not reach the host (None: it did, or none was made yet)."""
        return self._unreachable

    def stop(self, *, grace: float, sigint_grace: float | None = None) -> int | None:
        """Stop the process group on the host; return the exit code.

        With ``sigint_grace``: SIGINT, SIGTERM after ``sigint_grace`` seconds (as ``ros2 launch``
        stops a node); without: SIGTERM first. SIGKILL ``grace`` seconds after SIGTERM.

        Raises:
            ProvisionError: the host cannot be reached (the process may still run there; the
                deployment stays recorded, so `fogros-dist down` can try again).
        """
        if not self._ended.is_set():
            if sigint_grace is None:
                state = self._agent.stop(self._rundir, self._record.name, grace=grace)
            else:
                state = self._agent.request(
                    "stop",
                    {
                        "rundir": self._rundir,
                        "name": self._record.name,
                        "grace": grace,
                        "sigint_grace": sigint_grace,
                    },
                    timeout=sigint_grace + grace + 30.0,
                    what=f"stop {self._record.name}",
                )
            self._absorb(state)
        self._stop_following.set()
        for thread in self._followers:
            thread.join(timeout=2.0)
        return self._exit

    def stderr_tail(self, lines: int = 20) -> tuple[str, ...]:
        """The last ``lines`` lines of the process's stderr file on the host (() if unreachable)."""
        try:
            return tuple(self._agent.tail(self._record.stderr_path, lines))
        except ProvisionError:
            return ()

    def follow(self, sink: Sink) -> None:
        """Stream the process's output lines to ``sink`` on a background thread until it ends
        (or :meth:`stop`), reconnecting if the SSH connection drops."""
        thread = threading.Thread(
            target=self._follow,
            args=(sink,),
            name=f"follow-{self._record.machine}-{self._record.name}",
            daemon=True,
        )
        thread.start()
        self._followers.append(thread)

    # -- internals -------------------------------------------------------------------------------

    def _following(self) -> bool:
        return any(thread.is_alive() for thread in self._followers)

    def _absorb(self, state: dict[str, Any]) -> None:
        if state.get("state") in ("running", "cancelled"):
            return
        code = state.get("code")
        with self._lock:
            if not self._ended.is_set():
                self._exit = int(code) if isinstance(code, int) else UNKNOWN_EXIT
                self._ended.set()

    def _follow(self, sink: Sink) -> None:
        runner = self._agent.runner
        lost = False
        while not self._stop_following.is_set() and not self._ended.is_set():
            generation = runner.generation
            try:
                if self._stream(sink):
                    return
            except (ConnectionLost, HostUnreachable):
                pass  # the host may come back: the process keeps running there
            except ProvisionError as err:
                # The agent itself failed to follow (not the connection): retrying will not help.
                _log.warning("%s: cannot follow %s: %s", self._record.machine, self._record.name, err)
                return
            if self._stop_following.is_set():
                return
            if not lost:
                _log.warning(
                    "%s: SSH connection lost while following %s; reconnecting (it keeps running there)",
                    self._record.machine,
                    self._record.name,
                )
                lost = True
            try:
                runner.reconnect(generation)
                lost = False  # a later outage is said again
            except HostUnreachable:
                # Said once per outage (the lost line above); tried again until the host answers.
                self._stop_following.wait(_RECONNECT_PAUSE_S)
            except ProvisionError as err:
                _log.warning("%s: %s", self._record.machine, err)
                self._stop_following.wait(_RECONNECT_PAUSE_S)

    def _stream(self, sink: Sink) -> bool:
        """Follow until the process ends (True) or :meth:`stop` (True); ConnectionLost if cut."""
        args = {
            "rundir": self._rundir,
            "name": self._record.name,
            "stdout": self._record.stdout_path,
            "stderr": self._record.stderr_path,
            "from_out": self._offsets["stdout"],
            "from_err": self._offsets["stderr"],
        }
        stream = self._agent.stream("follow", args, lambda frame: self._frame(frame, sink))
        while True:
            answer = stream.wait(0.2)
            if answer is not None:
                self._absorb(answer)
                return True
            if self._stop_following.is_set():
                stream.cancel()
                stream.wait(2.0)
                return True

    def _frame(self, frame: str, sink: Sink) -> None:
        tag, _, rest = frame.partition(" ")
        offset, _, text = rest.partition(" ")
        stream: Literal["stdout", "stderr"] = "stdout" if tag == "O" else "stderr"
        self._offsets[stream] = int(offset)
        sink(self._record.machine, self._record.name, stream, text)
