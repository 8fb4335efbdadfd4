"""Supervised process groups on this machine: real processes, real signals."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from fogros_dist.providers.local.process import LocalProcess, process_alive, start_ticks


def _start(tmp_path: Path, code: str, name: str = "p") -> LocalProcess:
    return LocalProcess.start(
        role="node",
        name=name,
        machine="m",
        argv=[sys.executable, "-u", "-c", code],
        env=dict(os.environ),
        cwd=tmp_path,
        log_dir=tmp_path / "logs",
    )


def _wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_exit_code_and_stderr_tail(tmp_path: Path) -> None:
    proc = _start(tmp_path, "import sys; print('hello'); print('boom', file=sys.stderr); sys.exit(3)")
    _wait_for(lambda: proc.poll() is not None)
    assert proc.poll() == 3
    assert proc.stderr_tail() == ("boom",)
    assert Path(proc.record.stdout_path).read_text() == "hello\n"


def test_stop_escalates_to_sigkill_and_reaps_the_group(tmp_path: Path) -> None:
    # The parent ignores SIGTERM and has a child in its group: both must be gone after stop().
    code = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = _start(tmp_path, code)
    out = Path(proc.record.stdout_path)
    _wait_for(lambda: out.read_text().strip() != "")
    child_pid = int(out.read_text().split()[0])
    child_ticks = start_ticks(child_pid)
    t0 = time.monotonic()
    code_seen = proc.stop(grace=0.5)
    assert code_seen == -signal.SIGKILL
    assert time.monotonic() - t0 < 5
    _wait_for(lambda: start_ticks(child_pid) != child_ticks or _is_zombie(child_pid))


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def test_graceful_stop_reports_sigterm(tmp_path: Path) -> None:
    proc = _start(tmp_path, "import time; print('up', flush=True); time.sleep(60)")
    _wait_for(lambda: Path(proc.record.stdout_path).read_text() == "up\n")
    assert proc.stop(grace=5.0) == -signal.SIGTERM


def test_reattached_handle_stops_a_process_it_did_not_start(tmp_path: Path) -> None:
    proc = _start(tmp_path, "import time; time.sleep(60)")
    other = LocalProcess(proc.record)
    assert other.poll() is None
    assert process_alive(other.record)
    other.stop(grace=2.0)
    _wait_for(lambda: proc.poll() is not None)
    assert not process_alive(proc.record)


def test_a_recycled_pid_is_never_signalled(tmp_path: Path) -> None:
    proc = _start(tmp_path, "import time; time.sleep(60)")
    # Same PID, different start time: this is what a recycled PID looks like.
    forged = type(proc.record)(**{**proc.record.__dict__, "start_ticks": proc.record.start_ticks + 1})
    LocalProcess(forged).stop(grace=0.1)
    assert proc.poll() is None
    proc.stop(grace=2.0)


def test_follow_streams_lines_with_machine_and_stream(tmp_path: Path) -> None:
    lines: list[tuple[str, str, str, str]] = []
    seen = threading.Event()

    def sink(machine: str, name: str, stream: str, text: str) -> None:
        lines.append((machine, name, stream, text))
        if text == "err-line":
            seen.set()

    proc = _start(
        tmp_path, "import sys, time; time.sleep(0.3); print('out-line'); print('err-line', file=sys.stderr)"
    )
    proc.follow(sink)  # type: ignore[arg-type]
    assert seen.wait(10)
    _wait_for(lambda: proc.poll() is not None)
    proc.stop(grace=1.0)
    assert ("m", "p", "stdout", "out-line") in lines
    assert ("m", "p", "stderr", "err-line") in lines


# A process that says which signal it got, and exits 0 (or ignores it, with ``ignore``).
_SIGNAL_REPORTER = (
    "import signal, sys, time\n"
    "ignore = set(sys.argv[1:])\n"
    "def seen(sig, frame):\n"
    "    name = signal.Signals(sig).name\n"
    "    print(name, flush=True)\n"
    "    if name not in ignore:\n"
    "        sys.exit(0)\n"
    "signal.signal(signal.SIGINT, seen)\n"
    "signal.signal(signal.SIGTERM, seen)\n"
    "print('up', flush=True)\n"
    "while True:\n"
    "    time.sleep(0.05)\n"
)


def _start_reporter(tmp_path: Path, *ignore: str) -> LocalProcess:
    proc = LocalProcess.start(
        role="node",
        name="reporter",
        machine="m",
        argv=[sys.executable, "-u", "-c", _SIGNAL_REPORTER, *ignore],
        env=dict(os.environ),
        cwd=tmp_path,
        log_dir=tmp_path / "logs",
    )
    _wait_for(lambda: Path(proc.record.stdout_path).read_text().startswith("up"))
    return proc


def test_a_node_is_stopped_with_sigint_first(tmp_path: Path) -> None:
    proc = _start_reporter(tmp_path)
    assert proc.stop(grace=5.0, sigint_grace=5.0) == 0
    assert Path(proc.record.stdout_path).read_text().split() == ["up", "SIGINT"]


def test_sigint_escalates_to_sigterm_after_its_grace(tmp_path: Path) -> None:
    proc = _start_reporter(tmp_path, "SIGINT")
    assert proc.stop(grace=5.0, sigint_grace=0.3) == 0
    assert Path(proc.record.stdout_path).read_text().split() == ["up", "SIGINT", "SIGTERM"]


def test_an_ignored_sigint_is_not_handed_on(tmp_path: Path) -> None:
    # A supervisor started in the background by a shell has SIGINT ignored; its nodes must not.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        proc = _start(tmp_path, "import time; print('up', flush=True); time.sleep(60)")
    finally:
        signal.signal(signal.SIGINT, previous)
    _wait_for(lambda: Path(proc.record.stdout_path).read_text() == "up\n")
    # Python turns a default SIGINT into KeyboardInterrupt (and then dies of SIGINT); an ignored
    # one would have left it running until SIGTERM.
    assert proc.stop(grace=5.0, sigint_grace=5.0) == -signal.SIGINT
    assert "KeyboardInterrupt" in "\n".join(proc.stderr_tail())
