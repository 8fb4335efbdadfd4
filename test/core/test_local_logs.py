"""Process output on this machine: written once, by a pump, bounded and rotated (rotating_log.py).

Real processes print real output through real pipes; the assertions read the files back.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from fogros_dist import rotating_log
from fogros_dist.providers.local.process import LocalProcess, process_alive

MAX = 64 * 1024


def _start(tmp_path: Path, code: str, *, name: str = "p", max_bytes: int = MAX) -> LocalProcess:
    return LocalProcess.start(
        role="node",
        name=name,
        machine="m",
        argv=[sys.executable, "-u", "-c", code],
        env=dict(os.environ),
        cwd=tmp_path,
        log_dir=tmp_path / "logs",
        log_max_bytes=max_bytes,
    )


def _wait_for(predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _numbers(path: Path) -> list[int]:
    """Every line of the log, across its parts, oldest first, as numbers."""
    text = b"".join(part.read_bytes() for part in rotating_log.parts(path)).decode()
    return [int(line) for line in text.splitlines()]


def test_output_rotates_at_the_size_keeps_three_parts_and_loses_no_line_within_them(tmp_path: Path) -> None:
    lines = 100_000  # ~590 KB: nine rotations of 64 KiB
    proc = _start(tmp_path, f"import sys\nfor i in range({lines}): print(i)\nprint('done', file=sys.stderr)")
    _wait_for(lambda: proc.poll() is not None)
    assert proc.poll() == 0
    out = Path(proc.record.stdout_path)
    parts = rotating_log.parts(out)
    assert [p.name for p in parts] == ["p.out.3", "p.out.2", "p.out.1", "p.out"]
    for part in parts:
        assert part.stat().st_size <= MAX
        assert part.read_bytes().endswith(b"\n")  # rotated at line boundaries
        assert stat.S_IMODE(part.stat().st_mode) == 0o600
    kept = _numbers(out)
    # The newest lines, contiguous up to the last one: the oldest parts went, nothing in between.
    assert kept == list(range(lines - len(kept), lines))
    assert len(kept) * 6 > 3 * MAX
    assert stat.S_IMODE(out.parent.stat().st_mode) == 0o700
    assert proc.stderr_tail() == ("done",)


def test_a_tail_spans_rotated_parts(tmp_path: Path) -> None:
    # 64 KiB of filler on stderr, then three short lines: the last rotation leaves them split.
    code = (
        "import sys\nsys.stderr.write('x' * 65530 + '\\n')\n"
        "for i in range(3): print(f'last {i}', file=sys.stderr)"
    )
    proc = _start(tmp_path, code)
    _wait_for(lambda: proc.poll() is not None)
    err = Path(proc.record.stderr_path)
    assert len(rotating_log.parts(err)) == 2
    assert proc.stderr_tail(3) == ("last 0", "last 1", "last 2")
    # The line before them is there too (cut to the tail's 64 KiB bound).
    assert set(rotating_log.tail_lines(err, 4)[0]) == {"x"}


def test_a_line_longer_than_a_file_is_split_not_lost(tmp_path: Path) -> None:
    proc = _start(tmp_path, "print('y' * 150000)")
    _wait_for(lambda: proc.poll() is not None)
    out = Path(proc.record.stdout_path)
    text = b"".join(p.read_bytes() for p in rotating_log.parts(out))
    assert text == b"y" * 150000 + b"\n"
    assert all(p.stat().st_size <= MAX for p in rotating_log.parts(out))


def test_a_follower_sees_every_line_once_in_order_across_rotations(tmp_path: Path) -> None:
    lines = 60_000
    code = f"import time\ntime.sleep(1.0)\nfor i in range({lines}): print(i)"
    proc = _start(tmp_path, code)
    seen: list[int] = []
    proc.follow(lambda _machine, _name, stream, text: seen.append(int(text)) if stream == "stdout" else None)
    _wait_for(lambda: proc.poll() is not None)
    proc.stop(grace=1.0)  # joins the followers
    assert seen == list(range(lines))
    assert len(rotating_log.parts(Path(proc.record.stdout_path))) == 4


def test_the_last_lines_are_on_disk_when_the_exit_is_seen(tmp_path: Path) -> None:
    # poll() reports the exit only after the pump has written what the process printed.
    for attempt in range(5):
        proc = _start(
            tmp_path,
            f"import sys\nprint('a' * 60000)\nprint('final {attempt}', file=sys.stderr)\nsys.exit(4)",
        )
        _wait_for(lambda proc=proc: proc.poll() is not None)  # type: ignore[misc]
        assert proc.poll() == 4
        assert proc.stderr_tail(1) == (f"final {attempt}",)


def test_output_keeps_being_written_after_the_supervisor_is_killed(tmp_path: Path) -> None:
    # The supervisor (a child process here) starts a node, then is SIGKILLed: the pump is a
    # process of its own, so the node neither dies of a broken pipe nor loses its output.
    record_path = tmp_path / "record.txt"
    supervisor_code = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from fogros_dist.providers.local.process import LocalProcess\n"
        "proc = LocalProcess.start(role='node', name='n', machine='m', argv=[sys.executable, '-u', '-c',"
        " 'import time\\nfor i in range(1000000): print(i); time.sleep(0.001)'], env=dict(os.environ),"
        f" cwd=Path({str(tmp_path)!r}), log_dir=Path({str(tmp_path / 'logs')!r}), log_max_bytes=4096)\n"
        f"Path({str(record_path)!r}).write_text(f'{{proc.record.pid}} {{proc.record.start_ticks}}')\n"
        "time.sleep(600)\n"
    )
    supervisor = subprocess.Popen([sys.executable, "-c", supervisor_code], start_new_session=True)
    try:
        _wait_for(lambda: record_path.exists() and record_path.read_text())
        pid, ticks = (int(x) for x in record_path.read_text().split())
        out = tmp_path / "logs" / "n.out"
        _wait_for(lambda: out.exists() and out.stat().st_size > 0)
        os.kill(supervisor.pid, signal.SIGKILL)
        supervisor.wait()
        before = _numbers(out)[-1]
        # Long enough to rotate at 4 KiB more than once (about 6 bytes a line, ~1000 lines a second).
        _wait_for(lambda: len(rotating_log.parts(out)) == 4 and _numbers(out)[-1] > before + 1000, timeout=60)
        numbers = _numbers(out)
        assert numbers == list(range(numbers[0], numbers[-1] + 1))
    finally:
        supervisor.kill()
        supervisor.wait()
        if record_path.exists() and record_path.read_text():
            pid, ticks = (int(x) for x in record_path.read_text().split())
            from fogros_dist.spec import ProcessRecord

            record = ProcessRecord(
                role="node",
                name="n",
                machine="m",
                pid=pid,
                pgid=pid,
                start_ticks=ticks,
                stdout_path=str(tmp_path / "logs/n.out"),
                stderr_path=str(tmp_path / "logs/n.err"),
                argv=(),
            )
            LocalProcess(record).stop(grace=1.0)
            assert not process_alive(record)


def test_a_pump_drains_what_a_child_left_behind_once_it_ends(tmp_path: Path) -> None:
    # The process exits while a child it left in its group still writes: poll() does not wait
    # for that child (bounded drain), and stop() ends both, after which the pump ends too.
    code = (
        "import subprocess, sys\n"
        "loop = 'import time\\nwhile True: print(1); time.sleep(0.05)'\n"
        "subprocess.Popen([sys.executable, '-u', '-c', loop])\n"
    )
    proc = _start(tmp_path, code)
    t0 = time.monotonic()
    _wait_for(lambda: proc.poll() is not None)
    assert time.monotonic() - t0 < 10  # the drain gives up after a second (generous margin)
    proc.stop(grace=0.5)
    assert rotating_log.wait_drained(Path(proc.record.stdout_path), 10.0)
