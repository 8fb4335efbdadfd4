"""One SSH connection to a host, shared by everything that talks to it (paramiko).

``SSHRunner.run(argv) -> Completed`` runs a command; ``open_stream`` starts one whose output is
read as it comes; ``sftp()`` moves files. Connecting is retried a bounded number of times with
backoff, and only for failures that can pass (refused, timed out, no banner yet); a wrong host
key, an unknown host or a rejected key fail at once. Each failure is one line naming the stage
(``ssh-ready``), the machine and the fix. If the connection drops, the next call reconnects.
"""

from __future__ import annotations

import contextlib
import errno
import select
import shlex
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fogros_dist.errors import ProvisionError
from fogros_dist.remote.hostkeys import (
    HostKey,
    add_known_host,
    changed_key_message,
    unknown_key_message,
)
from fogros_dist.remote.target import SSHTarget

__all__ = ["Completed", "ConnectionLost", "RetryPolicy", "SSHRunner"]

# Keepalives let a dead peer (a cable pulled, a host gone) show up as an error within seconds
# instead of a read that never returns.
_KEEPALIVE_S = 5


class ConnectionLost(ProvisionError):
    """The SSH connection dropped while a command ran; it may or may not have run to its end."""


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How hard to try to connect: ``attempts`` tries, waiting ``first_delay_s`` doubling up to
    ``max_delay_s`` between them; each try gives up after ``timeout_s``."""

    attempts: int = 4
    first_delay_s: float = 0.5
    max_delay_s: float = 4.0
    timeout_s: float = 10.0


@dataclass(frozen=True, kw_only=True)
class Completed:
    """A finished remote command."""

    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str

    def last_error_line(self) -> str:
        """The last non-empty stderr line (or stdout's, or the exit code), for one-line messages."""
        for text in (self.stderr, self.stdout):
            lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
            if lines:
                return lines[-1]
        return f"exit code {self.exit_code}"


class _Refused(Exception):
    """A connection failure that retrying cannot fix; its text is the user's message."""


class SSHRunner:
    """A shared, self-healing SSH connection to one :class:`SSHTarget`.

    Thread-safe: several threads may run commands and read streams at once (paramiko multiplexes
    channels over one transport).
    """

    def __init__(self, target: SSHTarget, *, retry: RetryPolicy | None = None) -> None:
        self._target = target
        self._retry = retry or RetryPolicy()
        self._lock = threading.Lock()
        self._client: Any = None
        self._sftp: Any = None
        self._generation = 0
        self.recorded_key: HostKey | None = None

    @property
    def target(self) -> SSHTarget:
        """Where this runner connects."""
        return self._target

    @property
    def generation(self) -> int:
        """Increases with each new connection; pass it to :meth:`reconnect` after a failure."""
        return self._generation

    def connect(self) -> None:
        """Connect unless connected.

        Raises:
            ProvisionError: one line naming stage ``ssh-ready``, the machine and the fix.
        """
        with self._lock:
            if self._alive():
                return
            self._close_locked()
            self._client = self._connect_with_retries()
            self._generation += 1

    def reconnect(self, stale_generation: int) -> None:
        """Replace the connection of ``stale_generation`` (unless another thread already did)."""
        with self._lock:
            if self._generation == stale_generation or not self._alive():
                self._close_locked()
        self.connect()

    def close(self) -> None:
        """Close the connection (a later call connects again)."""
        with self._lock:
            self._close_locked()

    def run(
        self,
        argv: tuple[str, ...] | list[str],
        *,
        stdin: bytes = b"",
        timeout: float = 120.0,
        check: bool = True,
        what: str = "",
    ) -> Completed:
        """Run ``argv`` on the host (quoted for its POSIX shell) and wait for it.

        Args:
            argv: the command; ``argv[0]`` is found on the host's PATH.
            stdin: bytes fed to the command's standard input.
            timeout: seconds before giving up on the command (it is then left to the host).
            check: raise if the command exits non-zero.
            what: what the command does, for the error message ("install the runtime").

        Returns:
            The exit code and the decoded output.

        Raises:
            ProvisionError: the command failed (``check``) or timed out; the host is unreachable.
            ConnectionLost: the connection dropped while the command ran.
        """
        channel = self._exec(argv)
        try:
            out, err = self._collect(channel, stdin, timeout, argv, what)
            code = int(channel.recv_exit_status())
        finally:
            channel.close()
        done = Completed(argv=tuple(argv), exit_code=code, stdout=out, stderr=err)
        if check and code != 0:
            label = what or shlex.join(argv)[:80]
            msg = (
                f"machine {self._target.machine!r}: {label} failed on {self._target.hostname} "
                f"(exit code {code}): {done.last_error_line()}"
            )
            raise ProvisionError(msg)
        return done

    def open_stream(self, argv: tuple[str, ...] | list[str], *, read_timeout: float) -> Any:
        """Start ``argv`` and return its paramiko Channel, for reading its output as it comes.

        A read that sees nothing for ``read_timeout`` seconds raises ``socket.timeout``.
        """
        channel = self._exec(argv)
        channel.settimeout(read_timeout)
        return channel

    def sftp(self) -> Any:
        """An SFTP client on the current connection (reopened after a reconnect)."""
        self.connect()
        with self._lock:
            if self._sftp is None:
                self._sftp = self._client.open_sftp()
            return self._sftp

    def ssh_argv(self) -> tuple[str, ...]:
        """The OpenSSH client command that reaches the same host, user, port, key and known_hosts
        (for ``rsync -e``). It never prompts and never accepts an unknown or changed host key."""
        target = self._target
        argv = [
            "ssh",
            "-F",
            "/dev/null",
            "-p",
            str(target.port),
            "-l",
            target.user,
            "-o",
            f"UserKnownHostsFile={target.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={int(self._retry.timeout_s)}",
            "-o",
            f"ServerAliveInterval={_KEEPALIVE_S}",
            "-o",
            "ServerAliveCountMax=3",
        ]
        if target.identity_file:
            argv += ["-i", target.identity_file, "-o", "IdentitiesOnly=yes"]
        return tuple(argv)

    # -- connection ------------------------------------------------------------------------------

    def _alive(self) -> bool:
        if self._client is None:
            return False
        transport = self._client.get_transport()
        return transport is not None and bool(transport.is_active())

    def _close_locked(self) -> None:
        if self._sftp is not None:
            with contextlib.suppress(OSError, EOFError):
                self._sftp.close()
            self._sftp = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def _connect_with_retries(self) -> Any:
        import paramiko  # type: ignore[import-untyped]

        policy = self._retry
        started = time.monotonic()
        delay = policy.first_delay_s
        last: BaseException | None = None
        for attempt in range(1, policy.attempts + 1):
            try:
                return self._connect_once()
            except _Refused as err:
                raise ProvisionError(str(err)) from None
            except (paramiko.SSHException, EOFError, OSError) as err:
                last = err
            if attempt < policy.attempts:
                time.sleep(delay)
                delay = min(delay * 2, policy.max_delay_s)
        assert last is not None
        msg = self._transient_message(last, policy.attempts, time.monotonic() - started)
        raise ProvisionError(msg) from last

    def _connect_once(self) -> Any:
        import paramiko

        target = self._target
        client = paramiko.SSHClient()
        if Path(target.known_hosts).is_file():
            try:
                # Loaded as "system" keys: paramiko only ever writes its own (empty) set back.
                client.load_system_host_keys(target.known_hosts)
            except OSError as err:
                msg = f"ssh-ready: machine {target.machine!r}: cannot read {target.known_hosts} ({err})"
                raise _Refused(msg) from err
        client.set_missing_host_key_policy(_host_key_policy(self))
        try:
            client.connect(
                target.hostname,
                port=target.port,
                username=target.user,
                key_filename=target.identity_file or None,
                look_for_keys=False,
                allow_agent=True,
                timeout=self._retry.timeout_s,
                banner_timeout=self._retry.timeout_s,
                auth_timeout=self._retry.timeout_s,
            )
        except paramiko.BadHostKeyException as err:
            client.close()
            msg = changed_key_message(
                machine=target.machine,
                name=target.known_hosts_name,
                seen=HostKey.from_pkey(err.key),
                expected=HostKey.from_pkey(err.expected_key),
                known_hosts=target.known_hosts,
            )
            raise _Refused(msg) from None
        except paramiko.AuthenticationException as err:
            client.close()
            key = target.identity_file or "the ssh-agent's keys"
            msg = (
                f"ssh-ready: machine {target.machine!r}: {target.where} refused authentication with "
                f"{key} ({err}): add the matching public key to ~{target.user}/.ssh/authorized_keys "
                f"on the host, or set identity_file (or user)"
            )
            raise _Refused(msg) from None
        except socket.gaierror as err:
            client.close()
            msg = (
                f"ssh-ready: machine {target.machine!r}: cannot resolve host name {target.hostname!r} "
                f"({err.strerror}): check option host (or HostName in the SSH config)"
            )
            raise _Refused(msg) from None
        except BaseException:
            client.close()
            raise
        transport = client.get_transport()
        transport.set_keepalive(_KEEPALIVE_S)
        return client

    def _transient_message(self, err: BaseException, attempts: int, seconds: float) -> str:
        target = self._target
        text = str(err)
        codes = {getattr(e, "errno", None) for e in getattr(err, "errors", {}).values()}
        codes.add(getattr(err, "errno", None))
        if errno.ECONNREFUSED in codes:
            reason = "connection refused"
            fix = "check that sshd runs on the host and the port is right (option port)"
        elif isinstance(err, TimeoutError | socket.timeout):
            reason = "timed out"
            fix = "check the address and any firewall between the robot and the host"
        elif codes & {errno.EHOSTUNREACH, errno.ENETUNREACH}:
            reason = "host unreachable"
            fix = "check the address and the route to the host"
        elif "banner" in text.lower():
            reason = "no SSH banner"
            fix = "check that the port is sshd's (sshd may still be starting)"
        else:
            reason = text or type(err).__name__
            fix = "check the host, the port and sshd's log"
        return (
            f"ssh-ready: machine {target.machine!r}: cannot connect to {target.where} "
            f"({reason}; {attempts} attempts in {seconds:.1f} s): {fix}"
        )

    # -- commands --------------------------------------------------------------------------------

    def _exec(self, argv: tuple[str, ...] | list[str]) -> Any:
        import paramiko

        command = shlex.join(argv)
        # Opening a channel runs nothing yet, so it is safe to retry once on a fresh connection.
        for attempt in (1, 2):
            self.connect()
            generation = self._generation
            try:
                channel = self._client.get_transport().open_session(timeout=self._retry.timeout_s)
                channel.exec_command(command)
                return channel
            except paramiko.ChannelException as err:
                # The connection is fine; the host refuses more channels on it (sshd MaxSessions).
                msg = (
                    f"machine {self._target.machine!r}: {self._target.hostname} refused another SSH "
                    f"channel ({err}): raise MaxSessions in its sshd_config (default 10)"
                )
                raise ProvisionError(msg) from err
            except (paramiko.SSHException, EOFError, OSError, AttributeError) as err:
                if attempt == 2:
                    msg = (
                        f"machine {self._target.machine!r}: cannot run a command on "
                        f"{self._target.where} ({err}): check the host and its sshd"
                    )
                    raise ConnectionLost(msg) from err
                self.reconnect(generation)
        raise AssertionError("unreachable")

    def _collect(
        self, channel: Any, stdin: bytes, timeout: float, argv: tuple[str, ...] | list[str], what: str
    ) -> tuple[str, str]:
        out = bytearray()
        err = bytearray()
        deadline = time.monotonic() + timeout
        try:
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
        except OSError as exc:
            msg = f"machine {self._target.machine!r}: the connection dropped while sending input ({exc})"
            raise ConnectionLost(msg) from exc
        while True:
            while channel.recv_ready():
                out += channel.recv(65536)
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(65536)
            if channel.exit_status_ready():
                if not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                continue
            if channel.closed or not channel.get_transport().is_active():
                label = what or shlex.join(argv)[:80]
                msg = (
                    f"machine {self._target.machine!r}: the SSH connection to {self._target.where} "
                    f"dropped during: {label}"
                )
                raise ConnectionLost(msg)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                label = what or shlex.join(argv)[:80]
                msg = (
                    f"machine {self._target.machine!r}: {label} did not finish on "
                    f"{self._target.hostname} within {timeout:.0f} s"
                )
                raise ProvisionError(msg)
            select.select([channel], [], [], min(remaining, 1.0))
        return out.decode(errors="replace"), err.decode(errors="replace")


def _host_key_policy(runner: SSHRunner) -> Any:
    """paramiko's RejectPolicy, with our message; or, if the user asked, record the new key."""
    import paramiko

    target = runner.target

    class Policy(paramiko.RejectPolicy):  # type: ignore[misc]
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            del client
            seen = HostKey.from_pkey(key)
            if not target.trust_new_host:
                msg = unknown_key_message(
                    machine=target.machine,
                    where=target.where,
                    name=hostname,
                    seen=seen,
                    known_hosts=target.known_hosts,
                )
                raise _Refused(msg)
            add_known_host(target.known_hosts, name=hostname, key=seen)
            runner.recorded_key = seen

    return Policy()
