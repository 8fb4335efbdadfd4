"""Hosts behind a bastion (ProxyJump): reached hop by hop by paramiko and by OpenSSH, every hop's
host key checked against the same known_hosts, failures named in one line, ports forwarded."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from ssh_fixtures import FAST_RETRY, make_target
from sshlab import LabHost, SSHLab

from fogros_dist.errors import ConfigError, ProvisionError
from fogros_dist.remote.agent import HostAgent
from fogros_dist.remote.forward import loopback_listener
from fogros_dist.remote.hostkeys import known_keys
from fogros_dist.remote.runner import SSHRunner
from fogros_dist.remote.sync import push_directory
from fogros_dist.remote.target import SSHTarget, parse_jump_spec, resolve_target

pytestmark = pytest.mark.netns


def _via(host: LabHost) -> str:
    return f"root@{host.address}:{host.port}"


def _hidden_target(
    lab: SSHLab, hidden: LabHost, bastion: LabHost, known_hosts: Path, **extra: object
) -> SSHTarget:
    return make_target(lab, hidden, known_hosts, proxy_jump=_via(bastion), **extra)


def test_the_hidden_host_is_reached_only_through_the_bastion(
    ssh_lab: SSHLab, bastion: LabHost, hidden: LabHost, jump_known_hosts: Path
) -> None:
    # No lab route from the robot to its subnet (so nothing here may try to connect to it
    # directly: the packets would leave by the default route); the bastion has one.
    subnet = hidden.address.rsplit(".", 1)[0] + ".0/24"
    routes = subprocess.run(["ip", "-4", "route", "show", subnet], capture_output=True, text=True, check=True)
    assert routes.stdout == ""
    inside = subprocess.run(
        ["ip", "netns", "exec", bastion.netns, "ip", "-4", "route", "get", hidden.address],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"dev {hidden.veth_root}" in inside
    runner = SSHRunner(_hidden_target(ssh_lab, hidden, bastion, jump_known_hosts))
    try:
        assert runner.target.route == f"root@{hidden.address}:2022 via {_via(bastion)}"
        addresses = runner.run(["ip", "-4", "-o", "addr"]).stdout
        assert hidden.address in addresses
        assert bastion.address not in addresses
        # The connection reaches the host from the bastion's side of its own subnet.
        assert runner.run(["sh", "-c", "echo $SSH_CONNECTION"]).stdout.split()[0] == hidden.gateway
    finally:
        runner.close()


def test_openssh_takes_the_same_route_and_checks_every_hop(
    ssh_lab: SSHLab, bastion: LabHost, hidden: LabHost, jump_known_hosts: Path, tmp_path: Path
) -> None:
    argv = SSHRunner(_hidden_target(ssh_lab, hidden, bastion, jump_known_hosts)).ssh_argv()
    assert "StrictHostKeyChecking=yes" in argv
    done = subprocess.run(
        [*argv, hidden.address, "ip -4 -o addr"], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert hidden.address in done.stdout

    # Each hop's key must be in the file: without the bastion's, or with a wrong one, OpenSSH
    # refuses at the bastion (and so never reaches the hidden host).
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong_bastion = (
        f"{bastion.known_hosts_name} {' '.join(other.with_suffix('.pub').read_text().split()[:2])}\n"
    )
    for name, text in (
        ("no-bastion", hidden.known_hosts_line()),
        ("wrong-bastion", wrong_bastion + hidden.known_hosts_line()),
        ("no-hidden", bastion.known_hosts_line()),
    ):
        path = tmp_path / name
        path.write_text(text)
        argv = SSHRunner(_hidden_target(ssh_lab, hidden, bastion, path)).ssh_argv()
        refused = subprocess.run(
            [*argv, hidden.address, "true"], capture_output=True, text=True, timeout=30, check=False
        )
        assert refused.returncode == 255, (name, refused.stderr)
        assert "Host key verification failed" in refused.stderr, (name, refused.stderr)
        assert path.read_text() == text, "OpenSSH must not record any key"


def test_rsync_pushes_through_the_bastion(
    ssh_lab: SSHLab, bastion: LabHost, hidden: LabHost, jump_known_hosts: Path, tmp_path: Path
) -> None:
    local = tmp_path / "ws"
    (local / "src" / "pkg").mkdir(parents=True)
    for i in range(5):
        (local / "src" / "pkg" / f"file{i}.py").write_text(f"value = {i}\n")
    remote = Path(hidden.remote_dir) / "jump-push"
    agent = HostAgent(
        SSHRunner(_hidden_target(ssh_lab, hidden, bastion, jump_known_hosts)),
        python="python3",
        remote_dir=hidden.remote_dir,
    )
    try:
        first = push_directory(agent, local=local, remote=str(remote), remote_has_rsync=True, method="rsync")
        assert (first.method, first.files_total, first.files_sent) == ("rsync", 5, 5)
        (local / "src" / "pkg" / "file3.py").write_text("value = 33\n")
        second = push_directory(agent, local=local, remote=str(remote), remote_has_rsync=True, method="rsync")
        assert (second.method, second.files_sent) == ("rsync", 1)
        # Namespaces share the file system: the host's copy is readable here.
        assert (remote / "src" / "pkg" / "file3.py").read_text() == "value = 33\n"
    finally:
        agent.close()
        agent.runner.close()


def test_an_unknown_bastion_key_is_refused_in_one_line(
    ssh_lab: SSHLab, bastion: LabHost, hidden: LabHost, tmp_path: Path
) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(hidden.known_hosts_line())
    runner = SSHRunner(_hidden_target(ssh_lab, hidden, bastion, path), retry=FAST_RETRY)
    with pytest.raises(ProvisionError) as caught:
        runner.connect()
    message = str(caught.value)
    assert message.startswith(f"ssh-ready: machine 'gpu': jump host {_via(bastion)} is not in {path}")
    assert f"it presents ssh-ed25519 {bastion.fingerprint()}" in message
    assert f"'fogros-dist trust {bastion.address} --known-hosts {path}'" in message
    assert "\n" not in message
    assert path.read_text() == hidden.known_hosts_line(), "an unknown key must not be recorded unasked"


def test_an_unknown_target_behind_the_bastion_names_the_trust_command_through_it(
    ssh_lab: SSHLab, bastion: LabHost, hidden: LabHost, tmp_path: Path
) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(bastion.known_hosts_line())
    runner = SSHRunner(_hidden_target(ssh_lab, hidden, bastion, path), retry=FAST_RETRY)
    with pytest.raises(ProvisionError) as caught:
        runner.connect()
    message = str(caught.value)
    assert message.startswith(f"ssh-ready: machine 'gpu': host root@{hidden.address}:2022 is not in {path}")
    assert f"it presents ssh-ed25519 {hidden.fingerprint()}" in message
    assert (
        f"'fogros-dist trust {hidden.address} --port 2022 --proxy-jump {_via(bastion)} --known-hosts {path}'"
        in message
    )


def test_a_changed_bastion_key_is_refused_even_with_trust_new_host(
    ssh_lab: SSHLab, bastion: LabHost, hidden: LabHost, tmp_path: Path
) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    path = tmp_path / "known_hosts"
    stale = f"{bastion.known_hosts_name} {' '.join(other.with_suffix('.pub').read_text().split()[:2])}\n"
    path.write_text(stale + hidden.known_hosts_line())
    runner = SSHRunner(_hidden_target(ssh_lab, hidden, bastion, path, trust_new_host=True), retry=FAST_RETRY)
    with pytest.raises(ProvisionError) as caught:
        runner.connect()
    message = str(caught.value)
    assert message.startswith(f"ssh-ready: machine 'gpu': jump host key of {bastion.address} CHANGED")
    assert f"it presents ssh-ed25519 {bastion.fingerprint()}" in message
    assert "\n" not in message


def test_trust_new_host_records_every_hop_once(
    ssh_lab: SSHLab, bastion: LabHost, hidden: LabHost, tmp_path: Path
) -> None:
    path = tmp_path / "ssh" / "known_hosts"
    runner = SSHRunner(_hidden_target(ssh_lab, hidden, bastion, path, trust_new_host=True))
    try:
        runner.connect()
        assert runner.recorded_key is not None
        assert runner.recorded_key.fingerprint == hidden.fingerprint()
        assert [(hop.hostname, key.fingerprint) for hop, key in runner.recorded_jump_keys] == [
            (bastion.address, bastion.fingerprint())
        ]
    finally:
        runner.close()
    assert [k.fingerprint for k in known_keys(str(path), bastion.known_hosts_name)] == [bastion.fingerprint()]
    assert [k.fingerprint for k in known_keys(str(path), hidden.known_hosts_name)] == [hidden.fingerprint()]


def test_ssh_config_proxyjump_is_followed_through_a_chain_of_hops(
    ssh_lab: SSHLab, bastion: LabHost, hidden: LabHost, jump_known_hosts: Path, tmp_path: Path
) -> None:
    # The bastion's own ProxyJump is followed first (as OpenSSH does): robot -> bastion ->
    # bastion again (through itself) -> hidden. Two nested hops, each key checked.
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host lab-gpu\n  HostName {hidden.address}\n  Port 2022\n  User root\n  ProxyJump lab-gate\n"
        f"Host lab-gate\n  HostName {bastion.address}\n  User root\n  IdentityFile {ssh_lab.client_key}\n"
        f"  ProxyJump root@{bastion.address}\n"
    )
    target = resolve_target(
        machine="gpu",
        host="lab-gpu",
        identity_file=str(ssh_lab.client_key),
        known_hosts=str(jump_known_hosts),
        ssh_config=str(config),
    )
    assert [(j.alias, j.hostname, j.port) for j in target.jumps] == [
        (bastion.address, bastion.address, 22),
        ("lab-gate", bastion.address, 22),
    ]
    assert (target.hostname, target.port, target.user) == (hidden.address, 2022, "root")
    runner = SSHRunner(target)
    try:
        assert hidden.address in runner.run(["ip", "-4", "-o", "addr"]).stdout
    finally:
        runner.close()
    done = subprocess.run(
        [*runner.ssh_argv(), hidden.address, "ip -4 -o addr"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert hidden.address in done.stdout
    # An explicit proxy_jump wins over the file's; "none" switches it off.
    assert (
        resolve_target(machine="gpu", host="lab-gpu", ssh_config=str(config), proxy_jump="none").jumps == ()
    )


def test_a_jump_host_that_cannot_reach_the_target_is_named_after_bounded_retries(
    ssh_lab: SSHLab, bastion: LabHost, hidden: LabHost, jump_known_hosts: Path
) -> None:
    runner = SSHRunner(
        _hidden_target(ssh_lab, hidden, bastion, jump_known_hosts, port=2999), retry=FAST_RETRY
    )
    with pytest.raises(ProvisionError) as caught:
        runner.connect()
    message = str(caught.value)
    assert message.startswith(
        f"ssh-ready: machine 'gpu': cannot connect to root@{hidden.address}:2999 via {_via(bastion)} "
        f"(jump host {_via(bastion)} could not open a connection to it: "
    )
    assert "2 attempts in" in message
    assert "\n" not in message


def test_malformed_jump_hosts_and_proxy_commands_are_refused_by_name(tmp_path: Path) -> None:
    assert parse_jump_spec("gpu", "me@bastion:2222, gw ,ssh://[fd00::1]:22") == (
        ("bastion", "me", 2222),
        ("gw", None, None),
        ("fd00::1", None, 22),
    )
    with pytest.raises(ConfigError, match=r"jump host 'me@@b' in proxy_jump 'me@@b' is malformed"):
        parse_jump_spec("gpu", "me@@b")
    with pytest.raises(ConfigError, match=r"jump host 'b:99999': port 99999 is out of range"):
        parse_jump_spec("gpu", "b:99999")
    config = tmp_path / "ssh_config"
    config.write_text("Host loop\n  ProxyJump loop\nHost gate\n  ProxyCommand ssh -W %h:%p other\n")
    with pytest.raises(ConfigError, match=r"more than 8 jump hosts \(at 'loop'\)"):
        resolve_target(machine="gpu", host="loop", ssh_config=str(config))
    with pytest.raises(
        ConfigError, match=r"sets ProxyCommand for host 'gate', which fogros_dist does not support"
    ):
        resolve_target(machine="gpu", host="target", proxy_jump="gate", ssh_config=str(config))


def test_a_forward_carries_tcp_to_the_hidden_hosts_loopback_and_stops_with_the_runner(
    ssh_lab: SSHLab, bastion: LabHost, hidden: LabHost, jump_known_hosts: Path, tmp_path: Path
) -> None:
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "hello.txt").write_text("from behind the bastion\n")
    runner = SSHRunner(_hidden_target(ssh_lab, hidden, bastion, jump_known_hosts))
    served = tmp_path / "served"
    pid = runner.run(
        [
            "sh",
            "-c",
            f"python3 -m http.server --bind 127.0.0.1 --directory {served} 8765 >/dev/null 2>&1 & echo $!",
        ]
    ).stdout.strip()
    listener = loopback_listener(0, machine="gpu")
    port = listener.getsockname()[1]
    try:
        forward = runner.forward(listener, host="127.0.0.1", port=8765)
        assert forward.local_port == port
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello.txt", timeout=5) as reply:
                    assert reply.read() == b"from behind the bastion\n"
                    break
            except OSError:
                # The server may still be starting on the host.
                assert time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        runner.run(["kill", pid], check=False)
        runner.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    # A port taken on the robot is named.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        with pytest.raises(ProvisionError, match=rf"bridge_port {busy} is in use on this robot"):
            loopback_listener(busy, machine="gpu")
