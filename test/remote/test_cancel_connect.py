"""Cancelling the SSH wait: an address that never answers, a refusing port, a jump host that cannot
reach its next hop. Each connect raises Cancelled within 2 s of ``cancel.set()`` (asserted with a
3 s margin, CANCEL_BOUND_S) and says what it was waiting for; the wait shows live ``waiting``
lines naming the attempt and the seconds elapsed.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cancel_helpers import CANCEL_BOUND_S, after, black_hole, cancel_when
from ssh_fixtures import make_target
from sshlab import LabHost, SSHLab, jump_spec

from fogros_dist.remote.runner import RetryPolicy, SSHRunner

pytestmark = pytest.mark.netns

# As patient as the AWS provider's first connection (a booting instance): 40 attempts, 10 s each.
PATIENT = RetryPolicy(attempts=40, first_delay_s=1.0, max_delay_s=5.0, timeout_s=10.0)
_LINE = re.compile(r"ssh (?P<route>\S+(?: via \S+)?): attempt (?P<n>\d+) of 40, (?P<s>\d+) s, (?P<status>.+)")


def _connecting(runner: SSHRunner, progress: list[tuple[str, str]]) -> Callable[[threading.Event], None]:
    """A call that connects ``runner`` with ``cancel``, recording its progress lines."""

    def record(stage: str, line: str) -> None:
        progress.append((stage, line))

    def connect(cancel: threading.Event) -> None:
        runner.connect(cancel=cancel, progress=record)

    return connect


def _lines(progress: list[tuple[str, str]]) -> list[re.Match[str]]:
    found = []
    for stage, message in progress:
        assert stage == "waiting", (stage, message)
        match = _LINE.fullmatch(message)
        assert match, message
        found.append(match)
    return found


def test_a_wait_for_an_address_that_never_answers_is_cancelled_at_once(
    ssh_lab: SSHLab, scratch_host: Callable[[], LabHost], tmp_path: Path
) -> None:
    host = scratch_host()
    known = tmp_path / "known_hosts"
    known.write_text(host.known_hosts_line())
    ssh_lab.stop_sshd(host)
    black_hole(host)
    # The precondition: SYNs vanish (neither refused nor unreachable).
    with pytest.raises(TimeoutError):
        socket.create_connection((host.address, host.port), timeout=1.0)
    progress: list[tuple[str, str]] = []
    runner = SSHRunner(make_target(ssh_lab, host, known), retry=PATIENT)
    started = time.monotonic()

    # Cancelled 6 s in: inside the first 10 s attempt, one progress line after 5 s.
    error, latency = cancel_when(after(6.0), _connecting(runner, progress))
    assert latency < CANCEL_BOUND_S, latency
    assert time.monotonic() - started < 6.0 + CANCEL_BOUND_S
    where = f"root@{host.address}:{host.port}"
    assert re.fullmatch(
        rf"machine 'gpu': stopped on request while connecting to {re.escape(where)} "
        r"\(ssh-ready: attempt 1 of 40, \d+\.\d s\)",
        str(error),
    ), error
    lines = _lines(progress)
    assert [(m["route"], m["n"], m["status"]) for m in lines] == [(where, "1", "no answer yet")]
    assert int(lines[0]["s"]) >= 5


def test_a_wait_for_a_refusing_port_is_cancelled_during_its_back_off(
    ssh_lab: SSHLab, beta: LabHost, known_hosts: Path
) -> None:
    # Nothing listens on this port of beta: every attempt is refused at once, then backs off.
    runner = SSHRunner(make_target(ssh_lab, beta, known_hosts, port=2299), retry=PATIENT)
    progress: list[tuple[str, str]] = []

    error, latency = cancel_when(after(8.0), _connecting(runner, progress))
    assert latency < CANCEL_BOUND_S, latency
    assert re.fullmatch(
        rf"machine 'gpu': stopped on request while connecting to root@{re.escape(beta.address)}:2299 "
        r"\(ssh-ready: attempt \d+ of 40, \d+\.\d s\)",
        str(error),
    ), error
    lines = _lines(progress)
    # The first refusal is shown at once, then one line per 5 s at most (during the back-off too:
    # attempts at 0, 1, 3, 7 s): attempt and time grow.
    assert len(lines) >= 2, progress
    assert lines[0]["n"] == "1"
    assert lines[0]["s"] == "0"
    assert all(m["status"] == "connection refused" for m in lines)
    assert [int(m["n"]) for m in lines] == sorted({int(m["n"]) for m in lines})
    assert int(lines[1]["s"]) >= 5


def test_a_jump_host_that_cannot_reach_the_next_hop_is_cancelled_while_it_tries(
    ssh_lab: SSHLab, bastion: LabHost, tmp_path: Path
) -> None:
    # A host behind the bastion whose packets vanish: the bastion's sshd waits for a TCP answer
    # that never comes, and the channel open through it blocks (paramiko: up to timeout_s).
    lost = ssh_lab.add_host("lostbehind", port=2023, behind=bastion)
    try:
        known = tmp_path / "known_hosts"
        known.write_text(bastion.known_hosts_line() + lost.known_hosts_line())
        black_hole(lost)
        target = make_target(ssh_lab, lost, known, proxy_jump=jump_spec(lost))
        runner = SSHRunner(target, retry=PATIENT)
        progress: list[tuple[str, str]] = []
        sessions_before = len(bastion.session_pids())

        error, latency = cancel_when(after(6.0), _connecting(runner, progress))
        assert latency < CANCEL_BOUND_S, latency
        doing = f"connecting to {target.route} (ssh-ready: attempt 1 of 40"
        assert str(error).startswith(f"machine 'gpu': stopped on request while {doing}"), error
        lines = _lines(progress)
        assert [(m["route"], m["n"]) for m in lines] == [(target.route, "1")]
        status = f"jump host root@{bastion.address}:22 still connecting to root@{lost.address}:2023"
        assert lines[0]["status"] == status
        # The bastion's own connection went with the cancelled attempt: its sshd session ends.
        deadline = time.monotonic() + 5.0
        while len(bastion.session_pids()) > sessions_before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(bastion.session_pids()) == sessions_before
    finally:
        ssh_lab.close_host(lost)
