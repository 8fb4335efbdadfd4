"""Waiting for the first-boot ROS 2 install on the public GPU image, over the instance's real sshd.

As in test_aws_ssh, the test plays cloud-init: it serves the instance's own host key and key pair
with OpenSSH's sshd on 127.0.0.1, and it writes the install's marker files the script from the
user-data would write (that script itself needs apt and the ROS 2 apt repository, which tests never
reach; its syntax and its place in the user-data are checked in test_aws_gpu_image).
"""

from __future__ import annotations

import getpass
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aws_test_helpers import Progress, context, machine
from sshd_support import SSHD
from test_aws_ssh import InstanceSshd, _free_port

from fogros_dist.errors import ProvisionError
from fogros_dist.providers.aws import provider as aws_provider
from fogros_dist.providers.aws.provider import AWSProvider
from fogros_dist.remote.runner import RetryPolicy

pytestmark = pytest.mark.skipif(not Path(SSHD).exists(), reason="OpenSSH server (sshd) is not installed")


@pytest.fixture
def instance_sshd(tmp_path: Path) -> Iterator[InstanceSshd]:
    server = InstanceSshd(tmp_path / "sshd", _free_port())
    yield server
    server.stop()


def _provider(sshd: InstanceSshd, machine_dir: Path) -> AWSProvider:
    return AWSProvider(
        ssh_endpoint=lambda _address: ("127.0.0.1", sshd.port),
        retry=RetryPolicy(attempts=3, first_delay_s=0.2, max_delay_s=0.5, timeout_s=5.0),
        heartbeat_path=str(machine_dir / "heartbeat"),
        ros_ready_path=str(machine_dir / "ros-ready"),
    )


def test_the_robot_waits_for_the_install_and_keeps_the_heartbeat_fresh(
    aws_env: dict[str, str],
    tmp_path: Path,
    deployment: str,
    instance_sshd: InstanceSshd,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aws_provider, "_ROS_POLL_S", 0.2)
    machine_dir = tmp_path / "machine"
    machine_dir.mkdir()
    provider = _provider(instance_sshd, machine_dir)
    progress = Progress()
    ctx = context(tmp_path, deployment, progress)
    # No ami: the public GPU image, which installs ROS 2 at first boot.
    launched = provider.launch(machine(ami=None, user=getpass.getuser()), ctx)
    try:
        assert launched.install_ros == "jazzy"
        instance_sshd.start_as_instance(launched)
        # "cloud-init" finishes a moment after the robot starts waiting.
        finisher = threading.Timer(1.0, (machine_dir / "ros-ready").touch)
        finisher.start()
        started = time.monotonic()
        provider.wait_for_ros(launched, ctx)
        assert time.monotonic() - started >= 0.9
        finisher.join()
        stages = progress.stages()
        # The wait shows itself as it goes ("waiting": what, attempt, seconds) between the two.
        assert [stage for stage in stages if stage != "waiting"][-2:] == ["installing", "installed"]
        assert stages.index("installing") < stages.index("waiting") < stages.index("installed")
        assert any(
            "the first-boot install of ROS 2 jazzy (attempt" in t
            for s, t in progress.events
            if s == "waiting"
        )
        assert dict(progress.events)["installing"] == "ROS 2 jazzy on the image (cloud-init, first boot only)"
        # Every check touched the heartbeat, so a long install never trips the dead-man switch.
        assert (machine_dir / "heartbeat").exists()

        # A second wait (a reused instance) returns at once, saying nothing.
        before = len(progress.events)
        provider.wait_for_ros(launched, ctx)
        assert len(progress.events) == before

        # A failed install is one line naming the failed step and where its log is.
        (machine_dir / "ros-failed").write_text("exit code 100 at: apt_get install ros-jazzy-ros-base\n")
        with pytest.raises(ProvisionError) as caught:
            provider.wait_for_ros(launched, ctx)
        message = str(caught.value)
        assert message.startswith(
            "aws machine 'gpu', stage installing: installing ROS 2 jazzy at first boot failed "
            "(exit code 100 at: apt_get install ros-jazzy-ros-base): see /var/log/cloud-init-output.log"
        )
        assert f"fogros-dist ssh {deployment} gpu -- tail -50 /var/log/cloud-init-output.log" in message
        assert "\n" not in message
    finally:
        provider.release(launched.ref)
