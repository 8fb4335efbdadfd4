"""The host agent's supervised output: written once by the wrapper, bounded, rotated, followed.

The agent runs here as it runs on a host (``host_agent.py serve``, JSON lines on stdin/stdout);
only the SSH channel between robot and agent is left out, since what is tested is the wrapper
and the follow operation on the host's own files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fogros_dist.remote import host_agent

MAX = 8192


class Agent:
    """A running ``host_agent.py serve`` and its answers by request id (frames kept in order)."""

    def __init__(self) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, host_agent.__file__, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self._answers: dict[int, Any] = {}
        self.frames: dict[int, list[str]] = {}
        self._cond = threading.Condition()
        self._next = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            message = json.loads(line)
            if "id" not in message:
                continue
            with self._cond:
                if "frame" in message:
                    self.frames.setdefault(message["id"], []).append(message["frame"])
                else:
                    self._answers[message["id"]] = message
                self._cond.notify_all()

    def send(self, op: str, args: dict[str, Any]) -> int:
        assert self.popen.stdin is not None
        self._next += 1
        self.popen.stdin.write((json.dumps({"id": self._next, "op": op, "args": args}) + "\n").encode())
        self.popen.stdin.flush()
        return self._next

    def answer(self, ident: int, timeout: float = 60.0) -> Any:
        with self._cond:
            assert self._cond.wait_for(lambda: ident in self._answers, timeout), f"no answer to {ident}"
            message = self._answers[ident]
        assert "ok" in message, message
        return message["ok"]


@pytest.fixture
def agent() -> Iterator[Agent]:
    running = Agent()
    yield running
    assert running.popen.stdin is not None
    running.popen.stdin.close()
    running.popen.wait(timeout=10)


def _start(agent: Agent, tmp_path: Path, code: str, **extra: Any) -> dict[str, Any]:
    spec = {
        "name": "n",
        "rundir": str(tmp_path / "run"),
        "logdir": str(tmp_path / "logs"),
        "cwd": str(tmp_path),
        "env": dict(os.environ),
        "argv": [sys.executable, "-u", "-c", code],
        **extra,
    }
    answer = agent.answer(agent.send("start", spec))
    record: dict[str, Any] = answer["record"]
    return record


def _parts(path: Path) -> list[Path]:
    older = sorted(path.parent.glob(f"{path.name}.*"), key=lambda p: -int(p.suffix[1:]))
    return [*older, path]


def test_output_is_rotated_at_the_size_the_robot_sends_and_followed_across_rotations(
    agent: Agent, tmp_path: Path
) -> None:
    lines = 20_000  # ~110 KB: a dozen rotations of 8 KiB
    # A short pause every 500 lines: the follower's pace, not the pipe's, is not what is tested.
    code = (
        "import sys, time\ntime.sleep(0.5)\n"
        f"for i in range({lines}):\n    print(i)\n    if i % 500 == 0: time.sleep(0.01)\nsys.exit(3)"
    )
    record = _start(agent, tmp_path, code, log_max_bytes=MAX)
    follow = agent.send(
        "follow",
        {
            "rundir": str(tmp_path / "run"),
            "name": "n",
            "stdout": record["stdout"],
            "stderr": record["stderr"],
            "from_out": 0,
            "from_err": 0,
        },
    )
    final = agent.answer(follow)
    assert final == {"state": "exited", "code": 3}
    followed = [int(frame.split(" ", 2)[2]) for frame in agent.frames[follow] if frame.startswith("O ")]
    assert followed == list(range(lines))
    out = Path(record["stdout"])
    parts = _parts(out)
    assert [p.name for p in parts] == ["n.out.3", "n.out.2", "n.out.1", "n.out"]
    assert all(p.stat().st_size <= MAX for p in parts)
    kept = [int(x) for x in b"".join(p.read_bytes() for p in parts).decode().split()]
    assert kept == list(range(lines - len(kept), lines))
    assert oct((tmp_path / "logs").stat().st_mode & 0o777) == "0o700"
    assert oct(out.stat().st_mode & 0o777) == "0o600"


def test_the_exit_is_recorded_after_the_last_output_is_in_the_files(agent: Agent, tmp_path: Path) -> None:
    code = "import sys\nprint('x' * 100000)\nprint('bye', file=sys.stderr)\nsys.exit(5)"
    record = _start(agent, tmp_path, code)
    deadline = time.monotonic() + 30
    exit_file = tmp_path / "run" / "n.exit"
    while not exit_file.exists():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # Read the instant the exit is recorded: everything printed before is there.
    assert Path(record["stderr"]).read_text() == "bye\n"
    assert Path(record["stdout"]).read_bytes() == b"x" * 100000 + b"\n"
    assert json.loads(exit_file.read_text())["code"] == 5


def test_a_command_that_cannot_run_is_recorded_with_its_reason(agent: Agent, tmp_path: Path) -> None:
    spec = {
        "name": "n",
        "rundir": str(tmp_path / "run"),
        "logdir": str(tmp_path / "logs"),
        "cwd": str(tmp_path),
        "env": dict(os.environ),
        "argv": [str(tmp_path / "no-such-program")],
    }
    answer = agent.answer(agent.send("start", spec))
    assert "cannot execute" in answer["error"]
    assert "cannot execute" in (tmp_path / "logs" / "n.err").read_text()
    assert json.loads((tmp_path / "run" / "n.exit").read_text())["code"] == 127
