"""Cancelling an SSH connect on this machine's loopback, no root needed: a peer that accepts TCP
and never sends an SSH banner (the paramiko wait on a live connection), and a port nothing
listens on (the back-off between refused attempts). Cancelled within 2 s of ``cancel.set()``
(asserted with a 3 s margin, CANCEL_BOUND_S); without a cancel, the same waits run their course.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cancel_helpers import CANCEL_BOUND_S, after, cancel_when

from fogros_dist.errors import ProvisionError
from fogros_dist.remote.runner import RetryPolicy, SSHRunner
from fogros_dist.remote.target import SSHTarget

PATIENT = RetryPolicy(attempts=40, first_delay_s=1.0, max_delay_s=5.0, timeout_s=10.0)


@pytest.fixture
def silent_peer() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections and never says a word; its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def _target(port: int, tmp_path: Path) -> SSHTarget:
    return SSHTarget(
        machine="gpu",
        alias="127.0.0.1",
        hostname="127.0.0.1",
        port=port,
        user="nobody",
        known_hosts=str(tmp_path / "known_hosts"),
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_peer_that_never_sends_a_banner_is_cancelled_while_paramiko_waits(
    silent_peer: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runner = SSHRunner(_target(silent_peer, tmp_path), retry=PATIENT)
    progress: list[str] = []

    def connect(cancel: threading.Event) -> None:
        runner.connect(cancel=cancel, progress=lambda _stage, line: progress.append(line))

    error, latency = cancel_when(after(6.0), connect)
    assert latency < CANCEL_BOUND_S, latency
    assert re.fullmatch(
        rf"machine 'gpu': stopped on request while connecting to nobody@127\.0\.0\.1:{silent_peer} "
        r"\(ssh-ready: attempt 1 of 40, \d+\.\d s\)",
        str(error),
    ), error
    # The TCP connection was made; the line says what is awaited now.
    assert progress == [f"ssh nobody@127.0.0.1:{silent_peer}: attempt 1 of 40, 5 s, SSH handshake under way"]
    # paramiko's own traceback of the closed socket is for --debug only: the user sees one line.
    time.sleep(0.3)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_refused_port_is_cancelled_between_attempts_and_runs_its_course_without(tmp_path: Path) -> None:
    port = _free_port()
    runner = SSHRunner(_target(port, tmp_path), retry=PATIENT)
    _error, latency = cancel_when(after(2.0), lambda cancel: runner.connect(cancel=cancel))
    assert latency < CANCEL_BOUND_S, latency
    # No cancel event: the bounded retries end by themselves with the one-line reason.
    quick = SSHRunner(_target(port, tmp_path), retry=RetryPolicy(attempts=3, first_delay_s=0.05))
    started = time.monotonic()
    with pytest.raises(ProvisionError, match=r"\(connection refused; 3 attempts in \d+\.\d s\)"):
        quick.connect()
    assert time.monotonic() - started < 5.0
