"""Where, and as whom, to connect: an SSH target resolved from the user's words and ~/.ssh/config.

Only the parts of ``ssh_config`` that paramiko honours are read (HostName, User, Port,
IdentityFile) plus ProxyJump; options given explicitly win over the file, as they do on the
``ssh`` command line. A target behind jump hosts (a lab's GPU server behind its bastion) carries
them in :attr:`SSHTarget.jumps`, each resolved through the same SSH config (its own ProxyJump
first, as OpenSSH does) and checked against the same known_hosts file. ProxyCommand is refused by
name: an arbitrary command gives no host whose key fogros_dist could check.
"""

from __future__ import annotations

import getpass
import json
import re
from dataclasses import dataclass
from pathlib import Path

from fogros_dist.errors import ConfigError

__all__ = [
    "DEFAULT_KNOWN_HOSTS",
    "DEFAULT_SSH_CONFIG",
    "SSHTarget",
    "jumps_from_json",
    "jumps_to_json",
    "parse_jump_spec",
    "resolve_target",
]

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
DEFAULT_SSH_CONFIG = "~/.ssh/config"
# The keys OpenSSH tries by default, in its order (DSA is gone from paramiko and OpenSSH alike).
_DEFAULT_IDENTITIES = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")
# A chain longer than this is a ProxyJump loop in the SSH config (OpenSSH would recurse forever).
_MAX_JUMPS = 8
# One ProxyJump entry: [ssh://][user@]host[:port], host possibly a bracketed IPv6 address.
_JUMP = re.compile(
    r"^(?:ssh://)?(?:(?P<user>[^@\s/]+)@)?(?P<host>\[[^\]\s]+\]|[^:@\s/\[\]]+)(?::(?P<port>\d+))?/?$"
)


@dataclass(frozen=True, kw_only=True)
class SSHTarget:
    """A resolved SSH destination: everything needed to connect, with no file left to read.

    ``identity_file`` is an absolute path, or "" to authenticate with the ssh-agent only.
    ``known_hosts`` is the (absolute) file host keys are checked against and recorded in.
    ``jumps`` are the jump hosts in the order they are passed (``jumps[0]`` is reached directly,
    each next one through the one before, the target through the last); each is itself a target
    without jumps, with the same known_hosts and trust setting.
    """

    machine: str
    alias: str
    hostname: str
    port: int = 22
    user: str
    identity_file: str = ""
    known_hosts: str
    trust_new_host: bool = False
    jumps: tuple[SSHTarget, ...] = ()

    @property
    def where(self) -> str:
        """``user@hostname:port``, for messages."""
        return f"{self.user}@{self.hostname}:{self.port}"

    @property
    def route(self) -> str:
        """``where`` plus ``via`` the jump hosts, for messages."""
        if not self.jumps:
            return self.where
        return f"{self.where} via {', '.join(jump.where for jump in self.jumps)}"

    @property
    def known_hosts_name(self) -> str:
        """The name this host's key has in known_hosts (OpenSSH's ``[host]:port`` off port 22)."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    def jump_spec(self) -> str:
        """The jumps as one ProxyJump value (``user@host:port,...``); "" when there are none."""
        return ",".join(_spec_entry(jump) for jump in self.jumps)


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
    proxy_jump: str | None = None,
) -> SSHTarget:
    """Resolve ``host`` (an alias in ``ssh_config`` or an address) into an :class:`SSHTarget`.

    Args:
        machine: the machine's name, used in every message.
        host: an alias from the SSH config, a host name or an address.
        user, port, identity_file: explicit values; each overrides the SSH config.
        known_hosts: the known_hosts file (default ``~/.ssh/known_hosts``).
        trust_new_host: record an unknown host's key on first contact instead of refusing it
            (for every jump host as for the target).
        ssh_config: the OpenSSH client config to read (default ``~/.ssh/config``; absent is fine).
        proxy_jump: jump hosts, ``[user@]host[:port]`` separated by commas (each an address or an
            alias of the SSH config); overrides the config's ProxyJump; ``"none"`` for none.
            A jump host uses its own User/Port/IdentityFile from the config; without an
            IdentityFile there it uses ``identity_file``.

    Returns:
        The target, with every path expanded and its jump hosts resolved.

    Raises:
        ConfigError: the SSH config cannot be parsed or needs ProxyCommand, a jump spec is
            malformed or loops, a port is out of range, or an explicitly named identity file
            does not exist.
    """
    config_path = ssh_config or DEFAULT_SSH_CONFIG
    config = _lookup(machine, host, config_path, explicit_jump=proxy_jump is not None)
    resolved_port = port if port is not None else _port(machine, host, config.get("port", 22))
    _check_port(machine, resolved_port, what="SSH port")
    identity = _identity(machine, identity_file, config.get("identityfile"))
    expanded_known_hosts = str(Path(known_hosts or DEFAULT_KNOWN_HOSTS).expanduser())
    spec = proxy_jump if proxy_jump is not None else str(config.get("proxyjump") or "")
    jumps = _resolve_jumps(
        machine=machine,
        spec=spec,
        ssh_config=config_path,
        known_hosts=expanded_known_hosts,
        trust_new_host=trust_new_host,
        fallback_identity=identity if identity_file else "",
        depth=0,
    )
    return SSHTarget(
        machine=machine,
        alias=host,
        hostname=str(config.get("hostname") or host),
        port=resolved_port,
        user=user or str(config.get("user") or "") or getpass.getuser(),
        identity_file=identity,
        known_hosts=expanded_known_hosts,
        trust_new_host=trust_new_host,
        jumps=jumps,
    )


def parse_jump_spec(machine: str, spec: str) -> tuple[tuple[str, str | None, int | None], ...]:
    """Split a ProxyJump value into ``(host, user or None, port or None)`` entries.

    ``""`` and ``"none"`` give no entries.

    Raises:
        ConfigError: an entry is not ``[user@]host[:port]`` or its port is out of range.
    """
    text = spec.strip()
    if not text or text.lower() == "none":
        return ()
    entries = []
    for raw in text.split(","):
        found = _JUMP.match(raw.strip())
        if found is None:
            msg = (
                f"machine {machine!r}: jump host {raw.strip()!r} in proxy_jump {spec!r} is malformed: "
                f"use [user@]host[:port], several separated by commas, e.g. 'me@bastion:2222,gpu-gw'"
            )
            raise ConfigError(msg)
        port = int(found["port"]) if found["port"] else None
        if port is not None:
            _check_port(machine, port, what=f"jump host {raw.strip()!r}: port")
        entries.append((found["host"].strip("[]"), found["user"], port))
    return tuple(entries)


def jumps_to_json(jumps: tuple[SSHTarget, ...]) -> str:
    """The jump hosts as a JSON list, for a Host's connection record ("" when there are none)."""
    if not jumps:
        return ""
    return json.dumps(
        [
            {
                "alias": j.alias,
                "hostname": j.hostname,
                "port": j.port,
                "user": j.user,
                "identity_file": j.identity_file,
            }
            for j in jumps
        ]
    )


def jumps_from_json(text: str, *, machine: str, known_hosts: str) -> tuple[SSHTarget, ...]:
    """The jump hosts recorded by :func:`jumps_to_json` (never trusting a new key again).

    Raises:
        ConfigError: the record is not what :func:`jumps_to_json` writes.
    """
    if not text:
        return ()
    try:
        return tuple(
            SSHTarget(
                machine=machine,
                alias=str(entry["alias"]),
                hostname=str(entry["hostname"]),
                port=int(entry["port"]),
                user=str(entry["user"]),
                identity_file=str(entry["identity_file"]),
                known_hosts=known_hosts,
                trust_new_host=False,
            )
            for entry in json.loads(text)
        )
    except (ValueError, TypeError, KeyError) as err:
        msg = (
            f"machine {machine!r}: its recorded jump hosts {text[:80]!r} are malformed ({err}): "
            f"the state file was edited; tear it down with 'fogros-dist down'"
        )
        raise ConfigError(msg) from err


def _resolve_jumps(
    *,
    machine: str,
    spec: str,
    ssh_config: str,
    known_hosts: str,
    trust_new_host: bool,
    fallback_identity: str,
    depth: int,
) -> tuple[SSHTarget, ...]:
    resolved: list[SSHTarget] = []
    for alias, user, port in parse_jump_spec(machine, spec):
        if depth + len(resolved) >= _MAX_JUMPS:
            msg = (
                f"machine {machine!r}: more than {_MAX_JUMPS} jump hosts (at {alias!r}): the ProxyJump "
                f"entries of {ssh_config} probably loop; fix them or set proxy_jump explicitly"
            )
            raise ConfigError(msg)
        config = _lookup(machine, alias, ssh_config, explicit_jump=False)
        # OpenSSH reaches a jump host through the jump hosts its own config names.
        before = _resolve_jumps(
            machine=machine,
            spec=str(config.get("proxyjump") or ""),
            ssh_config=ssh_config,
            known_hosts=known_hosts,
            trust_new_host=trust_new_host,
            fallback_identity=fallback_identity,
            depth=depth + len(resolved) + 1,
        )
        hop_port = port if port is not None else _port(machine, alias, config.get("port", 22))
        _check_port(machine, hop_port, what=f"jump host {alias!r}: port")
        identity = _identity(machine, None, config.get("identityfile"), fallback=fallback_identity)
        resolved += [
            *before,
            SSHTarget(
                machine=machine,
                alias=alias,
                hostname=str(config.get("hostname") or alias),
                port=hop_port,
                user=user or str(config.get("user") or "") or getpass.getuser(),
                identity_file=identity,
                known_hosts=known_hosts,
                trust_new_host=trust_new_host,
            ),
        ]
    return tuple(resolved)


def _lookup(machine: str, host: str, ssh_config: str, *, explicit_jump: bool) -> dict[str, object]:
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
    command = str(found.get("proxycommand", "none")).strip()
    # An explicit proxy_jump wins over the file's ProxyCommand, as `ssh -J` does.
    if command.lower() != "none" and not explicit_jump:
        msg = (
            f"machine {machine!r}: {path} sets ProxyCommand for host {host!r}, which fogros_dist does not "
            f"support (no host key it could check on the way): use ProxyJump there, or set option "
            f"proxy_jump (e.g. 'me@bastion')"
        )
        raise ConfigError(msg)
    return found


def _port(machine: str, host: str, value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        msg = f"machine {machine!r}: the SSH config gives host {host!r} port {value!r}: use a number"
        raise ConfigError(msg) from None


def _check_port(machine: str, port: int, *, what: str) -> None:
    if not 1 <= port <= 65535:
        msg = f"machine {machine!r}: {what} {port} is out of range: use 1..65535"
        raise ConfigError(msg)


def _identity(machine: str, explicit: str | None, from_config: object, *, fallback: str = "") -> str:
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
    defaults = (fallback,) if fallback else _DEFAULT_IDENTITIES
    for candidate in (*candidates, *defaults):
        path = Path(candidate).expanduser()
        if path.is_file():
            return str(path.resolve())
    # No key file: the ssh-agent (SSH_AUTH_SOCK) is the only way left to authenticate.
    return ""


def _spec_entry(jump: SSHTarget) -> str:
    host = f"[{jump.hostname}]" if ":" in jump.hostname else jump.hostname
    return f"{jump.user}@{host}:{jump.port}"
