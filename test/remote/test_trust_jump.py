"""`fogros-dist trust` for a host behind a bastion: the bastion first, then the host through it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sshlab import LabHost, SSHLab

pytestmark = pytest.mark.netns


def _trust(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HOME=str(home))
    return subprocess.run(
        [sys.executable, "-m", "fogros_dist.cli.main", "trust", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_trust_records_the_bastion_then_the_host_behind_it(
    ssh_lab: SSHLab, bastion: LabHost, hidden: LabHost, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    jump = f"root@{bastion.address}"
    through = ("--proxy-jump", jump, "--identity-file", str(ssh_lab.client_key), "--known-hosts", str(known))

    # The bastion is not trusted yet: the host behind it cannot be reached, and the line says how.
    refused = _trust(tmp_path, hidden.address, "--port", "2022", *through)
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0].startswith(
        f"fogros-dist: error: ssh-ready: machine '{hidden.address}': host root@{bastion.address}:22 "
    )
    assert f"is not in {known} (it presents ssh-ed25519 {bastion.fingerprint()})" in lines[0]
    assert f"'fogros-dist trust {bastion.address} --known-hosts {known}'" in lines[0]
    assert not known.exists()

    first = _trust(tmp_path, bastion.address, "--known-hosts", str(known))
    assert first.returncode == 0, first.stderr
    second = _trust(tmp_path, hidden.address, "--port", "2022", *through)
    assert second.returncode == 0, second.stderr
    assert (
        f"[{hidden.address}]:2022 presents ssh-ed25519 {hidden.fingerprint()} (via root@{bastion.address}:22)"
        in second.stdout
    )
    hint = f"use it with: SSHHost('<name>', '{hidden.address}', port=2022, proxy_jump='{jump}')"
    assert hint in second.stdout
    assert known.read_text() == bastion.known_hosts_line() + hidden.known_hosts_line()
