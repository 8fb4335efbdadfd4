"""Remote supervision over real SSH: start, follow, exit codes, stop, a cut connection, reattach.

The namespace hosts share this machine's PID namespace, so a remote process's liveness is also
checked directly in /proc (PID and start time, as the agent records them).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ssh_fixtures import make_target
from sshlab import LabHost, SSHLab

from fogros_dist.errors import DeploymentError
from fogros_dist.providers.local.process import process_alive
from fogros_dist.remote.machine import RemoteMachines, RemoteSettings
from fogros_dist.spec import Host

pytestmark = pytest.mark.netns


class Lines:
    """An OutputSink that keeps (stream, text) pairs."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, machine: str, name: str, stream: str, text: str) -> None:
        del machine, name
        with self._lock:
            self.got.append((stream, text))

    def texts(self, stream: str = "stdout") -> list[str]:
        with self._lock:
            return [text for s, text in self.got if s == stream]


def _wait(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture
def machines(
    ssh_lab: SSHLab, beta: LabHost, known_hosts: Path, wheel_cache: Path
) -> Iterator[tuple[RemoteMachines, Host]]:
    """A deployment directory on beta (no runtime needed: these processes are shell commands)."""
    remote = RemoteMachines(provider="ssh", cache_dir=wheel_cache)
    stages: list[tuple[str, str]] = []
    host = remote.establish(
        make_target(ssh_lab, beta, known_hosts),
        RemoteSettings(remote_dir=beta.remote_dir, ros_setup="none"),
        deployment="proc-test",
        domain_id=150,
        progress=lambda stage, message: stages.append((stage, message)),
    )
    assert [stage for stage, _ in stages] == ["ssh-ready", "running"]
    yield remote, host
    remote.terminate(host)
    remote.close()


def test_exit_code_stderr_tail_and_every_line_in_order(machines: tuple[RemoteMachines, Host]) -> None:
    remote, host = machines
    script = "for i in 1 2 3 4 5; do echo line $i; echo problem $i >&2; done; exit 3"
    proc = remote.start(host, role="node", name="counter", argv=("sh", "-c", script), env=())
    lines = Lines()
    proc.follow(lines)
    _wait(lambda: proc.poll() is not None)
    assert proc.poll() == 3
    assert proc.stderr_tail(2) == ("problem 4", "problem 5")
    _wait(lambda: len(lines.texts("stderr")) == 5)
    assert lines.texts() == [f"line {i}" for i in range(1, 6)]
    assert proc.record.stderr_path == f"{host.workdir}/logs/counter.err"
    assert proc.stop(grace=1.0) == 3


def test_stop_terms_the_group_then_kills_it_after_the_grace(machines: tuple[RemoteMachines, Host]) -> None:
    remote, host = machines
    # The sleeping child shares the process group: it must go too.
    polite = remote.start(host, role="node", name="polite", argv=("sh", "-c", "sleep 60 & wait"), env=())
    stubborn = remote.start(
        host,
        role="node",
        name="stubborn",
        argv=("sh", "-c", "trap '' TERM; sleep 60 & wait; sleep 60"),
        env=(),
    )
    assert polite.poll() is None
    assert process_alive(polite.record)
    assert polite.stop(grace=2.0) == -15
    started = time.monotonic()
    assert stubborn.stop(grace=0.5) == -9
    assert time.monotonic() - started < 5.0
    assert not process_alive(polite.record)
    assert not process_alive(stubborn.record)


def test_output_resumes_after_the_connection_is_cut_and_the_node_runs_on(
    machines: tuple[RemoteMachines, Host], beta: LabHost
) -> None:
    remote, host = machines
    script = "i=0; while [ $i -lt 40 ]; do i=$((i+1)); echo tick $i; sleep 0.05; done"
    proc = remote.start(host, role="node", name="ticker", argv=("sh", "-c", script), env=())
    lines = Lines()
    proc.follow(lines)
    _wait(lambda: len(lines.texts()) >= 5)
    assert beta.kill_sessions() >= 1
    # The node is not a child of the SSH session: it runs on.
    assert process_alive(proc.record)
    _wait(lambda: proc.poll() is not None)
    assert proc.poll() == 0
    _wait(lambda: len(lines.texts()) >= 40)
    # Resumed from the byte offset it had reached: nothing lost, nothing twice.
    assert lines.texts() == [f"tick {i}" for i in range(1, 41)]


def test_attach_from_another_supervisor_finds_stops_and_reaps(
    machines: tuple[RemoteMachines, Host], wheel_cache: Path
) -> None:
    remote, host = machines
    proc = remote.start(host, role="node", name="long", argv=("sleep", "60"), env=())
    stray = remote.start(host, role="node", name="stray", argv=("sleep", "60"), env=())
    # A new RemoteMachines has no connection and no memory: only the Host and the record.
    other = RemoteMachines(provider="ssh", cache_dir=wheel_cache)
    try:
        attached = other.attach(host, proc.record)
        assert attached.poll() is None
        assert attached.stop(grace=2.0) == -15
        assert not process_alive(proc.record)
        # terminate stops whatever the deployment left running on the host.
        other.terminate(host)
        assert not process_alive(stray.record)
    finally:
        other.close()


def test_a_missing_executable_is_named(machines: tuple[RemoteMachines, Host]) -> None:
    remote, host = machines
    with pytest.raises(
        DeploymentError, match=r"cannot start node 'nope' on machine 'gpu': cannot execute 'no-such-program'"
    ):
        remote.start(host, role="node", name="nope", argv=("no-such-program",), env=())


# Prints the signal it got and exits 0, unless told to ignore it (the host runs this same Python).
_SIGNAL_REPORTER = (
    "import signal, sys, time\n"
    "ignore = set(sys.argv[1:])\n"
    "def seen(sig, frame):\n"
    "    print(signal.Signals(sig).name, flush=True)\n"
    "    if signal.Signals(sig).name not in ignore:\n"
    "        sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, seen)\n"
    "if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:\n"
    "    signal.signal(signal.SIGINT, seen)\n"
    "print('up', flush=True)\n"
    "while True:\n"
    "    time.sleep(0.05)\n"
)


def test_a_node_is_stopped_with_sigint_then_sigterm(machines: tuple[RemoteMachines, Host]) -> None:
    remote, host = machines
    polite = remote.start(
        host, role="node", name="polite", argv=(sys.executable, "-u", "-c", _SIGNAL_REPORTER), env=()
    )
    deaf = remote.start(
        host,
        role="node",
        name="deaf",
        argv=(sys.executable, "-u", "-c", _SIGNAL_REPORTER, "SIGINT"),
        env=(),
    )
    for proc in (polite, deaf):
        _wait(lambda proc=proc: Path(proc.record.stdout_path).read_text().startswith("up"))
    # SIGINT reaches the node even though the agent's wrapper ignores it for itself.
    assert polite.stop(grace=5.0, sigint_grace=5.0) == 0
    assert Path(polite.record.stdout_path).read_text().split() == ["up", "SIGINT"]
    assert deaf.stop(grace=5.0, sigint_grace=0.3) == 0
    assert Path(deaf.record.stdout_path).read_text().split() == ["up", "SIGINT", "SIGTERM"]


def test_upload_makes_the_directories_a_node_files_path_needs(
    machines: tuple[RemoteMachines, Host], tmp_path: Path
) -> None:
    remote, host = machines
    local = tmp_path / "params.yaml"
    local.write_text("/**:\n  ros__parameters:\n    speed: 2\n")
    placed = remote.upload(host, local, "files/robot1.planner/params-1-params.yaml")
    assert str(placed) == f"{host.workdir}/files/robot1.planner/params-1-params.yaml"
    # The namespace hosts share this machine's file system.
    assert placed.read_text() == local.read_text()


def test_a_lost_host_never_holds_up_a_poll_and_its_process_is_heard_from_once_it_is_back(
    machines: tuple[RemoteMachines, Host], beta: LabHost
) -> None:
    """With beta's link cut, reaching it takes a whole retry budget (4 attempts, 14 s or more), but
    a supervisor polling several processes in one loop must see the others' ends meanwhile: each
    poll waits at most 2 s, says unreachable once the check failed, and the exit comes through
    after the link is back."""
    remote, host = machines
    proc = remote.start(host, role="node", name="lost", argv=("sh", "-c", "sleep 6; exit 4"), env=())
    assert proc.poll() is None
    assert proc.unreachable is None
    link = ["ip", "-n", beta.netns, "link", "set", beta.veth_host]
    subprocess.run([*link, "down"], check=True)
    try:
        slowest = 0.0
        deadline = time.monotonic() + 60.0
        while proc.unreachable is None:
            assert time.monotonic() < deadline, "the check never failed"
            started = time.monotonic()
            assert proc.poll() is None
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.2)
        assert slowest < 4.0, slowest
        assert "machine 'gpu'" in proc.unreachable, proc.unreachable
    finally:
        subprocess.run([*link, "up"], check=True)
    _wait(lambda: proc.poll() is not None, timeout=60.0)
    assert proc.poll() == 4
    assert proc.unreachable is None
