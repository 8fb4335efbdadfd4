"""A real `fogros-dist up` of an AWS deployment interrupted while provisioning, then `down`, and
`down --all --region` scoped to its caller, all against moto_server, checked through boto3.

moto's instances run nothing and their addresses lead nowhere, so every instance's sshd is
"reached" at a loopback port nothing listens on (FOGROS_DIST_AWS_SSH_ENDPOINT): `up` then sits in
its sshd wait, with the instance, its security group, key pair, volume and key file all in
existence, until it is killed or told to stop.
"""

from __future__ import annotations

import os
import pty
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aws_test_helpers import ROBOT_CIDR, UBUNTU_AMI, context, ec2_client, machine, tagged

from fogros_dist.providers.aws.config import caller_owner, key_paths
from fogros_dist.providers.aws.provider import AWSProvider

CLI = [sys.executable, "-m", "fogros_dist.cli.main"]
# Generous bounds (a fresh CLI process spends ~1.5 s loading boto3; moto answers in milliseconds).
REACH_SSH_WAIT_S = 90.0
UP_ENDS_AFTER_DOWN_S = 20.0


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _deployment_file(tmp_path: Path, name: str, *, endpoint: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f"""name = "{name}"
distro = "jazzy"

[[machines]]
name = "gpu"
provider = "aws"
[machines.options]
region = "us-west-2"
instance_type = "t3.micro"
ami = "{UBUNTU_AMI}"
robot_cidr = "{ROBOT_CIDR}"
endpoint_url = "{endpoint}"

[[nodes]]
name = "edge_detector"
package = "fogros_dist"
executable = "edge_detector"
machine = "gpu"
topics_in = ["/camera/image:sensor_msgs/msg/Image"]
topics_out = ["/camera/edges:sensor_msgs/msg/Image"]
"""
    )
    return path


class UpProcess:
    """`fogros-dist up FILE` as a user runs it; its progress lines (stderr) collected as they come."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, needle: str, *, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if needle in line:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(f"`up` never printed {needle!r}:\n" + "\n".join(self.lines))

    def stop(self) -> None:
        # Stopped by its own PID only.
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self._reader.join(timeout=10)


@pytest.fixture
def up_env(aws_env: dict[str, str]) -> dict[str, str]:
    return {**aws_env, "FOGROS_DIST_AWS_SSH_ENDPOINT": f"127.0.0.1:{_closed_port()}"}


@pytest.fixture
def up_in_ssh_wait(
    up_env: dict[str, str], moto_endpoint: str, tmp_path: Path, deployment: str
) -> Iterator[UpProcess]:
    """An `up` that has created its instance (and everything around it) and waits for sshd."""
    spec_file = _deployment_file(tmp_path, deployment, endpoint=moto_endpoint)
    up = UpProcess([*CLI, "up", str(spec_file)], up_env)
    try:
        up.wait_for("waiting", timeout=REACH_SSH_WAIT_S)
        up.wait_for("sshd of instance", timeout=REACH_SSH_WAIT_S)
        left = tagged(ec2_client(), deployment)
        assert set(left) == {"instances", "security_groups", "key_pairs", "volumes"}, left
        assert key_paths(deployment=deployment, machine="gpu")[0].exists()
        yield up
    finally:
        up.stop()


def _fogros(
    env: dict[str, str], *args: str, stdin: int | None = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=180, check=False, stdin=stdin
    )


def _nothing_left(deployment: str) -> None:
    assert tagged(ec2_client(), deployment) == {}
    for path in key_paths(deployment=deployment, machine="gpu"):
        assert not path.exists(), path


def test_down_after_up_was_killed_while_provisioning_leaves_nothing(
    up_env: dict[str, str], up_in_ssh_wait: UpProcess, deployment: str
) -> None:
    up_in_ssh_wait.proc.send_signal(signal.SIGKILL)
    up_in_ssh_wait.proc.wait(timeout=30)

    result = _fogros(up_env, "down", deployment)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"deployment {deployment} is down" in result.stdout
    _nothing_left(deployment)


def test_down_while_up_provisions_ends_the_up_and_leaves_nothing(
    up_env: dict[str, str], up_in_ssh_wait: UpProcess, deployment: str
) -> None:
    asked = time.monotonic()
    result = _fogros(up_env, "down", deployment)
    up_in_ssh_wait.proc.wait(timeout=UP_ENDS_AFTER_DOWN_S)
    assert time.monotonic() - asked < UP_ENDS_AFTER_DOWN_S
    assert result.returncode == 0, result.stdout + result.stderr
    assert up_in_ssh_wait.proc.returncode != 0, "\n".join(up_in_ssh_wait.lines)
    _nothing_left(deployment)


# -- down --all --region: the caller's resources only, listed and confirmed ------------------------


def _on_a_terminal(env: dict[str, str], *args: str, answer: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI with a pseudo-terminal as stdin and type ``answer`` into it."""
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            [*CLI, *args], env=env, stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        os.write(controller, answer.encode())
        out, err = proc.communicate(timeout=180)
    finally:
        os.close(terminal)
        os.close(controller)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def test_down_all_region_takes_only_the_callers_resources_unless_any_owner(
    aws_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    region = "ca-central-1"  # a region of its own: the sweeps below remove what is tagged there
    client = ec2_client(region)
    me = caller_owner()
    mine = AWSProvider().launch(
        machine(region=region, instance_type="t3.micro"), context(tmp_path, "sweep-mine")
    )
    # Another user on another robot sharing the account: the same code, another owner tag.
    with monkeypatch.context() as bob:
        bob.setenv("LOGNAME", "bob")
        bob.setattr(socket, "gethostname", lambda: "bobs-robot")
        theirs = AWSProvider().launch(
            machine(name="cpu", region=region, instance_type="t3.micro"), context(tmp_path, "sweep-theirs")
        )
    assert caller_owner() == me
    assert set(tagged(client, "sweep-mine")) == {"instances", "security_groups", "key_pairs", "volumes"}
    assert set(tagged(client, "sweep-theirs")) == {"instances", "security_groups", "key_pairs", "volumes"}

    # No terminal, no --yes: one line, nothing removed.
    refused = _fogros(aws_env, "down", "--all", "--region", region)
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.strip() == (
        f"fogros-dist: error: down --all --region {region} would remove 4 AWS resource(s) and there is no "
        f"terminal to confirm on: add --yes (or run it on a terminal to see the list first)"
    )
    assert tagged(client, "sweep-mine")
    assert tagged(client, "sweep-theirs")

    # On a terminal: the listing names what would go; "n" removes nothing.
    declined = _on_a_terminal(aws_env, "down", "--all", "--region", region, answer="n\n")
    assert declined.returncode == 1
    listing = declined.stdout
    counts = "1 instance(s), 1 security group(s), 1 key pair(s), 1 volume(s)"
    assert f"region {region}: would remove {counts} of owner {me}:" in listing
    assert (
        f"  instance {mine.instance_id} (t3.micro, running): deployment sweep-mine, machine gpu, owner {me}"
        in listing
    )
    assert "  security group sg-" in listing
    assert "(fogros_dist-sweep-mine-gpu): deployment sweep-mine" in listing
    assert "  key pair fogros_dist-sweep-mine-gpu: deployment sweep-mine, machine gpu" in listing
    assert "  volume vol-" in listing
    assert "(4 resource(s) of other owners are left alone: --any-owner takes them)" in listing
    assert theirs.instance_id not in listing
    assert "not confirmed, nothing was removed" in declined.stderr
    assert tagged(client, "sweep-mine")
    assert tagged(client, "sweep-theirs")

    # "y": only the caller's go, with their key files; the other owner's stay.
    confirmed = _on_a_terminal(aws_env, "down", "--all", "--region", region, answer="y\n")
    assert confirmed.returncode == 0, confirmed.stdout + confirmed.stderr
    assert f"{region}: removed instance {mine.instance_id}" in confirmed.stdout
    assert f"region {region}: removed {counts}" in confirmed.stdout
    assert tagged(client, "sweep-mine") == {}
    assert not mine.key_file.exists()
    assert set(tagged(client, "sweep-theirs")) == {"instances", "security_groups", "key_pairs", "volumes"}

    # --any-owner --yes: the rest goes too, without a question.
    everyone = _fogros(aws_env, "down", "--all", "--region", region, "--any-owner", "--yes")
    assert everyone.returncode == 0, everyone.stdout + everyone.stderr
    assert f"region {region}: would remove {counts} of every owner:" in everyone.stdout
    assert "owner bob@bobs-robot" in everyone.stdout
    assert tagged(client) == {}


def test_any_owner_without_region_is_refused(aws_env: dict[str, str]) -> None:
    result = _fogros(aws_env, "down", "--all", "--any-owner")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "fogros-dist: error: --any-owner only goes with --all --region REGION (it widens that sweep): "
        "add --region"
    )
