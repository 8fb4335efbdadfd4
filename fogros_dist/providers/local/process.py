"""Supervised process groups on this machine.

Each process runs in its own session (so one signal reaches everything it spawned). Its stdout
and stderr go through pipes to a log pump (:mod:`fogros_dist.rotating_log`, a process of its own
that outlives the supervisor) which writes them once, bounded and rotated, to
``<log_dir>/<name>.out`` and ``.err``, so `fogros-dist logs` can read them from another shell. A
process is identified by PID *and* its start time in /proc, so a PID the kernel recycled is never
signalled.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from fogros_dist import rotating_log
from fogros_dist.errors import DeploymentError
from fogros_dist.providers.base import OutputSink
from fogros_dist.spec import ProcessRecord

__all__ = ["LocalProcess", "process_alive", "start_ticks"]

# How often a follower looks for new output: fast enough for interactive logs, cheap when idle.
_FOLLOW_INTERVAL_S = 0.05
# How long an ended process's last output may take to reach its files (the pump drains the pipe).
_DRAIN_S = 1.0


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

    def __init__(
        self,
        record: ProcessRecord,
        popen: subprocess.Popen[bytes] | None = None,
        *,
        pump: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self._record = record
        self._popen = popen
        # The log pump, when this process started it (to reap it); None for an attached one.
        self._pump = pump
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
        log_max_bytes: int = rotating_log.DEFAULT_MAX_BYTES,
    ) -> LocalProcess:
        """Start ``argv`` in a new session with output to ``log_dir/<name>.{out,err}``, each
        rotated before it grows past ``log_max_bytes`` (``rotating_log.BACKUPS`` older parts kept).

        Raises DeploymentError if the program cannot be executed at all, or its log directory
        cannot be made.
        """
        if not name or "/" in name or "\0" in name or name in (".", ".."):
            msg = f"process name {name!r} is invalid: it names files in {log_dir}; use a plain name"
            raise DeploymentError(msg)
        try:
            _private_dir(log_dir)
        except OSError as exc:
            msg = f"cannot start {role} {name!r} on machine {machine!r}: logs in {log_dir}: {exc.strerror}"
            raise DeploymentError(msg) from exc
        stdout_path = log_dir / f"{name}.out"
        stderr_path = log_dir / f"{name}.err"
        # An ignored SIGINT survives exec: a supervisor started in the background by a shell
        # would hand it on, and the node would then miss the SIGINT that stopping begins with.
        reset_sigint = _default_sigint if signal.getsignal(signal.SIGINT) is signal.SIG_IGN else None
        pump, out_write, err_write = _start_pump(stdout_path, stderr_path, max_bytes=log_max_bytes)
        try:
            popen = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out_write,
                stderr=err_write,
                start_new_session=True,
                preexec_fn=reset_sigint,  # noqa: PLW1509 (it only resets one signal)
            )
        except (OSError, ValueError) as exc:
            os.close(out_write)
            os.close(err_write)
            with contextlib.suppress(subprocess.TimeoutExpired):
                pump.wait(timeout=_DRAIN_S)
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            msg = f"cannot start {role} {name!r} on machine {machine!r}: {argv[0]!r}: {reason}"
            raise DeploymentError(msg) from exc
        # The pump ends when the process (and whatever it spawned) has closed these.
        os.close(out_write)
        os.close(err_write)
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
        return cls(record, popen, pump=pump)

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
        code: int | None = None
        if self._popen is not None:
            code = self._popen.poll()
        elif not process_alive(self._record):
            code = -1
        if code is not None:
            # Its last lines are in its files before anyone hears that it ended (stderr tails).
            drained = rotating_log.wait_drained(Path(self._record.stderr_path), _DRAIN_S)
            if drained and self._pump is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._pump.wait(timeout=_DRAIN_S)
            self._exit_code = code
        return self._exit_code

    @property
    def unreachable(self) -> str | None:
        """Always None: this machine is always reachable."""
        return None

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
        """The last ``lines`` lines written to stderr (across its rotated parts)."""
        return rotating_log.tail_lines(Path(self._record.stderr_path), lines)

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
        # From the end of what is there now, on through rotations (tail -F).
        cursor = rotating_log.LogCursor(path, from_end=True)
        pending = b""
        try:
            while True:
                chunk = cursor.read()
                if chunk:
                    pending += chunk
                    *complete, pending = pending.split(b"\n")
                    for raw in complete:
                        sink(record.machine, record.name, stream, raw.decode(errors="replace"))
                    continue
                # poll() returns once the process ended and its pump wrote its last output.
                if self._stop_following.is_set() or self.poll() is not None:
                    chunk = cursor.read()
                    if chunk:
                        pending += chunk
                        continue
                    if pending:
                        sink(record.machine, record.name, stream, pending.decode(errors="replace"))
                    return
                # Files have no change notification that works everywhere; a short sleep is cheap.
                self._stop_following.wait(_FOLLOW_INTERVAL_S)
        finally:
            cursor.close()

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


def _private_dir(path: Path) -> None:
    """Make ``path`` (and missing parents) 0700: logs hold what the processes print."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077 and path.stat().st_uid == os.getuid():
        path.chmod(0o700)


def _start_pump(
    stdout_path: Path, stderr_path: Path, *, max_bytes: int
) -> tuple[subprocess.Popen[bytes], int, int]:
    """Start the log pump for a process about to start; it and the pipes' write ends for the
    process's stdout and stderr.

    Raises:
        DeploymentError: the log files or the pump could not be made.
    """
    opened: list[int] = []
    try:
        # The files exist once start() returns, as they did when processes wrote them directly.
        for path in (stdout_path, stderr_path):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600))
        out_read, out_write = os.pipe()
        opened += (out_read, out_write)
        err_read, err_write = os.pipe()
        opened += (err_read, err_write)
        # Locked here and handed on, so the lock is held from before the process starts until
        # the pump has written its last byte (see rotating_log.wait_drained).
        lock_fd = os.open(rotating_log.lock_path(stdout_path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        opened.append(lock_fd)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        argv = rotating_log.pump_argv(
            sources=((out_read, stdout_path), (err_read, stderr_path)), lock_fd=lock_fd, max_bytes=max_bytes
        )
        pump = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(out_read, err_read, lock_fd),
            start_new_session=True,
        )
    except OSError as exc:
        for fd in opened:
            os.close(fd)
        msg = f"cannot write the logs of {stdout_path.stem!r} in {stdout_path.parent}: {exc.strerror}"
        raise DeploymentError(msg) from exc
    # The pump holds the read ends and the lock now.
    for fd in (out_read, err_read, lock_fd):
        os.close(fd)
    return pump, out_write, err_write
