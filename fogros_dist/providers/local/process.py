"""Supervised process groups on this machine.

Each process runs in its own session (so one signal reaches everything it spawned) and writes its
stdout and stderr to files, so its output survives the supervisor and `fogros-dist logs` can read
it from another shell. A process is identified by PID *and* its start time in /proc, so a PID the
kernel recycled is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from fogros_dist.errors import DeploymentError
from fogros_dist.providers.base import OutputSink
from fogros_dist.spec import ProcessRecord

__all__ = ["LocalProcess", "process_alive", "start_ticks"]

# How often a follower looks for new output: fast enough for interactive logs, cheap when idle.
_FOLLOW_INTERVAL_S = 0.05


def start_ticks(pid: int) -> int:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), or -1."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def process_alive(record: ProcessRecord) -> bool:
    """True if the recorded process still runs (same PID and same start time) and is no zombie."""
    if start_ticks(record.pid) != record.start_ticks:
        return False
    try:
        state = Path(f"/proc/{record.pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


class LocalProcess:
    """A process group on this machine, started here or re-attached from its record."""

    def __init__(self, record: ProcessRecord, popen: subprocess.Popen[bytes] | None = None) -> None:
        self._record = record
        self._popen = popen
        self._exit_code: int | None = None
        self._followers: list[threading.Thread] = []
        self._stop_following = threading.Event()

    @classmethod
    def start(
        cls,
        *,
        role: Literal["node", "bridge", "supervisor"],
        name: str,
        machine: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path,
        log_dir: Path,
    ) -> LocalProcess:
        """Start ``argv`` in a new session with output to ``log_dir/<name>.{out,err}``.

        Raises DeploymentError if the program cannot be executed at all.
        """
        log_dir.mkdir(parents=True, exist_ok=True)
        stdout_path = log_dir / f"{name}.out"
        stderr_path = log_dir / f"{name}.err"
        # An ignored SIGINT survives exec: a supervisor started in the background by a shell
        # would hand it on, and the node would then miss the SIGINT that stopping begins with.
        reset_sigint = _default_sigint if signal.getsignal(signal.SIGINT) is signal.SIG_IGN else None
        with stdout_path.open("ab") as out, stderr_path.open("ab") as err:
            try:
                popen = subprocess.Popen(
                    list(argv),
                    cwd=cwd,
                    env=dict(env),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                    preexec_fn=reset_sigint,  # noqa: PLW1509 (it only resets one signal)
                )
            except OSError as exc:
                msg = f"cannot start {role} {name!r} on machine {machine!r}: {argv[0]!r}: {exc.strerror}"
                raise DeploymentError(msg) from exc
        record = ProcessRecord(
            role=role,
            name=name,
            machine=machine,
            pid=popen.pid,
            pgid=popen.pid,
            start_ticks=start_ticks(popen.pid),
            stdout_path=str(stdout_path),
            stderr_path=str(stderr_path),
            argv=tuple(argv),
        )
        return cls(record, popen)

    @property
    def record(self) -> ProcessRecord:
        """What identifies the process across restarts of the supervisor."""
        return self._record

    def poll(self) -> int | None:
        """Exit code if ended (negative: killed by that signal), else None.

        A re-attached process is not our child, so its exit code is unknown: -1 once it is gone.
        """
        if self._exit_code is not None:
            return self._exit_code
        if self._popen is not None:
            self._exit_code = self._popen.poll()
        elif not process_alive(self._record):
            self._exit_code = -1
        return self._exit_code

    def stop(self, *, grace: float, sigint_grace: float | None = None) -> int | None:
        """Stop the group; return the exit code if known.

        With ``sigint_grace``: SIGINT, then SIGTERM after ``sigint_grace`` seconds (as ``ros2
        launch`` stops a node); without: SIGTERM first. SIGKILL ``grace`` seconds after SIGTERM.
        """
        steps = [(signal.SIGINT, sigint_grace)] if sigint_grace is not None else []
        steps.append((signal.SIGTERM, grace))
        for sig, patience in steps:
            if self.poll() is not None:
                break
            self._signal_group(sig)
            self._wait_exit(patience)
        if self.poll() is None:
            self._signal_group(signal.SIGKILL)
            self._wait(5.0)
        # Children the process left behind in its group get the same end.
        self._signal_group(signal.SIGKILL)
        self._stop_following.set()
        for thread in self._followers:
            thread.join(timeout=2.0)
        return self.poll()

    def stderr_tail(self, lines: int = 20) -> tuple[str, ...]:
        """The last ``lines`` lines written to stderr."""
        return tail_lines(Path(self._record.stderr_path), lines)

    def follow(self, sink: OutputSink) -> None:
        """Stream new stdout/stderr lines to ``sink`` on background threads until stop()."""
        for stream, path in (("stdout", self._record.stdout_path), ("stderr", self._record.stderr_path)):
            thread = threading.Thread(
                target=self._follow_file,
                args=(Path(path), stream, sink),
                name=f"follow-{self._record.name}-{stream}",
                daemon=True,
            )
            thread.start()
            self._followers.append(thread)

    def _follow_file(self, path: Path, stream: Literal["stdout", "stderr"], sink: OutputSink) -> None:
        record = self._record
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            pending = b""
            while True:
                chunk = handle.read()
                if chunk:
                    pending += chunk
                    *complete, pending = pending.split(b"\n")
                    for raw in complete:
                        sink(record.machine, record.name, stream, raw.decode(errors="replace"))
                    continue
                if self._stop_following.is_set() or self.poll() is not None:
                    if pending:
                        sink(record.machine, record.name, stream, pending.decode(errors="replace"))
                    return
                # Files have no change notification that works everywhere; a short sleep is cheap.
                self._stop_following.wait(_FOLLOW_INTERVAL_S)

    def _wait_exit(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            self._wait(min(0.05, max(0.0, deadline - time.monotonic())))

    def _wait(self, timeout: float) -> None:
        if self._popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=timeout)
        else:
            time.sleep(timeout)

    def _signal_group(self, sig: signal.Signals) -> None:
        # Only signal a group whose leader is provably ours, or whose leader we already reaped.
        if self._popen is None and not process_alive(self._record):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._record.pgid, sig)


def _default_sigint() -> None:
    # Runs in the child between fork and exec.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def tail_lines(path: Path, lines: int) -> tuple[str, ...]:
    """The last ``lines`` lines of a text file (empty if it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read()
    except OSError:
        return ()
    text = data.decode(errors="replace").splitlines()
    return tuple(deque(text, maxlen=lines))
