"""SSHRunner against real OpenSSH servers: host keys, bounded retries, failures named in one line."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from ssh_fixtures import FAST_RETRY, make_target
from sshlab import LabHost, SSHLab

from fogros_dist.errors import ConfigError, ProvisionError
from fogros_dist.remote.hostkeys import HostKey, add_known_host, fetch_host_key, known_keys
from fogros_dist.remote.runner import SSHRunner
from fogros_dist.remote.target import resolve_target

pytestmark = pytest.mark.netns


def test_run_returns_exit_code_and_both_streams(ssh_lab: SSHLab, beta: LabHost, known_hosts: Path) -> None:
    runner = SSHRunner(make_target(ssh_lab, beta, known_hosts))
    try:
        done = runner.run(["sh", "-c", "echo out; echo err >&2; exit 3"], check=False)
        assert (done.exit_code, done.stdout, done.stderr) == (3, "out\n", "err\n")
        # The command ran on the host: inside its namespace, with its address.
        assert beta.address in runner.run(["ip", "-4", "-o", "addr"]).stdout
        with pytest.raises(
            ProvisionError, match=r"machine 'gpu': list it failed on 10\.231\.\d+\.2 \(exit code 2\)"
        ):
            runner.run(["ls", "/no/such/dir"], what="list it")
    finally:
        runner.close()


def test_unknown_host_is_refused_naming_its_fingerprint_and_the_fix(
    ssh_lab: SSHLab, beta: LabHost, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    runner = SSHRunner(make_target(ssh_lab, beta, empty), retry=FAST_RETRY)
    with pytest.raises(ProvisionError) as caught:
        runner.connect()
    message = str(caught.value)
    assert message.startswith(f"ssh-ready: machine 'gpu': host root@{beta.address}:2222 is not in {empty}")
    assert f"it presents ssh-ed25519 {beta.fingerprint()}" in message
    assert f"'fogros-dist trust {beta.address} --port 2222 --known-hosts {empty}'" in message
    assert "trust_new_host=true" in message
    assert "\n" not in message
    assert not empty.exists(), "an unknown key must not be recorded unasked"


def test_trust_new_host_records_the_key_on_first_contact_only(
    ssh_lab: SSHLab, beta: LabHost, tmp_path: Path
) -> None:
    path = tmp_path / "ssh" / "known_hosts"
    runner = SSHRunner(make_target(ssh_lab, beta, path, trust_new_host=True))
    try:
        runner.connect()
        assert runner.recorded_key is not None
        assert runner.recorded_key.fingerprint == beta.fingerprint()
    finally:
        runner.close()
    assert path.read_text() == beta.known_hosts_line()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    again = SSHRunner(make_target(ssh_lab, beta, path, trust_new_host=True))
    try:
        again.connect()
        assert again.recorded_key is None
    finally:
        again.close()
    assert path.read_text() == beta.known_hosts_line()


def test_changed_host_key_is_refused_even_with_trust_new_host(
    ssh_lab: SSHLab, scratch_host: Callable[[], LabHost], tmp_path: Path
) -> None:
    host = scratch_host()
    path = tmp_path / "known_hosts"
    path.write_text(host.known_hosts_line())
    old = host.fingerprint()
    ssh_lab.regenerate_host_key(host)
    runner = SSHRunner(make_target(ssh_lab, host, path, trust_new_host=True), retry=FAST_RETRY)
    with pytest.raises(ProvisionError) as caught:
        runner.connect()
    message = str(caught.value)
    name = f"[{host.address}]:{host.port}"
    assert message.startswith(f"ssh-ready: machine 'gpu': host key of {name} CHANGED")
    assert f"it presents ssh-ed25519 {host.fingerprint()}" in message
    assert f"{path} expects ssh-ed25519 {old}" in message
    assert f"(ssh-keygen -R '{name}' -f {path})" in message
    assert "otherwise do not connect" in message
    assert path.read_text().count("\n") == 1, "the old key must stay recorded"


def test_refused_connection_is_retried_a_bounded_number_of_times(
    ssh_lab: SSHLab, beta: LabHost, known_hosts: Path
) -> None:
    # Nothing listens on this port of beta: every attempt is refused at once.
    target = make_target(ssh_lab, beta, known_hosts, port=2299)
    started = time.monotonic()
    with pytest.raises(ProvisionError) as caught:
        SSHRunner(target, retry=FAST_RETRY).connect()
    assert time.monotonic() - started < 3.0
    assert re.fullmatch(
        rf"ssh-ready: machine 'gpu': cannot connect to root@{re.escape(beta.address)}:2299 "
        r"\(connection refused; 2 attempts in \d+\.\d s\): check that sshd runs on the host and the "
        r"port is right \(option port\)",
        str(caught.value),
    ), caught.value


def test_rejected_key_names_the_key_and_the_fix(
    ssh_lab: SSHLab, beta: LabHost, known_hosts: Path, tmp_path: Path
) -> None:
    stranger = tmp_path / "id_stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    started = time.monotonic()
    with pytest.raises(ProvisionError) as caught:
        SSHRunner(make_target(ssh_lab, beta, known_hosts, identity_file=str(stranger))).connect()
    # Authentication failures are not retried: the default policy's 4 attempts would take seconds.
    assert time.monotonic() - started < 2.0
    message = str(caught.value)
    assert message.startswith(
        f"ssh-ready: machine 'gpu': root@{beta.address}:2222 refused authentication with {stranger}"
    )
    assert message.endswith(
        "add the matching public key to ~root/.ssh/authorized_keys on the host, "
        "or set identity_file (or user)"
    )


def test_unresolvable_host_name_is_named(ssh_lab: SSHLab, tmp_path: Path) -> None:
    target = resolve_target(
        machine="gpu",
        host="no-such-host.invalid",
        identity_file=str(ssh_lab.client_key),
        known_hosts=str(tmp_path / "kh"),
        ssh_config=str(tmp_path / "none"),
    )
    with pytest.raises(
        ProvisionError, match=r"^ssh-ready: machine 'gpu': cannot resolve host name 'no-such-host\.invalid'"
    ):
        SSHRunner(target, retry=FAST_RETRY).connect()


def test_ssh_config_alias_supplies_hostname_user_port_and_key(
    ssh_lab: SSHLab, beta: LabHost, known_hosts: Path, tmp_path: Path
) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host lab-gpu\n  HostName {beta.address}\n  User root\n  Port {beta.port}\n"
        f"  IdentityFile {ssh_lab.client_key}\n"
    )
    target = resolve_target(
        machine="gpu", host="lab-gpu", known_hosts=str(known_hosts), ssh_config=str(config)
    )
    assert (target.hostname, target.user, target.port, target.identity_file) == (
        beta.address,
        "root",
        2222,
        str(ssh_lab.client_key),
    )
    runner = SSHRunner(target)
    try:
        assert runner.run(["echo", "via alias"]).stdout == "via alias\n"
    finally:
        runner.close()
    # Explicit options win over the file, as on the ssh command line.
    assert resolve_target(machine="gpu", host="lab-gpu", port=22, ssh_config=str(config)).port == 22


def test_proxies_and_missing_keys_are_refused_by_name(tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Host behind\n  HostName 10.0.0.9\n  ProxyCommand nc -X 5 -x proxy:1080 %h %p\n")
    with pytest.raises(
        ConfigError, match=r"sets ProxyCommand for host 'behind', which fogros_dist does not support"
    ):
        resolve_target(machine="gpu", host="behind", ssh_config=str(config))
    with pytest.raises(
        ConfigError, match=r"identity_file '/nope/key' does not exist: give the path of a private key"
    ):
        resolve_target(machine="gpu", host="h", identity_file="/nope/key", ssh_config=str(config))
    with pytest.raises(ConfigError, match=r"SSH port 70000 is out of range: use 1\.\.65535"):
        resolve_target(machine="gpu", host="h", port=70000, ssh_config=str(config))


def test_a_cut_connection_is_replaced_on_the_next_command(
    ssh_lab: SSHLab, beta: LabHost, known_hosts: Path
) -> None:
    runner = SSHRunner(make_target(ssh_lab, beta, known_hosts))
    try:
        assert runner.run(["true"]).exit_code == 0
        first = runner.generation
        assert beta.kill_sessions() >= 1
        time.sleep(0.2)
        assert runner.run(["echo", "back"]).stdout == "back\n"
        assert runner.generation == first + 1
    finally:
        runner.close()


def test_known_hosts_helpers_match_openssh(ssh_lab: SSHLab, beta: LabHost, tmp_path: Path) -> None:
    key = fetch_host_key(beta.address, beta.port)
    assert key.fingerprint == beta.fingerprint()
    path = tmp_path / "known_hosts"
    client_pub = ssh_lab.client_key.with_name(ssh_lab.client_key.name + ".pub").read_text()
    path.write_text(f"otherhost {' '.join(client_pub.split()[:2])}\n")
    # The user's hashed entries (HashKnownHosts) must survive untouched.
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(path)], check=True, capture_output=True)
    path.write_text("# a comment the user keeps\n" + path.read_text())
    hashed = path.read_text()
    name = f"[{beta.address}]:{beta.port}"
    assert add_known_host(str(path), name=name, key=key) is True
    assert add_known_host(str(path), name=name, key=key) is False
    assert known_keys(str(path), name) == (key,)
    assert path.read_text().startswith(hashed)
    assert known_keys(str(path), "otherhost") == (HostKey.from_line(client_pub),)
    # OpenSSH itself accepts what was written.
    found = subprocess.run(
        ["ssh-keygen", "-F", name, "-f", str(path)], capture_output=True, text=True, check=False
    )
    assert found.returncode == 0, found.stderr
    other = HostKey.from_line(client_pub)
    with pytest.raises(ConfigError, match=rf"host key of {re.escape(name)} CHANGED"):
        add_known_host(str(path), name=name, key=other)


def test_a_host_that_just_failed_every_attempt_is_not_tried_again_for_a_while(
    ssh_lab: SSHLab, scratch_host: Callable[[], LabHost], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every stage that talks to a lost machine (a supervisor's poll, its followers, each teardown
    step) would otherwise spend the whole retry budget in turn: the runner remembers the failure
    for REMEMBER_UNREACHABLE_S and repeats it at once, then tries for real again."""
    import fogros_dist.remote.runner as runner_module
    from fogros_dist.remote.runner import REMEMBER_UNREACHABLE_S, HostUnreachable

    host = scratch_host()
    known = tmp_path / "known_hosts"
    known.write_text(host.known_hosts_line())
    runner = SSHRunner(make_target(ssh_lab, host, known), retry=FAST_RETRY)
    try:
        ssh_lab.stop_sshd(host)
        with pytest.raises(HostUnreachable) as first:
            runner.connect()
        failed_at = time.monotonic()
        # sshd is back, but the failure is fresh: not tried (a try would succeed now).
        ssh_lab.start_sshd(host)
        with pytest.raises(HostUnreachable) as again:
            runner.connect()
        assert time.monotonic() - failed_at < REMEMBER_UNREACHABLE_S
        assert str(again.value) == str(first.value)
        # Once the memory is past, the next connect tries, succeeds, and forgets the failure.
        monkeypatch.setattr(runner_module, "REMEMBER_UNREACHABLE_S", 0.0)
        assert runner.run(["echo", "back"]).stdout == "back\n"
        # Forgotten: a cut connection is replaced at once, within the memory's span again.
        monkeypatch.setattr(runner_module, "REMEMBER_UNREACHABLE_S", REMEMBER_UNREACHABLE_S)
        assert host.kill_sessions() >= 1
        time.sleep(0.2)
        assert runner.run(["true"]).exit_code == 0
    finally:
        runner.close()
