"""The machine options of provider ``ssh``: parsed, type-checked and range-checked up front."""

from __future__ import annotations

from dataclasses import dataclass, field

from fogros_dist.errors import ConfigError
from fogros_dist.remote.machine import RemoteSettings
from fogros_dist.remote.target import parse_jump_spec
from fogros_dist.spec import MachineSpec, OptionValue

__all__ = ["OPTIONS", "SSHOptions", "parse_options"]

# option -> (type, what a valid value looks like)
OPTIONS: dict[str, tuple[type, str]] = {
    "host": (str, "an address, a host name or an alias from ~/.ssh/config"),
    "user": (str, "a user name on the host"),
    "port": (int, "a TCP port, 1..65535"),
    "identity_file": (str, "the path of a private key on this robot"),
    "known_hosts": (str, "the path of a known_hosts file on this robot"),
    "trust_new_host": (bool, "true or false"),
    "ssh_config": (str, "the path of an OpenSSH client config on this robot"),
    "proxy_jump": (str, "jump hosts, e.g. 'bastion' or 'me@bastion:2222,gpu-gw' (as ssh -J), or 'none'"),
    "remote_dir": (str, "a directory on the host, e.g. '~/.fogros_dist'"),
    "python": (str, "a Python 3.10+ interpreter on the host, e.g. 'python3'"),
    "bridge_port": (int, "a TCP port on the host, 1..65535 (unset: 7447 if free, else any)"),
    "ros_setup": (str, "'auto', 'none', or the path of a ROS 2 setup.bash on the host"),
    "torch": (bool, "true or false (unset: installed when a node needs it)"),
    "domain_id": (int, "a ROS domain id, 0..232"),
    "sync": (str, "'auto', 'rsync' or 'sftp'"),
    # Read by the deployment (fogros_dist.deploy.workspace), checked there.
    "workspace": (str, "the robot's colcon workspace its nodes' packages come from"),
}


@dataclass(frozen=True, kw_only=True)
class SSHOptions:
    """An ``ssh`` machine's options after validation."""

    host: str
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    known_hosts: str | None = None
    trust_new_host: bool = False
    ssh_config: str | None = None
    # None: the SSH config's ProxyJump (if any) applies.
    proxy_jump: str | None = None
    # None: torch is installed when one of the machine's nodes needs it.
    torch: bool | None = None
    domain_id: int | None = None
    settings: RemoteSettings = field(default_factory=RemoteSettings)


def parse_options(machine: MachineSpec) -> SSHOptions:
    """Check every option of ``machine`` and return them typed.

    Raises:
        ConfigError: an unknown option, a wrong type or value, or no host (each named, with the fix).
    """
    values: dict[str, OptionValue] = {}
    for key, value in machine.options:
        if key not in OPTIONS:
            msg = (
                f"machine {machine.name!r}: option {key!r} is not supported by provider 'ssh' "
                f"(supported: {', '.join(sorted(OPTIONS))})"
            )
            raise ConfigError(msg)
        kind, valid = OPTIONS[key]
        # bool is an int in Python: keep them apart so `port = true` is refused.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            msg = f"machine {machine.name!r}: option {key} = {value!r} is invalid: use {valid}"
            raise ConfigError(msg)
        values[key] = value
    host = values.get("host")
    if not isinstance(host, str) or not host.strip():
        msg = (
            f"machine {machine.name!r}: provider 'ssh' needs option host (an address, or an alias "
            f"from ~/.ssh/config): e.g. SSHHost({machine.name!r}, 'lab-gpu')"
        )
        raise ConfigError(msg)
    _check_range(machine.name, "port", values.get("port"), 1, 65535)
    _check_range(machine.name, "bridge_port", values.get("bridge_port"), 1, 65535)
    _check_range(machine.name, "domain_id", values.get("domain_id"), 0, 232)
    sync = str(values.get("sync", "auto"))
    if sync not in ("auto", "rsync", "sftp"):
        msg = f"machine {machine.name!r}: option sync = {sync!r} is invalid: use {OPTIONS['sync'][1]}"
        raise ConfigError(msg)
    for key in ("python", "remote_dir", "ros_setup", "user"):
        if key in values and not str(values[key]).strip():
            msg = f"machine {machine.name!r}: option {key} is empty: use {OPTIONS[key][1]}"
            raise ConfigError(msg)
    settings = RemoteSettings(
        remote_dir=str(values.get("remote_dir", RemoteSettings.remote_dir)),
        python=str(values.get("python", RemoteSettings.python)),
        ros_setup=str(values.get("ros_setup", RemoteSettings.ros_setup)),
        bridge_port=_int(values.get("bridge_port")) or 0,
        torch=bool(values.get("torch", False)),
        sync="rsync" if sync == "rsync" else "sftp" if sync == "sftp" else "auto",
    )
    return SSHOptions(
        host=host.strip(),
        user=_str(values.get("user")),
        port=_int(values.get("port")),
        identity_file=_str(values.get("identity_file")),
        known_hosts=_str(values.get("known_hosts")),
        trust_new_host=bool(values.get("trust_new_host", False)),
        ssh_config=_str(values.get("ssh_config")),
        proxy_jump=_proxy_jump(machine.name, values.get("proxy_jump")),
        torch=_bool(values.get("torch")),
        domain_id=_int(values.get("domain_id")),
        settings=settings,
    )


def _proxy_jump(machine: str, value: OptionValue | None) -> str | None:
    if not isinstance(value, str):
        return None
    # Checked here, at plan time: a malformed jump host fails before anything is contacted.
    parse_jump_spec(machine, value)
    return value.strip()


def _check_range(machine: str, key: str, value: OptionValue | None, low: int, high: int) -> None:
    if isinstance(value, int) and not low <= value <= high:
        msg = f"machine {machine!r}: option {key} = {value} is out of range: use {low}..{high}"
        raise ConfigError(msg)


def _bool(value: OptionValue | None) -> bool | None:
    return value if isinstance(value, bool) else None


def _str(value: OptionValue | None) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: OptionValue | None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
