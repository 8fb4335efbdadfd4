"""Cloud-init user-data for an AWS machine: its SSH host key, the dead-man switch and, on an image
without ROS 2 (the public GPU image), the ROS 2 install.

The machine's SSH host key is made here, on the robot, and handed to the instance in its
user-data; the robot records the public half as the known host for the instance's address before
the first connection. So the very first SSH connection is verified: no trust on first use, unlike
FogROS2's AutoAddPolicy. (User-data is readable by whoever may call DescribeInstanceAttribute in
the account, the same people who could replace the instance anyway.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fogros_dist.providers.aws.deadman import DeadmanConfig, deadman_files

__all__ = [
    "ROS_FAILED",
    "ROS_READY",
    "HostKey",
    "generate_host_key",
    "known_hosts_line",
    "ros_install_script",
    "user_data",
]

# Written by the ROS 2 install at first boot: done, or the failure (the robot waits for either).
ROS_READY = "/var/lib/fogros_dist/ros-ready"
ROS_FAILED = "/var/lib/fogros_dist/ros-failed"
_ROS_SCRIPT = "/var/lib/fogros_dist/install-ros.sh"


@dataclass(frozen=True, kw_only=True)
class HostKey:
    """An ed25519 SSH host key: the OpenSSH private key and the ``ssh-ed25519 AAAA...`` public line."""

    private_openssh: str
    public_openssh: str

    def __repr__(self) -> str:
        # Never let a traceback or a debug log print the private half.
        return f"HostKey(public_openssh={self.public_openssh!r})"


def generate_host_key() -> HostKey:
    """A fresh ed25519 host key pair (from ``cryptography``, which paramiko depends on)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.OpenSSH,
        encryption_algorithm=serialization.NoEncryption(),
    ).decode("ascii")
    public = (
        key.public_key()
        .public_bytes(encoding=serialization.Encoding.OpenSSH, format=serialization.PublicFormat.OpenSSH)
        .decode("ascii")
    )
    return HostKey(private_openssh=private, public_openssh=public)


def known_hosts_line(*, address: str, public_key: str, port: int = 22) -> str:
    """One OpenSSH known_hosts line for ``address`` (``[address]:port`` off port 22)."""
    host = address if port == 22 else f"[{address}]:{port}"
    # Only "type base64": a comment after the key is not part of the key.
    key_type, key_b64 = public_key.split()[:2]
    return f"{host} {key_type} {key_b64}\n"


def ros_install_script(distro: str) -> str:
    """A bash script that installs ROS 2 ``distro`` (ros-base and rmw_cyclonedds_cpp) from
    the ROS 2 apt repository, plus python3-venv for fogros_dist's runtime, then writes ROS_READY; on any
    failure it writes ROS_FAILED (the step and exit code) instead.

    The same apt steps as cloud_images/scripts/install.sh, without its driver and venv: the image
    has the driver, and fogros_dist pushes its own runtime.
    """
    return f"""#!/bin/bash
# fogros_dist: ROS 2 {distro} on an image without it (written by the AWS provider's user-data).
set -euo pipefail
trap 'echo "exit code $? at: $BASH_COMMAND" >{ROS_FAILED}' ERR
export DEBIAN_FRONTEND=noninteractive
# On a first boot unattended-upgrades may hold the dpkg lock: wait for it instead of failing.
apt_get() {{ apt-get -o DPkg::Lock::Timeout=600 -y -q "$@"; }}
codename="$(. /etc/os-release && echo "${{UBUNTU_CODENAME:-$VERSION_CODENAME}}")"
apt_get update
apt_get install --no-install-recommends ca-certificates curl python3-venv
if ! grep -rqs 'packages.ros.org/ros2/' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  curl -fsSL https://raw.githubusercontent.com/ros/rosdistro/master/ros.key \
    -o /usr/share/keyrings/ros-archive-keyring.gpg
  echo "deb [arch=$(dpkg --print-architecture) signed-by=/usr/share/keyrings/ros-archive-keyring.gpg]" \
    "http://packages.ros.org/ros2/ubuntu $codename main" >/etc/apt/sources.list.d/ros2.list
  apt_get update
fi
apt_get install --no-install-recommends ros-{distro}-ros-base ros-{distro}-rmw-cyclonedds-cpp
touch {ROS_READY}
"""


def user_data(*, host_key: HostKey, deadman: DeadmanConfig, user: str, install_ros: str = "") -> str:
    """The ``#cloud-config`` document for one machine.

    Written as JSON (valid YAML) so that no YAML library is needed and nothing needs escaping by
    hand; ``cloud-init schema --config-file`` accepts it (checked in the tests).

    Args:
        host_key: the machine's SSH host key; cloud-init installs it and deletes any other.
        deadman: the dead-man switch settings for this machine.
        user: the image's SSH user; it may touch the heartbeat file without sudo.
        install_ros: a ROS 2 distro to install at first boot (:func:`ros_install_script`), or "".
    """
    config: dict[str, Any] = {
        # Replace the image's host keys with ours. Given ssh_keys, cloud-init generates none of its
        # own, so no client is offered a key it cannot verify (the schema wants a non-empty list).
        "ssh_deletekeys": True,
        "ssh_genkeytypes": ["ed25519"],
        "ssh_keys": {
            "ed25519_private": host_key.private_openssh,
            "ed25519_public": host_key.public_openssh,
        },
        "ssh_pwauth": False,
        "write_files": [
            {"path": path, "content": content, "permissions": mode, "owner": "root:root"}
            for path, content, mode in deadman_files(deadman)
        ]
        + [
            # A fresh heartbeat at first boot, so the switch starts counting now, not from the image.
            {"path": deadman.heartbeat, "content": "", "permissions": "0644", "owner": "root:root"}
        ],
        "runcmd": [
            ["chown", f"{user}:", deadman.heartbeat],
            ["systemctl", "daemon-reload"],
            ["systemctl", "enable", "--now", "fogros-deadman.timer"],
        ],
    }
    if install_ros:
        config["write_files"].append(
            {
                "path": _ROS_SCRIPT,
                "content": ros_install_script(install_ros),
                "permissions": "0755",
                "owner": "root:root",
            }
        )
        # Last: the dead-man switch is armed before the long install starts.
        config["runcmd"].append(["bash", _ROS_SCRIPT])
    return "#cloud-config\n" + json.dumps(config, indent=2) + "\n"
