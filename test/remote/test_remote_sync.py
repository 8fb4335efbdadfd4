"""Workspace pushes over real SSH, both ways (rsync and the SFTP fallback): only changes travel.

The namespace hosts share this machine's filesystem, so what arrived is checked by reading it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from ssh_fixtures import make_target
from sshlab import LabHost, SSHLab

from fogros_dist.errors import ConfigError
from fogros_dist.remote.agent import HostAgent
from fogros_dist.remote.runner import SSHRunner
from fogros_dist.remote.sync import SyncMethod, push_directory

pytestmark = pytest.mark.netns

METHODS = (
    pytest.param("rsync", marks=pytest.mark.skipif(shutil.which("rsync") is None, reason="needs rsync")),
    "sftp",
)


@pytest.fixture
def agent(ssh_lab: SSHLab, beta: LabHost, known_hosts: Path) -> Iterator[HostAgent]:
    runner = SSHRunner(make_target(ssh_lab, beta, known_hosts))
    found = HostAgent(runner, python="python3", remote_dir=beta.remote_dir)
    yield found
    found.close()
    runner.close()


def _workspace(root: Path) -> Path:
    files = {
        "src/pkg/package.xml": "<package/>\n",
        "src/pkg/pkg/node.py": "print('hello')\n" * 50,
        "src/pkg/data/blob.bin": "x" * 100_000,
        "src/pkg/.git/HEAD": "ref: refs/heads/main\n",
        "src/pkg/pkg/__pycache__/node.cpython-311.pyc": "compiled",
        "build/pkg/junk.o": "object",
        "install/setup.bash": "# overlay\n",
        "log/latest": "log",
        ".venv/bin/python": "venv",
        "README.md": "workspace\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "src/pkg/scripts").mkdir()
    (root / "src/pkg/scripts/run.sh").write_text("#!/bin/sh\necho run\n")
    (root / "src/pkg/scripts/run.sh").chmod(0o755)
    (root / "src/pkg/latest").symlink_to("pkg/node.py")
    return root


def _tree(root: Path) -> dict[str, bytes | str]:
    found: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            found[rel] = path.read_bytes()
    return found


@pytest.mark.parametrize("method", METHODS)
def test_second_push_sends_nothing_and_changes_send_only_themselves(
    agent: HostAgent, tmp_path: Path, method: SyncMethod
) -> None:
    local = _workspace(tmp_path / "ws")
    remote = tmp_path / "remote" / "workspace"
    first = push_directory(agent, local=local, remote=str(remote), remote_has_rsync=True, method=method)
    assert first.method == method
    # README, package.xml, node.py, blob.bin, run.sh; not .git, __pycache__, build, install, log, .venv.
    assert (first.files_total, first.files_sent) == (5, 5)
    assert first.bytes_sent >= 100_000
    assert _tree(remote) == {
        k: v
        for k, v in _tree(local).items()
        if k.startswith(
            (
                "README",
                "src/pkg/package",
                "src/pkg/pkg/node",
                "src/pkg/data",
                "src/pkg/scripts",
                "src/pkg/latest",
            )
        )
    }
    assert os.access(remote / "src/pkg/scripts/run.sh", os.X_OK)

    second = push_directory(agent, local=local, remote=str(remote), remote_has_rsync=True, method=method)
    assert (second.method, second.files_sent, second.bytes_sent) == ("digest", 0, 0)
    assert second.describe().startswith("0 of 5 files sent: unchanged")

    # The host built something meanwhile: excluded paths there survive a push with delete.
    (remote / "build").mkdir()
    (remote / "build" / "artifact").write_text("built on the host")
    (local / "src/pkg/pkg/node.py").write_text("print('changed')\n" * 50)
    (local / "src/pkg/new.py").write_text("new = True\n")
    (local / "README.md").unlink()
    third = push_directory(agent, local=local, remote=str(remote), remote_has_rsync=True, method=method)
    assert (third.method, third.files_sent, third.files_deleted) == (method, 2, 1)
    # Only the two files travelled (rsync adds its file list and checksums on top).
    assert third.bytes_sent < 20_000
    assert (remote / "src/pkg/pkg/node.py").read_text() == "print('changed')\n" * 50
    assert (remote / "src/pkg/new.py").read_text() == "new = True\n"
    assert not (remote / "README.md").exists()
    assert (remote / "build" / "artifact").read_text() == "built on the host"
    fourth = push_directory(agent, local=local, remote=str(remote), remote_has_rsync=True, method=method)
    assert fourth.method == "digest"


def test_sftp_sends_nothing_for_a_file_only_touched(agent: HostAgent, tmp_path: Path) -> None:
    local = _workspace(tmp_path / "ws")
    remote = tmp_path / "remote"
    push_directory(agent, local=local, remote=str(remote), remote_has_rsync=False)
    blob = local / "src/pkg/data/blob.bin"
    os.utime(blob, (blob.stat().st_atime, blob.stat().st_mtime + 100))
    stats = push_directory(agent, local=local, remote=str(remote), remote_has_rsync=False)
    # Same size, new mtime: both sides hashed it, found it equal, and only its mtime was set.
    assert (stats.method, stats.files_sent, stats.bytes_sent) == ("sftp", 0, 0)
    assert int((remote / "src/pkg/data/blob.bin").stat().st_mtime) == int(blob.stat().st_mtime)
    assert push_directory(agent, local=local, remote=str(remote), remote_has_rsync=False).method == "digest"


def test_bad_pushes_are_named(agent: HostAgent, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"workspace '.*/nope' is not a directory on this machine"):
        push_directory(agent, local=tmp_path / "nope", remote=str(tmp_path / "r"), remote_has_rsync=True)
    (tmp_path / "ws").mkdir()
    with pytest.raises(
        ConfigError, match=r"sync method 'rsync' needs rsync on both ends; 10\.231\.\d+\.2 has none"
    ):
        push_directory(
            agent, local=tmp_path / "ws", remote=str(tmp_path / "r"), remote_has_rsync=False, method="rsync"
        )
