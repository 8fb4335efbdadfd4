"""The link's mTLS parts: the deployment's CA and its certificates, the credentials check of the
bridge process, how each machine's link is chosen, the Zenoh TLS settings, and real Zenoh
sessions and bridge processes that a certificate of the wrong name or CA cannot join."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zenoh
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from net_test_helpers import DEPLOYMENT, free_tcp_port
from tls_strangers import STRANGERS, visitor

from fogros_dist.errors import ConfigError
from fogros_dist.net.bridge import bridge_token_key
from fogros_dist.net.tls import BridgeCredentials, DeploymentAuthority, check_credentials
from fogros_dist.net.zenoh_config import build_config, config_values, machine_link, plaintext_exposed
from fogros_dist.spec import BridgeRunSpec, BridgeSpec, to_json


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# -- the CA and its certificates -------------------------------------------------------------------


def test_the_authority_issues_certificates_it_signed_naming_the_given_addresses(tmp_path: Path) -> None:
    authority = DeploymentAuthority(deployment="grasp")
    issued = authority.issue(tmp_path / "gpu", name="gpu", addresses=("54.1.2.3", "172.31.5.6", "lab-gpu"))
    assert _mode(issued.directory) == 0o700
    assert _mode(issued.private_key) == 0o600
    ca = _certificate(issued.ca_certificate)
    cert = _certificate(issued.certificate)
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gpu"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("54.1.2.3"),
        ipaddress.ip_address("172.31.5.6"),
    ]
    assert sans.get_values_for_type(x509.DNSName) == ["lab-gpu"]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    # A second issue into the same place leaves nothing of the first behind.
    (issued.directory / "stale").write_text("old")
    again = authority.issue(tmp_path / "gpu", name="gpu")
    assert sorted(p.name for p in again.directory.iterdir()) == ["bridge.key", "bridge.pem", "ca.pem"]
    # A CA made for another `up` of the same deployment did not sign it.
    other = DeploymentAuthority(deployment="grasp").issue(tmp_path / "other", name="gpu")
    with pytest.raises(InvalidSignature):
        cert.verify_directly_issued_by(_certificate(other.ca_certificate))


def test_an_address_no_certificate_can_name_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^address 'a b' cannot be named in a certificate: use an IP"):
        DeploymentAuthority(deployment="d").issue(tmp_path / "m", name="m", addresses=("a b",))


def test_the_bridge_tightens_an_uploaded_key_and_names_a_missing_file(tmp_path: Path) -> None:
    issued = DeploymentAuthority(deployment="d").issue(tmp_path / "tls", name="gpu")
    # As an SFTP upload leaves them with a 022 umask.
    issued.private_key.chmod(0o644)
    issued.directory.chmod(0o755)
    assert check_credentials(str(issued.directory)) == issued
    assert (_mode(issued.private_key), _mode(issued.directory)) == (0o600, 0o700)
    issued.certificate.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"bridge TLS file .*bridge\.pem is not PEM: start the deployment"):
        check_credentials(str(issued.directory))
    issued.certificate.unlink()
    with pytest.raises(ConfigError, match=r"bridge TLS file .*bridge\.pem does not exist: start the"):
        check_credentials(str(issued.directory))


def test_the_bridge_process_refuses_missing_credentials_in_one_line(tmp_path: Path) -> None:
    spec = BridgeRunSpec(
        deployment=DEPLOYMENT,
        side="machine",
        machine="gpu",
        listen=(f"tls/127.0.0.1:{free_tcp_port()}",),
        bridge=BridgeSpec(tls_dir=str(tmp_path / "nowhere")),
        graph="dds",
        stats_path=str(tmp_path / "stats.json"),
    )
    path = tmp_path / "bridge.json"
    path.write_text(to_json(spec))
    done = subprocess.run(
        [sys.executable, "-m", "fogros_dist.net.bridge_main", "--spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: bridge TLS file {tmp_path}/nowhere/ca.pem does not exist: start the deployment again "
        "so it issues new certificates"
    ]


# -- which link a machine gets ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "address", "listen_address", "remote", "listen", "connect", "names"),
    [
        # A Local machine on loopback keeps plain TCP by default.
        ("auto", "127.0.0.1", "", False, "tcp/127.0.0.1:7447", "tcp/127.0.0.1:7447", ("127.0.0.1",)),
        # An SSH host listens where its SSH connection arrives.
        (
            "auto",
            "10.231.4.2",
            "10.231.4.2",
            True,
            "tls/10.231.4.2:7447",
            "tls/10.231.4.2:7447",
            ("10.231.4.2",),
        ),
        # EC2 behind NAT: reached at its public address, listening on its private one.
        (
            "auto",
            "54.1.2.3",
            "172.31.5.6",
            True,
            "tls/172.31.5.6:7447",
            "tls/54.1.2.3:7447",
            ("54.1.2.3", "172.31.5.6"),
        ),
        # A host behind a bastion: the port is forwarded over SSH to its loopback.
        ("auto", "127.0.0.1", "10.0.0.9", True, "tls/127.0.0.1:7447", "tls/127.0.0.1:7447", ("127.0.0.1",)),
        ("auto", "lab-gpu", "", True, "tls/lab-gpu:7447", "tls/lab-gpu:7447", ("lab-gpu",)),
        ("auto", "fd00::5", "fd00::5", True, "tls/[fd00::5]:7447", "tls/[fd00::5]:7447", ("fd00::5",)),
        # What SSH_CONNECTION may say on a dual-stack sshd, and what no locator can carry.
        (
            "auto",
            "lab-gpu",
            "::ffff:10.0.0.7",
            True,
            "tls/10.0.0.7:7447",
            "tls/lab-gpu:7447",
            ("lab-gpu", "10.0.0.7"),
        ),
        ("auto", "lab-gpu", "fe80::1%eth0", True, "tls/lab-gpu:7447", "tls/lab-gpu:7447", ("lab-gpu",)),
        ("tls", "127.0.0.1", "", False, "tls/127.0.0.1:7447", "tls/127.0.0.1:7447", ("127.0.0.1",)),
        (
            "quic",
            "10.231.4.2",
            "10.231.4.2",
            True,
            "quic/10.231.4.2:7447",
            "quic/10.231.4.2:7447",
            ("10.231.4.2",),
        ),
        # The explicit opt-in: plaintext, but still only on the reached address.
        (
            "tcp",
            "54.1.2.3",
            "172.31.5.6",
            True,
            "tcp/172.31.5.6:7447",
            "tcp/54.1.2.3:7447",
            ("54.1.2.3", "172.31.5.6"),
        ),
    ],
)
def test_each_machine_gets_a_private_link_on_the_address_the_robot_reaches(
    *,
    protocol: str,
    address: str,
    listen_address: str,
    remote: bool,
    listen: str,
    connect: str,
    names: tuple[str, ...],
) -> None:
    link = machine_link(
        protocol=protocol, address=address, port=7447, listen_address=listen_address, remote=remote
    )
    assert (link.listen, link.connect, link.names) == (listen, connect, names)
    assert link.secure == (not listen.startswith("tcp/"))
    assert "0.0.0.0" not in link.listen
    assert link.exposed == (protocol == "tcp")


def test_plaintext_is_exposed_only_off_loopback() -> None:
    assert plaintext_exposed("tcp/0.0.0.0:7447")
    assert plaintext_exposed("tcp/10.0.0.1:7447")
    assert not plaintext_exposed("tcp/127.0.0.1:7447")
    assert not plaintext_exposed("tcp/[::1]:7447")
    assert not plaintext_exposed("tls/10.0.0.1:7447")


# -- Zenoh's TLS settings --------------------------------------------------------------------------


def test_a_tls_endpoint_without_credentials_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^Zenoh endpoint 'tls/10\.0\.0\.1:7447' needs the deployment's "):
        config_values(connect=("tls/10.0.0.1:7447",))
    # "auto" admits what machine_link chooses between, not QUIC.
    with pytest.raises(ConfigError, match=r"uses 'quic' but the bridge protocol is 'auto'"):
        config_values(connect=("quic/10.0.0.1:7447",))


def test_tls_settings_are_mtls_with_name_checks_and_zenoh_takes_them(tmp_path: Path) -> None:
    issued = DeploymentAuthority(deployment="d").issue(tmp_path / "tls", name="robot")
    bridge = BridgeSpec(tls_dir=str(issued.directory))
    # A robot bridge with a Local machine (TCP) and a remote one (TLS) in one session.
    config = build_config(connect=("tcp/127.0.0.1:7447", "tls/10.0.0.1:7447"), bridge=bridge)
    tls = json.loads(config.get_json("transport/link/tls"))
    assert tls["root_ca_certificate"] == str(issued.ca_certificate)
    assert tls["connect_private_key"] == tls["listen_private_key"] == str(issued.private_key)
    assert tls["connect_certificate"] == tls["listen_certificate"] == str(issued.certificate)
    assert (tls["enable_mtls"], tls["verify_name_on_connect"]) == (True, True)
    # Plain TCP endpoints alone need no credentials.
    assert "transport/link/tls/enable_mtls" not in config_values(connect=("tcp/127.0.0.1:7447",))


# -- real sessions ---------------------------------------------------------------------------------


def _session(*, listen: str = "", connect: str = "", credentials: BridgeCredentials) -> zenoh.Session:
    spec = BridgeSpec(protocol=(listen or connect).split("/")[0], tls_dir=str(credentials.directory))  # type: ignore[arg-type]
    return zenoh.open(
        build_config(listen=(listen,) if listen else (), connect=(connect,) if connect else (), bridge=spec)
    )


def _linked(session: zenoh.Session, timeout: float = 4.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list(session.info.peers_zid()):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("protocol", ["tls", "quic"])
def test_the_robot_joins_only_a_machine_whose_certificate_names_the_address_it_dials(
    tmp_path: Path, protocol: str
) -> None:
    authority = DeploymentAuthority(deployment="d")
    robot = authority.issue(tmp_path / "robot", name="robot")
    right = authority.issue(tmp_path / "right", name="gpu", addresses=("127.0.0.1",))
    wrong = authority.issue(tmp_path / "wrong", name="gpu", addresses=("10.9.9.9",))
    for machine, joins in ((wrong, False), (right, True)):
        endpoint = f"{protocol}/127.0.0.1:{free_tcp_port()}"
        listener = _session(listen=endpoint, credentials=machine)
        try:
            dialer = _session(connect=endpoint, credentials=robot)
            try:
                assert _linked(dialer) == joins, machine.directory.name
            finally:
                dialer.close()  # type: ignore[no-untyped-call]
        finally:
            listener.close()  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("kind", STRANGERS)
def test_a_stranger_at_the_machine_port_cannot_make_the_robot_bridge_ready(tmp_path: Path, kind: str) -> None:
    """The robot bridge waits for its machine's readiness token; a stranger listening where the
    machine should be declares it, and the robot bridge still times out. The control: the same
    token from a listener with the deployment's certificate makes it ready."""
    authority = DeploymentAuthority(deployment=DEPLOYMENT)
    robot = authority.issue(tmp_path / "robot", name="robot")
    machine = authority.issue(tmp_path / "gpu", name="gpu", addresses=("127.0.0.1",))
    token = bridge_token_key(deployment=DEPLOYMENT, machine="gpu")

    def robot_bridge(port: int) -> subprocess.Popen[str]:
        spec = BridgeRunSpec(
            deployment=DEPLOYMENT,
            side="robot",
            machine="robot",
            connect=(f"tls/127.0.0.1:{port}",),
            bridge=BridgeSpec(tls_dir=str(robot.directory)),
            graph="dds",
            stats_path=str(tmp_path / f"robot-{port}.json"),
        )
        path = tmp_path / f"robot-{port}.json.spec"
        path.write_text(to_json(spec))
        return subprocess.Popen(
            [sys.executable, "-m", "fogros_dist.net.bridge_main", "--spec", str(path), "--peer-timeout", "5"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    for who, ready in ((kind, False), ("member", True)):
        port = free_tcp_port()
        with visitor(
            who,
            host="127.0.0.1",
            port=port,
            deployment_ca=robot.ca_certificate,
            workdir=tmp_path,
            member=machine,
            listen=True,
        ) as impostor:
            impostor.declare_token(token)
            proc = robot_bridge(port)
            try:
                if ready:
                    assert proc.stdout is not None
                    assert proc.stdout.readline().startswith("bridge ready: robot robot")
                    continue
                _, err = proc.communicate(timeout=60)
                assert proc.returncode == 1, err
                assert "reached 0 of 1 peer bridge(s) within 5 s" in err
                assert impostor.peers() == []
            finally:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGTERM)
                    proc.communicate(timeout=30)
