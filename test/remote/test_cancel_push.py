"""Cancelling a workspace push (rsync and the SFTP fallback) over a slow link: the push raises
Cancelled within 2 s of ``cancel.set()`` (asserted with a 3 s margin, CANCEL_BOUND_S), nothing of
it runs on afterwards on either side, and the next push finishes the job.

The host's link is shaped to 16 Mbit/s (tbf on both ends of its veth), so the 24 MB workspace
takes about 12 s to travel and the cancel surely lands mid-transfer.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cancel_helpers import CANCEL_BOUND_S, cancel_when
from ssh_fixtures import make_target
from sshlab import LabHost, SSHLab
from workspace_helpers import python_package, user_workspace

from fogros_dist.remote.agent import HostAgent
from fogros_dist.remote.runner import SSHRunner
from fogros_dist.remote.sync import SyncMethod, push_directory

pytestmark = pytest.mark.netns

_SHAPE = ["tbf", "rate", "16mbit", "burst", "32kbit", "latency", "400ms"]
METHODS = (
    pytest.param("rsync", marks=pytest.mark.skipif(shutil.which("rsync") is None, reason="needs rsync")),
    "sftp",
)


@pytest.fixture
def slow_agent(
    ssh_lab: SSHLab, scratch_host: Callable[[], LabHost], tmp_path: Path
) -> Iterator[tuple[LabHost, HostAgent]]:
    """An agent on a fresh host whose link is shaped to 16 Mbit/s."""
    host = scratch_host()
    subprocess.run(["tc", "qdisc", "replace", "dev", host.veth_root, "root", *_SHAPE], check=True)
    subprocess.run(
        ["ip", "netns", "exec", host.netns, "tc", "qdisc", "replace", "dev", host.veth_host, "root", *_SHAPE],
        check=True,
    )
    known = tmp_path / "known_hosts"
    known.write_text(host.known_hosts_line())
    runner = SSHRunner(make_target(ssh_lab, host, known))
    agent = HostAgent(runner, python="python3", remote_dir=host.remote_dir)
    yield host, agent
    agent.close()
    runner.close()


def _big_workspace(root: Path) -> Path:
    """The test user workspace plus a data package: 24 files of 1 MB, random (incompressible)."""
    user_workspace(root)
    data = python_package(root / "src", "big_data", modules={})
    rng = random.Random(8)
    for index in range(24):
        (data / "data" / f"part_{index:02d}.bin").parent.mkdir(parents=True, exist_ok=True)
        (data / "data" / f"part_{index:02d}.bin").write_bytes(rng.randbytes(1_000_000))
    return root


def _named(pids: list[int], name: str) -> list[int]:
    found = []
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == name:
                found.append(pid)
        except OSError:
            continue
    return found


def _our_children(name: str) -> list[int]:
    mine = str(os.getpid())
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except (OSError, ValueError):
            continue
        if fields.get("Name", "").strip() == name and fields.get("PPid", "").strip() == mine:
            found.append(int(status.parent.name))
    return found


def _eventually_empty(probe: Callable[[], list[int]], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := probe()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.mark.parametrize("method", METHODS)
def test_a_push_over_a_slow_link_is_cancelled_and_the_next_push_finishes_it(
    slow_agent: tuple[LabHost, HostAgent], tmp_path: Path, method: SyncMethod
) -> None:
    host, agent = slow_agent
    local = _big_workspace(tmp_path / "ws")
    remote = tmp_path / "remote" / "workspace"
    data = remote / "src" / "big_data" / "data"
    lines: list[str] = []
    began: list[float] = []

    def under_way() -> bool:
        # Mid-transfer: rsync runs on the host, or SFTP has placed its first file, and 2 s passed.
        if method == "rsync":
            moving = bool(_named(host.namespace_pids(), "rsync"))
        else:
            moving = data.is_dir() and any(data.iterdir())
        if moving and not began:
            began.append(time.monotonic())
        return bool(began) and time.monotonic() - began[0] >= 2.0

    def push(cancel: threading.Event) -> None:
        push_directory(
            agent,
            local=local,
            remote=str(remote),
            remote_has_rsync=True,
            method=method,
            progress=lines.append,
            cancel=cancel,
        )

    error, latency = cancel_when(under_way, push)
    assert latency < CANCEL_BOUND_S, latency
    assert str(error).startswith(f"machine 'gpu': stopped on request while pushing {local}"), error
    arrived = [p for p in data.glob("*.bin") if p.stat().st_size == 1_000_000]
    assert len(arrived) < 24, "the push was not interrupted"
    # Nothing of the push runs on: neither rsync (nor its ssh) here, nor rsync on the host.
    assert _our_children("rsync") == []
    assert _our_children("ssh") == []
    assert _eventually_empty(lambda: _named(host.namespace_pids(), "rsync"), CANCEL_BOUND_S) == []
    if method == "rsync":
        assert any(line.endswith("% sent") for line in lines), lines
    # The next push sends the rest, and leaves no partial file behind.
    done = push_directory(agent, local=local, remote=str(remote), remote_has_rsync=True, method=method)
    assert done.files_sent > 0
    assert sorted(p.name for p in data.iterdir()) == [f"part_{i:02d}.bin" for i in range(24)]
    assert not list(remote.rglob("*.fogros-partial"))
