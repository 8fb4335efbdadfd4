"""The AWS provider composed with the SSH layer: the instance's sshd, played by a real OpenSSH server.

moto's instances run nothing, so the test plays the part cloud-init plays on a real instance: it
reads the launched instance's user-data from the EC2 API (the host key the robot generated) and
the key pair's public key from EC2, and starts OpenSSH's sshd on 127.0.0.1 with exactly those.
The provider's test hook points the SSH target at that sshd. Everything after that is the real
path: the known_hosts entry written at launch verifies the very first connection (no trust on
first use), the deployment key authenticates, the SSH layer probes and starts processes, the
heartbeat touches its file, and terminate ends the instance.
"""

from __future__ import annotations

import base64
import getpass
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aws_test_helpers import Progress, context, ec2_client, machine, tagged
from sshd_support import SSHD, ensure_privilege_separation_dir

from fogros_dist.errors import ProvisionError
from fogros_dist.providers.aws.provider import AWSProvider, AwsRef, LaunchedInstance
from fogros_dist.providers.base import ProcessSpec
from fogros_dist.remote.runner import RetryPolicy

pytestmark = pytest.mark.skipif(not Path(SSHD).exists(), reason="OpenSSH server (sshd) is not installed")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class InstanceSshd:
    """An sshd on 127.0.0.1 set up as cloud-init sets up the instance's (host key, authorized key)."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start_as_instance(self, launched: LaunchedInstance) -> None:
        """Serve the host key from the instance's user-data and the key pair's public key, both
        read back from the EC2 API (as cloud-init reads them on a real instance)."""
        client = ec2_client()
        encoded = client.describe_instance_attribute(InstanceId=launched.instance_id, Attribute="userData")
        cloud_config = json.loads(base64.b64decode(encoded["UserData"]["Value"]).decode().split("\n", 1)[1])
        name = f"fogros_dist-{launched.ref.deployment}-{launched.ref.machine}"
        (pair,) = client.describe_key_pairs(KeyNames=[name], IncludePublicKey=True)["KeyPairs"]
        self.start(host_key=cloud_config["ssh_keys"]["ed25519_private"], authorized=pair["PublicKey"] + "\n")

    def start(self, *, host_key: str, authorized: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        key_file = self.root / "ssh_host_ed25519_key"
        key_file.write_text(host_key)
        key_file.chmod(0o600)
        authorized_file = self.root / "authorized_keys"
        authorized_file.write_text(authorized)
        config = self.root / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {key_file}\n"
            f"AuthorizedKeysFile {authorized_file}\nPidFile {self.root / 'sshd.pid'}\n"
            "UsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n"
        )
        ensure_privilege_separation_dir()
        log = (self.root / "sshd.log").open("wb")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"sshd did not start: {(self.root / 'sshd.log').read_text()}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[InstanceSshd]:
    server = InstanceSshd(tmp_path / "sshd", _free_port())
    yield server
    server.stop()


def _provider(sshd: InstanceSshd, heartbeat: Path) -> AWSProvider:
    return AWSProvider(
        ssh_endpoint=lambda _address: ("127.0.0.1", sshd.port),
        retry=RetryPolicy(attempts=3, first_delay_s=0.2, max_delay_s=0.5, timeout_s=5.0),
        heartbeat_path=str(heartbeat),
    )


def test_instance_is_reached_over_verified_ssh_and_runs_processes(
    aws_env: dict[str, str], tmp_path: Path, deployment: str, sshd: InstanceSshd
) -> None:
    heartbeat = tmp_path / "machine" / "heartbeat"
    heartbeat.parent.mkdir()
    provider = _provider(sshd, heartbeat)
    progress = Progress()
    ctx = context(tmp_path, deployment, progress=progress)
    spec = machine(user=getpass.getuser(), remote_dir=str(tmp_path / "machine" / "fogros_dist"))
    launched = provider.launch(spec, ctx)
    sshd.start_as_instance(launched)

    host = provider.connect(launched, ctx)
    try:
        assert progress.stages()[:4] == ["requesting", "pending", "running", "ssh-ready"]
        # The first connection was checked against the key recorded at launch: nothing was added.
        assert launched.known_hosts.read_text().count("\n") == 1
        assert "recorded new host key" not in dict(progress.events)["ssh-ready"]
        assert host.provider == "aws"
        # Where the robot reaches it (the public address in AWS; the test's sshd here).
        assert host.address == launched.ssh_host == "127.0.0.1"
        assert AwsRef.from_host(host) == launched.ref
        assert host.bridge_port == 7447
        # The heartbeat ran once at connect (and keeps running in the background).
        assert heartbeat.exists()

        # The SSH layer runs processes there for the engine.
        marker = provider.upload(host, _write(tmp_path / "hello.txt", "hello from the robot\n"), "hello.txt")
        proc = provider.start(
            host, ProcessSpec(role="node", name="cat", argv=("sh", "-c", f"cat {marker}; exit 3"))
        )
        deadline = time.monotonic() + 20
        while (code := proc.poll()) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert code == 3
        assert provider.attach(host, proc.record).poll() == 3
    finally:
        provider.terminate(host)
    assert tagged(ec2_client(), deployment) == {}
    assert not launched.key_file.exists()


def test_wrong_host_key_is_refused_and_the_new_instance_released(
    aws_env: dict[str, str], tmp_path: Path, deployment: str, sshd: InstanceSshd
) -> None:
    # Something else answers at the instance's address, with a key the robot did not make.
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    sshd.start(host_key=(tmp_path / "other").read_text(), authorized="")
    heartbeat = tmp_path / "heartbeat"
    provider = _provider(sshd, heartbeat)

    with pytest.raises(ProvisionError, match=r"ssh-ready: .*host key of \[127.0.0.1\]:\d+ CHANGED"):
        provider.create(machine(user=getpass.getuser()), context(tmp_path, deployment))
    # Nothing was trusted, no heartbeat ran, and the instance create() launched is gone again.
    assert not heartbeat.exists()
    assert tagged(ec2_client(), deployment) == {}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
