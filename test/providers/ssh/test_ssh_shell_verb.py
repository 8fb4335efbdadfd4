"""`fogros-dist ssh DEPLOYMENT [MACHINE] -- COMMAND` against namespace SSH hosts: the command runs
on the machine over OpenSSH with the recorded key, known_hosts and jump hosts; a changed host key
is refused in one line before OpenSSH ever runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from e2e_helpers import edge_deployment
from ssh_fixtures import FAST_RETRY, ssh_options
from sshlab import LabHost, SSHLab

from fogros_dist.deploy.state import DeploymentState, StateStore
from fogros_dist.providers.base import ProvisionContext
from fogros_dist.providers.ssh import SSHProvider
from fogros_dist.spec import Host, MachineSpec

pytestmark = pytest.mark.netns


def _record(home: Path, name: str, hosts: tuple[Host, ...]) -> None:
    """A deployment record holding ``hosts`` (as `up` leaves it), for the CLI to read."""
    now = time.time()
    machine = MachineSpec(name=hosts[0].machine, provider="ssh", options=(("host", "x"),))
    StateStore(home).create(
        DeploymentState(
            spec=edge_deployment(name, machine),
            status="running",
            created_at=now,
            updated_at=now,
            robot_domain_id=0,
            hosts=hosts,
        )
    )


def _provision(lab: SSHLab, host: LabHost, known_hosts: Path, tmp_path: Path, machine: str = "gpu") -> Host:
    options = ssh_options(lab, host, known_hosts, ros_setup="none")
    spec = MachineSpec(name=machine, provider="ssh", options=tuple(sorted(options.items())))
    provider = SSHProvider(retry=FAST_RETRY)
    made = provider.create(spec, ProvisionContext(deployment="shell", state_dir=tmp_path))
    # Only the record matters here: the connection (and any forward) goes with the provider.
    provider.terminate(made)
    return made


def _ssh(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A private HOME: the user's own known_hosts and SSH config must play no part.
    env = dict(os.environ, FOGROS_DIST_HOME=str(home), HOME=str(home))
    return subprocess.run(
        [sys.executable, "-m", "fogros_dist.cli.main", "ssh", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_a_command_runs_on_the_machine_and_its_exit_code_comes_back(
    ssh_lab: SSHLab, alpha: LabHost, known_hosts: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    _record(home, "shell", (_provision(ssh_lab, alpha, known_hosts, tmp_path),))
    done = _ssh(home, "shell", "--", "ip", "-4", "-o", "addr")
    assert done.returncode == 0, done.stderr
    assert alpha.address in done.stdout
    # MACHINE may be named; the command's exit code is the verb's.
    # As with ssh itself, the words are joined and run by the host's shell.
    failed = _ssh(home, "shell", "gpu", "--", "echo oops >&2; exit 7")
    assert (failed.returncode, failed.stderr.strip()) == (7, "oops")
    unknown = _ssh(home, "shell", "cpu")
    assert unknown.returncode == 1
    assert unknown.stderr == "fogros-dist: error: deployment 'shell' has no machine 'cpu' (machines: gpu)\n"


def test_a_machine_behind_a_bastion_is_reached_through_it(
    ssh_lab: SSHLab, bastion: LabHost, hidden: LabHost, jump_known_hosts: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    _record(home, "behind", (_provision(ssh_lab, hidden, jump_known_hosts, tmp_path),))
    done = _ssh(home, "behind", "--", "echo $SSH_CONNECTION; ip -4 -o addr")
    assert done.returncode == 0, done.stderr
    # The session comes from the bastion's side of the hidden host's subnet.
    assert done.stdout.split()[0] == hidden.gateway
    assert hidden.address in done.stdout


def test_a_changed_host_key_is_refused_in_one_line(
    ssh_lab: SSHLab, scratch_host: Callable[[], LabHost], tmp_path: Path
) -> None:
    host = scratch_host()
    known = tmp_path / "known_hosts"
    known.write_text(host.known_hosts_line())
    home = tmp_path / "home"
    _record(home, "rekeyed", (_provision(ssh_lab, host, known, tmp_path),))
    old = host.fingerprint()
    ssh_lab.regenerate_host_key(host)
    done = _ssh(home, "rekeyed", "--", "touch", str(tmp_path / "ran"))
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(
        f"fogros-dist: error: ssh-ready: machine 'gpu': host key of [{host.address}]:{host.port} CHANGED: "
        f"it presents ssh-ed25519 {host.fingerprint()}, {known} expects ssh-ed25519 {old}"
    )
    assert not (tmp_path / "ran").exists()
    assert known.read_text().count("\n") == 1, "the recorded key must stay as it was"
