"""Machines a launch file or script can ask for: ``Local()``, ``SSHHost(...)``, ``AWS()``.

These only describe a machine (a frozen :class:`~fogros_dist.spec.MachineSpec`); nothing is
provisioned when a launch file is evaluated. The deployment engine does that when the launch runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from fogros_dist.spec import MachineSpec, OptionValue

__all__ = ["AWS", "Local", "Machine", "SSHHost"]


def Machine(name: str, *, provider: str, **options: OptionValue) -> MachineSpec:
    """A machine from any registered provider, with provider-specific options."""
    return MachineSpec(name=name, provider=provider, options=tuple(sorted(options.items())))


def Local(name: str = "local", *, domain_id: int | None = None) -> MachineSpec:
    """Processes on this machine in their own ROS domain: the embedded default, no cloud needed."""
    options: dict[str, OptionValue] = {} if domain_id is None else {"domain_id": domain_id}
    return Machine(name, provider="local", **options)


def AWS(
    name: str = "aws",
    *,
    instance_type: str | None = None,
    region: str | None = None,
    spot: bool | None = None,
    ami: str | None = None,
    ami_name: str | None = None,
    ami_owner: str | None = None,
    profile: str | None = None,
    user: str | None = None,
    allowed_cidr: str | Sequence[str] | None = None,
    robot_cidr: str | None = None,
    ttl_minutes: int | None = None,
    deadman_minutes: int | None = None,
    disk_gb: int | None = None,
    endpoint_url: str | None = None,
    bridge_port: int | None = None,
    remote_dir: str | None = None,
    workspace: str | None = None,
    torch: bool | None = None,
) -> MachineSpec:
    """An EC2 instance (on-demand or spot) that powers itself off when the robot goes silent.

    Without ``ami``/``ami_name`` an NVIDIA GPU instance type (``g5.xlarge``) gets an image with the
    NVIDIA driver and ROS 2 (see ``fogros_dist.providers.aws.default_image``); ``torch`` (default:
    when one of its nodes needs it) puts torch in its runtime.

    Only the options given are recorded; the provider fills in the rest (see
    ``fogros_dist.providers.aws.config.OPTIONS``) and checks them all when the deployment is planned.
    ``allowed_cidr`` may be one CIDR, a comma-separated string or a list of CIDRs.
    """
    cidr = allowed_cidr if allowed_cidr is None or isinstance(allowed_cidr, str) else ",".join(allowed_cidr)
    given: dict[str, OptionValue | None] = {
        "instance_type": instance_type,
        "region": region,
        "spot": spot,
        "ami": ami,
        "ami_name": ami_name,
        "ami_owner": ami_owner,
        "profile": profile,
        "user": user,
        "allowed_cidr": cidr,
        "robot_cidr": robot_cidr,
        "ttl_minutes": ttl_minutes,
        "deadman_minutes": deadman_minutes,
        "disk_gb": disk_gb,
        "endpoint_url": endpoint_url,
        "bridge_port": bridge_port,
        "remote_dir": remote_dir,
        "workspace": workspace,
        "torch": torch,
    }
    return Machine(name, provider="aws", **{k: v for k, v in given.items() if v is not None})


def SSHHost(
    name: str,
    host: str | None = None,
    *,
    user: str | None = None,
    port: int | None = None,
    identity_file: str | None = None,
    known_hosts: str | None = None,
    trust_new_host: bool | None = None,
    proxy_jump: str | None = None,
    remote_dir: str | None = None,
    python: str | None = None,
    bridge_port: int | None = None,
    ros_setup: str | None = None,
    torch: bool | None = None,
    **options: OptionValue,
) -> MachineSpec:
    """A machine reachable over SSH: a lab GPU server, an edge box (provider ``ssh``).

    Args:
        name: the machine's name in the deployment.
        host: an alias from ``~/.ssh/config``, a host name or an address (default: ``name``).
        user, port, identity_file: override the SSH config (defaults: config, then OpenSSH's).
        known_hosts: the file host keys are checked against (default ``~/.ssh/known_hosts``).
        trust_new_host: record an unknown host's key on first contact (default: refuse it; see
            ``fogros-dist trust``). A changed key is always refused. Applies to every jump host.
        proxy_jump: jump hosts to go through, as ``ssh -J`` takes them (``"bastion"``,
            ``"me@bastion:2222,gpu-gw"``; each an address or an SSH config alias; default: the SSH
            config's ProxyJump; ``"none"`` for none). Every hop's host key is checked like the
            host's, and the bridge's port is forwarded over the same SSH connection.
        remote_dir: fogros_dist's directory on the host (default ``~/.fogros_dist``).
        python: the host's interpreter for the runtime venv (default ``python3``; 3.10+).
        bridge_port: the bridge's TCP port on the host (default 7447 if free, else any free one).
        ros_setup: ``auto`` (the newest ``/opt/ros/*/setup.bash``), ``none``, or a path on the host.
        torch: install torch on the host (default: when one of its nodes needs it, as
            fogros_dist's grasp_planner and policy_node do).
        options: further provider options (``ssh_config``, ``domain_id``, ``sync``, ``workspace``:
            the robot's colcon workspace the nodes' packages come from, default the sourced overlay).

    Returns:
        The machine's spec; nothing is contacted until the deployment comes up.
    """
    given: dict[str, OptionValue | None] = {
        "host": host or name,
        "user": user,
        "port": port,
        "identity_file": identity_file,
        "known_hosts": known_hosts,
        "trust_new_host": trust_new_host,
        "proxy_jump": proxy_jump,
        "remote_dir": remote_dir,
        "python": python,
        "bridge_port": bridge_port,
        "ros_setup": ros_setup,
        "torch": torch,
    }
    chosen = {key: value for key, value in given.items() if value is not None}
    return Machine(name, provider="ssh", **chosen, **options)
