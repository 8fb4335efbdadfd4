"""Host keys: verified against a known_hosts file, recorded only when the user asks.

An unknown host is refused unless the user trusted it (``fogros-dist trust``, or the machine
option ``trust_new_host``); a host whose key changed is always refused. New keys are *appended*
to the file, one OpenSSH line each, so the user's other entries (hashed names, comments, markers)
stay exactly as they were.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fogros_dist.errors import ConfigError, ProvisionError

__all__ = [
    "HostKey",
    "add_known_host",
    "changed_key_message",
    "fetch_host_key",
    "fingerprint",
    "known_keys",
    "unknown_key_message",
]


@dataclass(frozen=True, kw_only=True)
class HostKey:
    """A public host key as OpenSSH writes it: type and base64 blob."""

    type: str
    base64: str

    @property
    def fingerprint(self) -> str:
        """OpenSSH's ``SHA256:...`` fingerprint (what ``ssh-keygen -lf`` prints)."""
        return fingerprint(self.base64)

    @classmethod
    def from_pkey(cls, key: Any) -> HostKey:
        """From a paramiko PKey."""
        return cls(type=str(key.get_name()), base64=str(key.get_base64()))

    @classmethod
    def from_line(cls, line: str) -> HostKey:
        """From ``ssh-ed25519 AAAA... [comment]`` (a .pub file or the key part of a known_hosts line).

        Raises:
            ConfigError: the line has no key type and base64 blob.
        """
        parts = line.split()
        if len(parts) < 2:
            msg = f"public key {line[:40]!r} is malformed: expected 'TYPE BASE64 [comment]'"
            raise ConfigError(msg)
        return cls(type=parts[0], base64=parts[1])

    def describe(self) -> str:
        """``ssh-ed25519 SHA256:...``, for messages."""
        return f"{self.type} {self.fingerprint}"


def fingerprint(key_base64: str) -> str:
    """The SHA256 fingerprint of a base64 public key blob, formatted as OpenSSH does."""
    digest = hashlib.sha256(base64.b64decode(key_base64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_keys(known_hosts: str, name: str) -> tuple[HostKey, ...]:
    """The keys ``known_hosts`` records for ``name`` (``host`` or ``[host]:port``); () if none.

    Hashed entries (``|1|...``) match too.
    """
    path = Path(known_hosts)
    if not path.is_file():
        return ()
    import paramiko  # type: ignore[import-untyped]

    keys = paramiko.HostKeys()
    try:
        keys.load(str(path))
    except OSError as err:
        msg = (
            f"cannot read known_hosts file {path} ({err.strerror}): fix its permissions or pick another file"
        )
        raise ConfigError(msg) from err
    try:
        found = keys.lookup(name)
    except ValueError as err:
        msg = f"known_hosts file {path} has a malformed entry ({err}): fix or remove that line"
        raise ConfigError(msg) from err
    if not found:
        return ()
    return tuple(HostKey.from_pkey(found[key_type]) for key_type in found)


def add_known_host(known_hosts: str, *, name: str, key: HostKey) -> bool:
    """Append ``name key`` to ``known_hosts`` unless it is already there; True if it was added.

    The file and its directory are created private (0600 / 0700) if missing.

    Raises:
        ConfigError: the file cannot be written, or it records a *different* key of the same type
            for ``name`` (remove that line first: the host may have been reinstalled, or spoofed).
    """
    existing = known_keys(known_hosts, name)
    if any(k == key for k in existing):
        return False
    for other in existing:
        if other.type == key.type:
            msg = changed_key_message(
                name=name, seen=key, expected=other, known_hosts=known_hosts, trust_hint=False
            )
            raise ConfigError(msg)
    path = Path(known_hosts)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        needs_newline = path.is_file() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as handle:
            handle.write(("\n" if needs_newline else "") + f"{name} {key.type} {key.base64}\n")
    except OSError as err:
        msg = (
            f"cannot write known_hosts file {path} ({err.strerror}): fix its permissions or pick another file"
        )
        raise ConfigError(msg) from err
    return True


def fetch_host_key(hostname: str, port: int, *, timeout: float = 10.0, sock: Any = None) -> HostKey:
    """Connect to an SSH server and return the host key it presents (no authentication).

    Args:
        hostname, port: the server.
        timeout: seconds for the connection and the handshake.
        sock: an open channel to the server (through jump hosts) instead of a new TCP connection.

    Raises:
        ProvisionError: nothing answers there, or what answers is not an SSH server.
    """
    import paramiko

    where = f"{hostname}:{port}"
    if sock is None:
        try:
            sock = socket.create_connection((hostname, port), timeout=timeout)
        except OSError as err:
            msg = (
                f"cannot reach {where} ({err.strerror or err}): check the address, the port "
                f"and that sshd runs"
            )
            raise ProvisionError(msg) from err
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = timeout
        transport.start_client(timeout=timeout)
        return HostKey.from_pkey(transport.get_remote_server_key())
    except (paramiko.SSHException, EOFError, OSError) as err:
        msg = f"{where} did not complete an SSH handshake ({err}): is it an SSH server?"
        raise ProvisionError(msg) from err
    finally:
        transport.close()


def unknown_key_message(
    *,
    machine: str,
    where: str,
    name: str,
    seen: HostKey,
    known_hosts: str,
    kind: str = "host",
    proxy_jump: str = "",
) -> str:
    """The one line for a host whose key is not recorded yet.

    ``kind`` is "host" or "jump host"; ``proxy_jump`` names the jump hosts it is reached
    through (the trust command then goes through them too).
    """
    host, _, port = name.removeprefix("[").partition("]:")
    port_arg = f" --port {port}" if port else ""
    jump_arg = f" --proxy-jump {proxy_jump}" if proxy_jump else ""
    return (
        f"ssh-ready: machine {machine!r}: {kind} {where} is not in {known_hosts} "
        f"(it presents {seen.describe()}): if that fingerprint is right, run "
        f"'fogros-dist trust {host}{port_arg}{jump_arg} --known-hosts {known_hosts}', "
        f"or set trust_new_host=true"
    )


def changed_key_message(
    *,
    name: str,
    seen: HostKey,
    expected: HostKey,
    known_hosts: str,
    machine: str = "",
    trust_hint: bool = True,
    kind: str = "host",
) -> str:
    """The one line for a host whose key differs from the recorded one (``name`` as in known_hosts;
    ``kind`` is "host" or "jump host")."""
    who = f"ssh-ready: machine {machine!r}: " if machine else ""
    trust = " and run 'fogros-dist trust' again" if trust_hint else ""
    return (
        f"{who}{kind} key of {name} CHANGED: it presents {seen.describe()}, {known_hosts} expects "
        f"{expected.describe()}: if the host was reinstalled, remove the old key "
        f"(ssh-keygen -R '{name}' -f {known_hosts}){trust}; otherwise do not connect (it may be spoofed)"
    )
