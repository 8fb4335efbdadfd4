"""Where, and as whom, to connect: an SSH target resolved from the user's words and ~/.ssh/config.

Only the parts of ``ssh_config`` that paramiko honours are read (HostName, User, Port,
IdentityFile); options given explicitly win over the file, as they do on the ``ssh`` command
line. A config that needs a proxy (ProxyJump, ProxyCommand) is refused by name instead of being
silently bypassed.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from pathlib import Path

from fogros_dist.errors import ConfigError

__all__ = [
    "DEFAULT_KNOWN_HOSTS",
    "DEFAULT_SSH_CONFIG",
    "SSHTarget",
    "resolve_target",
]

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
DEFAULT_SSH_CONFIG = "~/.ssh/config"
# The keys OpenSSH tries by default, in its order (DSA is gone from paramiko and OpenSSH alike).
_DEFAULT_IDENTITIES = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")


@dataclass(frozen=True, kw_only=True)
class SSHTarget:
    """A resolved SSH destination: everything needed to connect, with no file left to read.

    ``identity_file`` is an absolute path, or "" to authenticate with the ssh-agent only.
    ``known_hosts`` is the (absolute) file host keys are checked against and recorded in.
    """

    machine: str
    alias: str
    hostname: str
    port: int = 22
    user: str
    identity_file: str = ""
    known_hosts: str
    trust_new_host: bool = False

    @property
    def where(self) -> str:
        """``user@hostname:port``, for messages."""
        return f"{self.user}@{self.hostname}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """The name this host's key has in known_hosts (OpenSSH's ``[host]:port`` off port 22)."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


def resolve_target(
    *,
    machine: str,
    host: str,
    user: str | None = None,
    port: int | None = None,
    identity_file: str | None = None,
    known_hosts: str | None = None,
    trust_new_host: bool = False,
    ssh_config: str | None = None,
) -> SSHTarget:
    """Resolve ``host`` (an alias in ``ssh_config`` or an address) into an :class:`SSHTarget`.

    Args:
        machine: the machine's name, used in every message.
        host: an alias from the SSH config, a host name or an address.
        user, port, identity_file: explicit values; each overrides the SSH config.
        known_hosts: the known_hosts file (default ``~/.ssh/known_hosts``).
        trust_new_host: record an unknown host's key on first contact instead of refusing it.
        ssh_config: the OpenSSH client config to read (default ``~/.ssh/config``; absent is fine).

    Returns:
        The target, with every path expanded.

    Raises:
        ConfigError: the SSH config cannot be parsed or needs a proxy, a port is out of range, or
            an explicitly named identity file does not exist.
    """
    config = _lookup(machine, host, ssh_config or DEFAULT_SSH_CONFIG)
    hostname = str(config.get("hostname") or host)
    resolved_port = port if port is not None else int(str(config.get("port", 22)))
    if not 1 <= resolved_port <= 65535:
        msg = f"machine {machine!r}: SSH port {resolved_port} is out of range: use 1..65535"
        raise ConfigError(msg)
    resolved_user = user or str(config.get("user") or "") or getpass.getuser()
    return SSHTarget(
        machine=machine,
        alias=host,
        hostname=hostname,
        port=resolved_port,
        user=resolved_user,
        identity_file=_identity(machine, identity_file, config.get("identityfile")),
        known_hosts=str(Path(known_hosts or DEFAULT_KNOWN_HOSTS).expanduser()),
        trust_new_host=trust_new_host,
    )


def _lookup(machine: str, host: str, ssh_config: str) -> dict[str, object]:
    path = Path(ssh_config).expanduser()
    if not path.is_file():
        return {}
    # Imported here: paramiko is only needed once an SSH machine is really used.
    import paramiko  # type: ignore[import-untyped]

    try:
        found = dict(paramiko.SSHConfig.from_path(str(path)).lookup(host))
    except (OSError, ValueError, paramiko.ssh_exception.ConfigParseError) as err:
        msg = (
            f"machine {machine!r}: cannot read SSH config {path} ({err}): fix the file or set host explicitly"
        )
        raise ConfigError(msg) from err
    for key in ("proxyjump", "proxycommand"):
        value = str(found.get(key, "none")).strip().lower()
        if value != "none":
            msg = (
                f"machine {machine!r}: {path} sets {key} for host {host!r}, which fogros_dist does not "
                f"support yet: give the host's direct address (option host) or tunnel it yourself"
            )
            raise ConfigError(msg)
    return found


def _identity(machine: str, explicit: str | None, from_config: object) -> str:
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            msg = (
                f"machine {machine!r}: identity_file {explicit!r} does not exist: "
                "give the path of a private key"
            )
            raise ConfigError(msg)
        return str(path.resolve())
    candidates = [str(c) for c in from_config] if isinstance(from_config, list) else []
    for candidate in (*candidates, *_DEFAULT_IDENTITIES):
        path = Path(candidate).expanduser()
        if path.is_file():
            return str(path.resolve())
    # No key file: the ssh-agent (SSH_AUTH_SOCK) is the only way left to authenticate.
    return ""
