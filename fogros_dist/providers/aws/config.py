"""The AWS provider's machine options: parsed, checked and defaulted without touching the network.

Every option a user can set on an ``aws`` machine is listed in :data:`OPTIONS`; anything else is
rejected by name. Checks that need AWS itself (does the AMI exist in that region?) happen when the
machine is created, in :mod:`fogros_dist.providers.aws.ec2`.
"""

from __future__ import annotations

import difflib
import getpass
import ipaddress
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from fogros_dist.errors import ConfigError, ProvisionError
from fogros_dist.spec import MachineSpec, OptionValue

__all__ = [
    "CANONICAL_OWNER",
    "DEFAULT_AMI_NAMES",
    "DLAMI_NAMES",
    "DLAMI_OWNER",
    "FLEET_GROUP",
    "OPTIONS",
    "UBUNTU_RELEASES",
    "UDP_PORTS",
    "AwsOptions",
    "caller_owner",
    "config_dir",
    "discover_public_cidr",
    "key_paths",
    "parse_options",
]

# The options a training fleet sets on its aws machines (fogros_dist.train.fleet_run).
FLEET_GROUP = "fleet_group"
UDP_PORTS = "udp_ports"

# Option -> what it is for (shown when an unknown option is rejected).
OPTIONS: dict[str, str] = {
    "region": "AWS region, e.g. 'us-west-2' (default: the profile's or AWS_DEFAULT_REGION)",
    "instance_type": "EC2 instance type, e.g. 'g5.xlarge' (default 't3.medium')",
    "ami": "AMI id, e.g. 'ami-0abc...' (per region)",
    "ami_name": "AMI name pattern ('*' allowed), newest match wins; or a name recorded by `image`",
    "ami_owner": "owner of ami_name: account id, 'self' or 'amazon'",
    "spot": "true for a spot instance (cheaper, may be interrupted)",
    "profile": "AWS credentials profile (default: AWS_PROFILE, else the default chain)",
    "user": "SSH user of the image (default 'ubuntu')",
    "allowed_cidr": (
        "comma-separated CIDRs allowed to reach SSH, the bridge and udp_ports (default: the robot's /32)"
    ),
    "robot_cidr": "the robot's public address as a CIDR; skips discovering it",
    "ttl_minutes": "the machine powers itself off this long after launch (0: no limit)",
    "deadman_minutes": "the machine powers itself off after this long without a robot heartbeat",
    "disk_gb": "root volume size in GiB (default 40)",
    "endpoint_url": "EC2 API endpoint (tests, moto); default AWS_ENDPOINT_URL or AWS's own",
    "bridge_port": "TCP port of the machine's bridge, opened to allowed_cidr (default 7447)",
    "udp_ports": (
        "comma-separated UDP ports opened to allowed_cidr, e.g. '51820' (`train --vpn wireguard` adds "
        "its mesh's port); peers other than the robot reach them only when their addresses are in "
        "allowed_cidr (default none)"
    ),
    "remote_dir": "fogros_dist's directory on the machine (default '~/.fogros_dist')",
    "workspace": "the robot's colcon workspace its nodes' packages come from (default: the sourced overlay)",
    "torch": "true or false: torch in the machine's runtime (default: when one of its nodes needs it)",
    "fleet_group": (
        "true: also join the deployment's fleet security group, which admits every protocol from its "
        "members only (machines of this deployment in this region; for torchrun/NCCL) (default false)"
    ),
}

CANONICAL_OWNER = "099720109477"
# Stock Ubuntu per ROS distro when neither ami nor ami_name is given (Canonical's official images;
# Noble's names moved to hvm-ssd-gp3). {arch} is amd64 or arm64, from the instance type.
DEFAULT_AMI_NAMES: dict[str, str] = {
    "humble": "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-{arch}-server-*",
    "jazzy": "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-{arch}-server-*",
    "kilted": "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-{arch}-server-*",
}
# The Ubuntu release each ROS 2 distro is built for (the ROS 2 apt repository has no other).
UBUNTU_RELEASES: dict[str, str] = {"humble": "22.04", "jazzy": "24.04", "kilted": "24.04"}
# The public image with the NVIDIA driver for GPU instance types, when no image of the project's
# own is recorded or built: AWS's Deep Learning Base AMI (OSS NVIDIA driver, CUDA, no ROS 2 and
# no frameworks), owner "amazon", newest first. {release} is UBUNTU_RELEASES[distro].
DLAMI_OWNER = "amazon"
DLAMI_NAMES: dict[str, str] = {
    "x86_64": "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu {release}) *",
    "arm64": "Deep Learning ARM64 Base OSS Nvidia Driver GPU AMI (Ubuntu {release}) *",
}

_AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_MACHINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")


@dataclass(frozen=True, kw_only=True)
class AwsOptions:
    """One aws machine's options, checked and defaulted (region may still be unset: see ``region``).

    ``region`` is ``""`` when the machine does not set one; the EC2 session then takes the
    profile's region (or AWS_DEFAULT_REGION) and fails with a fix if there is none.
    """

    machine: str
    region: str = ""
    instance_type: str = "t3.medium"
    ami: str = ""
    ami_name: str = ""
    ami_owner: str = ""
    spot: bool = False
    profile: str = ""
    user: str = "ubuntu"
    allowed_cidr: tuple[str, ...] = ()
    robot_cidr: str = ""
    ttl_minutes: int = 0
    deadman_minutes: int = 15
    disk_gb: int = 40
    endpoint_url: str = ""
    bridge_port: int = 7447
    # Opened from allowed_cidr like SSH and the bridge: a WireGuard mesh's port, whose peers the
    # mesh's own host firewall then admits one by one.
    udp_ports: tuple[int, ...] = ()
    remote_dir: str = "~/.fogros_dist"
    # None: torch is installed when one of the machine's nodes needs it.
    torch: bool | None = None
    # Join the deployment's fleet group (ec2.fleet_group_name): distributed training's ranks open
    # connections to each other on arbitrary ports, which the machine's own group never admits.
    fleet_group: bool = False

    def market(self) -> str:
        """'spot' or 'on-demand'."""
        return "spot" if self.spot else "on-demand"


def parse_options(machine: MachineSpec) -> AwsOptions:
    """Check ``machine``'s options and return them with defaults filled in.

    Raises:
        ConfigError: an unknown option, a value of the wrong type or out of range; the message
            names the option, the value and the fix.
    """
    where = f"machine {machine.name!r}"
    if not _MACHINE_NAME.match(machine.name):
        msg = (
            f"{where}: an aws machine name becomes part of AWS resource names: use letters, digits, "
            f"'-' and '_' (at most 63)"
        )
        raise ConfigError(msg)
    values = dict(machine.options)
    for key in values:
        if key not in OPTIONS:
            close = difflib.get_close_matches(key, OPTIONS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            msg = (
                f"{where}: option {key!r} is not supported by provider 'aws': {hint}"
                f"(supported: {', '.join(sorted(OPTIONS))})"
            )
            raise ConfigError(msg)
    options = AwsOptions(
        machine=machine.name,
        region=_text(values, "region", where),
        instance_type=_text(values, "instance_type", where) or "t3.medium",
        ami=_text(values, "ami", where),
        ami_name=_text(values, "ami_name", where),
        ami_owner=_text(values, "ami_owner", where),
        spot=_flag(values, "spot", where),
        profile=_text(values, "profile", where),
        user=_text(values, "user", where) or "ubuntu",
        allowed_cidr=_cidrs(values, "allowed_cidr", where),
        robot_cidr=",".join(_cidrs(values, "robot_cidr", where)),
        ttl_minutes=_number(values, "ttl_minutes", where, default=0, low=0, high=60 * 24 * 365),
        deadman_minutes=_number(values, "deadman_minutes", where, default=15, low=1, high=60 * 24 * 7),
        disk_gb=_number(values, "disk_gb", where, default=40, low=8, high=16_384),
        endpoint_url=_text(values, "endpoint_url", where),
        bridge_port=_number(values, "bridge_port", where, default=7447, low=1024, high=65535),
        udp_ports=_ports(values, "udp_ports", where),
        remote_dir=_text(values, "remote_dir", where) or "~/.fogros_dist",
        torch=_flag(values, "torch", where) if "torch" in values else None,
        fleet_group=_flag(values, "fleet_group", where),
    )
    _check(options, where)
    return options


def _check(options: AwsOptions, where: str) -> None:
    if options.ami and options.ami_name:
        msg = f"{where}: set either ami ({options.ami!r}) or ami_name ({options.ami_name!r}), not both"
        raise ConfigError(msg)
    if options.ami and not _AMI_ID.match(options.ami):
        msg = f"{where}: ami {options.ami!r} is not an AMI id: use 'ami-' and 8 or 17 hex digits, or ami_name"
        raise ConfigError(msg)
    if options.ami_owner and not options.ami_name:
        msg = f"{where}: ami_owner {options.ami_owner!r} needs ami_name: set ami_name too, or drop ami_owner"
        raise ConfigError(msg)
    if not _USER.match(options.user):
        msg = f"{where}: user {options.user!r} is not a valid login name: use the image's user, e.g. 'ubuntu'"
        raise ConfigError(msg)
    if not _INSTANCE_TYPE.match(options.instance_type):
        msg = (
            f"{where}: instance_type {options.instance_type!r} is not an EC2 instance type: "
            f"use a name such as 'g5.xlarge'"
        )
        raise ConfigError(msg)
    if options.robot_cidr and "," in options.robot_cidr:
        msg = f"{where}: robot_cidr {options.robot_cidr!r} must be one address: use allowed_cidr for several"
        raise ConfigError(msg)
    if options.endpoint_url and not options.endpoint_url.startswith(("http://", "https://")):
        msg = f"{where}: endpoint_url {options.endpoint_url!r} must start with http:// or https://"
        raise ConfigError(msg)


def _text(values: dict[str, OptionValue], key: str, where: str) -> str:
    value = values.get(key, "")
    if not isinstance(value, str):
        msg = f"{where}: option {key} must be text, got {value!r}: quote it"
        raise ConfigError(msg)
    return value.strip()


def _flag(values: dict[str, OptionValue], key: str, where: str) -> bool:
    value = values.get(key, False)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        msg = f"{where}: option {key} must be true or false, got {value!r}"
        raise ConfigError(msg)
    return value


def _number(
    values: dict[str, OptionValue], key: str, where: str, *, default: int, low: int, high: int
) -> int:
    value = values.get(key, default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        msg = f"{where}: option {key} is {value!r}: use a whole number in {low}..{high}"
        raise ConfigError(msg)
    return value


def _ports(values: dict[str, OptionValue], key: str, where: str) -> tuple[int, ...]:
    """Comma-separated ports (one port may be a bare number), sorted, each once."""
    value = values.get(key, "")
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else _text(values, key, where)
    ports: set[int] = set()
    for part in (p.strip() for p in text.split(",")) if text else ():
        if not (part.isascii() and part.isdigit()) or not 1 <= int(part) <= 65535:
            msg = (
                f"{where}: option {key} has {part!r}, which is not a port: use comma-separated whole "
                f"numbers in 1..65535, e.g. '51820'"
            )
            raise ConfigError(msg)
        ports.add(int(part))
    return tuple(sorted(ports))


def _cidrs(values: dict[str, OptionValue], key: str, where: str) -> tuple[str, ...]:
    text = _text(values, key, where)
    if not text:
        return ()
    cidrs = []
    for part in (p.strip() for p in text.split(",")):
        try:
            network = ipaddress.ip_network(part, strict=False)
        except ValueError as err:
            msg = (
                f"{where}: option {key} has {part!r}, which is not an address or CIDR: "
                f"use e.g. '203.0.113.7/32'"
            )
            raise ConfigError(msg) from err
        if network.prefixlen == 0:
            # 0.0.0.0/0 is the incumbent's mistake: SSH and the bridge open to the whole internet.
            msg = (
                f"{where}: option {key} {part!r} opens the machine to the whole internet: "
                f"name the robot's address or network instead"
            )
            raise ConfigError(msg)
        cidrs.append(str(network))
    return tuple(cidrs)


def discover_public_cidr(*, timeout: float = 5.0) -> str:
    """The robot's public IPv4 address as a /32, asked of AWS's checkip service.

    Only called when a machine sets neither ``allowed_cidr`` nor ``robot_cidr``; tests always set
    one, so nothing here runs in them.

    Raises:
        ProvisionError: the service is unreachable or answered something that is not an address.
    """
    import urllib.request

    url = "https://checkip.amazonaws.com"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read(64).decode("ascii", "replace").strip()
        address = ipaddress.ip_address(text)
    except (OSError, ValueError) as err:
        msg = (
            f"could not discover this robot's public address from {url} ({err}): "
            f"set machine option robot_cidr or allowed_cidr (e.g. '203.0.113.7/32')"
        )
        raise ProvisionError(msg) from err
    return f"{address}/{address.max_prefixlen}"


def config_dir() -> Path:
    """The user's fogros_dist config directory: $XDG_CONFIG_HOME/fogros_dist (~/.config/...)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "fogros_dist"


def caller_owner() -> str:
    """Who is asking, as the ``fogros_dist:owner`` tag records it: ``user@robot-hostname``.

    Every resource this user on this robot creates carries it, and `down --all --region R`
    removes only resources carrying it unless told ``--any-owner``.
    """
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def key_paths(*, deployment: str, machine: str) -> tuple[Path, Path]:
    """Where a machine's SSH private key (0600) and its known_hosts file are kept on the robot."""
    keys = config_dir() / "keys"
    stem = f"{deployment}-{machine}"
    return keys / f"{stem}.pem", keys / f"{stem}.known_hosts"
