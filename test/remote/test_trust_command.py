"""`fogros-dist trust`: the explicit first contact that records a host key."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sshlab import LabHost, SSHLab

pytestmark = pytest.mark.netns


def _trust(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A private HOME: the default known_hosts and SSH config are the test's own.
    env = dict(os.environ, HOME=str(home))
    return subprocess.run(
        [sys.executable, "-m", "fogros_dist.cli.main", "trust", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_trust_shows_the_fingerprint_and_records_the_key(beta: LabHost, tmp_path: Path) -> None:
    result = _trust(tmp_path, beta.address, "--port", "2222", "--user", "root")
    assert result.returncode == 0, result.stderr
    name = f"[{beta.address}]:2222"
    assert f"{name} presents ssh-ed25519 {beta.fingerprint()}" in result.stdout
    default = tmp_path / ".ssh" / "known_hosts"
    assert f"recorded in {default}" in result.stdout
    assert f"use it with: SSHHost('<name>', '{beta.address}', user='root', port=2222)" in result.stdout
    assert default.read_text() == beta.known_hosts_line()
    again = _trust(tmp_path, beta.address, "--port", "2222")
    assert again.returncode == 0
    assert f"already trusted in {default}" in again.stdout
    assert default.read_text() == beta.known_hosts_line()


def test_trust_resolves_aliases_and_checks_an_expected_fingerprint(beta: LabHost, tmp_path: Path) -> None:
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text(f"Host lab\n  HostName {beta.address}\n  Port 2222\n")
    target = tmp_path / "fogros_known_hosts"
    wrong = _trust(tmp_path, "lab", "--known-hosts", str(target), "--fingerprint", "SHA256:notthisone")
    assert wrong.returncode == 1
    assert "Traceback" not in wrong.stderr
    assert wrong.stderr.strip() == (
        f"fogros-dist: error: [{beta.address}]:2222 presents {beta.fingerprint()}, not the expected "
        "SHA256:notthisone: not recorded; check the key on the host's console "
        "(ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub)"
    )
    assert not target.exists()
    right = _trust(tmp_path, "lab", "--known-hosts", str(target), "--fingerprint", beta.fingerprint())
    assert right.returncode == 0, right.stderr
    assert target.read_text() == beta.known_hosts_line()


def test_trust_refuses_a_changed_key_and_an_unreachable_host(
    ssh_lab: SSHLab, scratch_host: Callable[[], LabHost], tmp_path: Path
) -> None:
    host = scratch_host()
    path = tmp_path / "known_hosts"
    path.write_text(host.known_hosts_line())
    ssh_lab.regenerate_host_key(host)
    changed = _trust(tmp_path, host.address, "--port", str(host.port), "--known-hosts", str(path))
    assert changed.returncode == 1
    lines = changed.stderr.strip().splitlines()
    assert len(lines) == 1, changed.stderr
    assert lines[0].startswith(f"fogros-dist: error: host key of [{host.address}]:{host.port} CHANGED")
    assert path.read_text() == host.known_hosts_line() or path.read_text().count("\n") == 1
    gone = _trust(tmp_path, host.address, "--port", "2299")
    assert gone.returncode == 1
    assert gone.stderr.strip().startswith(
        f"fogros-dist: error: cannot reach {host.address}:2299 (Connection refused)"
    )
