"""Fixtures for hosts behind a bastion (imported by the conftests of test/remote and test/providers/ssh).

``bastion`` is a namespace SSH host the robot reaches directly; ``hidden`` sits behind it on a
subnet of its own (see sshlab), so the robot reaches it only through the bastion. Both live for
the session; ``jump_known_hosts`` trusts both of them (and nothing else).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sshlab import LabHost, SSHLab

__all__ = ["bastion", "hidden", "jump_known_hosts"]


@pytest.fixture(scope="session")
def bastion(ssh_lab: SSHLab) -> LabHost:
    """A jump host on port 22, reachable from the robot."""
    return ssh_lab.ensure_host("bastion", port=22)


@pytest.fixture(scope="session")
def hidden(ssh_lab: SSHLab, bastion: LabHost) -> LabHost:
    """An SSH host on port 2022 that only the bastion can reach."""
    return ssh_lab.ensure_host("hidden", port=2022, behind=bastion)


@pytest.fixture
def jump_known_hosts(tmp_path: Path, bastion: LabHost, hidden: LabHost) -> Path:
    """A known_hosts file trusting the bastion and the hidden host (their current keys)."""
    path = tmp_path / "jump_known_hosts"
    path.write_text(bastion.known_hosts_line() + hidden.known_hosts_line())
    return path
