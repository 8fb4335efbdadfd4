"""One SSH connection to a host, shared by everything that talks to it (paramiko).

``SSHRunner.run(argv) -> Completed`` runs a command; ``open_stream`` starts one whose output is
read as it comes; ``sftp()`` moves files. Connecting is retried a bounded number of times with
backoff, and only for failures that can pass (refused, timed out, no banner yet); a wrong host
key, an unknown host or a rejected key fail at once. Each failure is one line naming the stage
(``ssh-ready``), the machine and the fix. If the connection drops, the next call reconnects.

A target behind jump hosts (ProxyJump) is reached as OpenSSH does: a connection to the first jump
host, a ``direct-tcpip`` channel through it to the next one, which is the socket of the next
connection, and so on; every hop's host key is checked against the same known_hosts with the same
rules and messages. :meth:`SSHRunner.ssh_argv` builds the matching OpenSSH command (a nested
``ProxyCommand`` per hop, each with ``StrictHostKeyChecking=yes``), and :meth:`SSHRunner.forward`
carries TCP connections from the robot to a port on the host over the same connection.
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

__all__ = ["Completed", "ConnectionLost", "ForwardRefused", "RetryPolicy", "SSHRunner", "openssh_argv"]

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


class ForwardRefused(ProvisionError):
    """The host's sshd does not allow forwarded (``direct-tcpip``) connections at all."""


class _TakingTurns:
    """A paramiko SFTPClient whose calls run one at a time.

    paramiko's SFTP client is not thread-safe: two threads waiting for their answers at once can
    each take the other's, and both then wait forever (seen here: a bridge spec uploaded while
    the workspace push used SFTP). One lock per client makes the calls take turns.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._turn = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._client, name)
        if not callable(found):
            return found

        def in_turn(*args: Any, **kwargs: Any) -> Any:
            with self._turn:
                return found(*args, **kwargs)

        return in_turn


class _Refused(Exception):
    """A connection failure that retrying cannot fix; its text is the user's message."""


class _HopFailed(Exception):
    """A failure that may pass (refused, timed out, no route) on one hop of the route."""

    def __init__(self, hop: SSHTarget, cause: BaseException, *, via: SSHTarget | None = None) -> None:
        super().__init__(str(cause))
        self.hop = hop
        self.cause = cause
        # Set when the jump host ``via`` could not open a channel on to ``hop``.
        self.via = via


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
        # The connections to the jump hosts that carry ``_client``, first hop first.
        self._jump_clients: list[Any] = []
        self._sftp: Any = None
        self._generation = 0
        self._forwards: list[Any] = []
        # Keys recorded on first contact (trust_new_host): the target's, and the jump hosts'.
        self.recorded_key: HostKey | None = None
        self.recorded_jump_keys: list[tuple[SSHTarget, HostKey]] = []

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
        """Close the connection and stop every forward (a later call connects again)."""
        with self._lock:
            forwards, self._forwards = self._forwards, []
        for forward in forwards:
            forward.close()
        with self._lock:
            self._close_locked()

    def forward(self, listener: socket.socket, *, host: str, port: int) -> Any:
        """Carry every TCP connection accepted on ``listener`` (a bound, listening socket on the
        robot) to ``host``:``port`` as seen from the target, over this connection (and its jump
        hosts). Connections made after a reconnect use the new connection. Stopped by
        :meth:`close`.

        Returns:
            The :class:`~fogros_dist.remote.forward.PortForward`.
        """
        from fogros_dist.remote.forward import PortForward

        forward = PortForward(self, listener, host=host, port=port)
        with self._lock:
            self._forwards.append(forward)
        forward.start()
        return forward

    def open_tunnel(self, *, host: str, port: int, origin: tuple[str, int]) -> Any:
        """A ``direct-tcpip`` channel from the target to ``host``:``port`` (reconnecting once if
        the connection dropped).

        Raises:
            ForwardRefused: the target's sshd forbids forwarding.
            ProvisionError: nothing listens there, or the target cannot be reached.
        """
        import paramiko  # type: ignore[import-untyped]

        for attempt in (1, 2):
            self.connect()
            generation = self._generation
            try:
                return self._client.get_transport().open_channel(
                    "direct-tcpip", (host, port), origin, timeout=self._retry.timeout_s
                )
            except paramiko.ChannelException as err:
                if err.code == paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED:
                    msg = (
                        f"machine {self._target.machine!r}: {self._target.hostname} refuses forwarded "
                        f"connections ({err.text}): allow TCP forwarding in its sshd_config "
                        f"(AllowTcpForwarding yes)"
                    )
                    raise ForwardRefused(msg) from err
                msg = (
                    f"machine {self._target.machine!r}: nothing accepts connections on {host}:{port} "
                    f"on {self._target.hostname} ({err.text})"
                )
                raise ProvisionError(msg) from err
            except (paramiko.SSHException, EOFError, OSError, AttributeError) as err:
                if attempt == 2:
                    msg = f"machine {self._target.machine!r}: cannot forward to {self._target.route} ({err})"
                    raise ConnectionLost(msg) from err
                self.reconnect(generation)
        raise AssertionError("unreachable")

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
        """An SFTP client on the current connection (reopened after a reconnect), safe to share
        between threads: its calls take turns."""
        self.connect()
        with self._lock:
            if self._sftp is None:
                self._sftp = _TakingTurns(self._client.open_sftp())
            return self._sftp

    def ssh_argv(self) -> tuple[str, ...]:
        """The OpenSSH client command that reaches the same host, user, port, key and known_hosts,
        through the same jump hosts (for ``rsync -e``, ``fogros-dist ssh``); the destination host
        name is left for the caller to append. It never prompts and never accepts an unknown or
        changed host key, on any hop."""
        return openssh_argv(self._target, timeout_s=self._retry.timeout_s)

    # -- connection ------------------------------------------------------------------------------

    def _alive(self) -> bool:
        clients = [*self._jump_clients, self._client]
        if self._client is None:
            return False
        for client in clients:
            transport = client.get_transport()
            if transport is None or not transport.is_active():
                return False
        return True

    def _close_locked(self) -> None:
        if self._sftp is not None:
            with contextlib.suppress(OSError, EOFError):
                self._sftp.close()
            self._sftp = None
        if self._client is not None:
            self._client.close()
            self._client = None
        # The target's connection runs inside the jump hosts': close from the inside out.
        for client in reversed(self._jump_clients):
            client.close()
        self._jump_clients = []

    def _connect_with_retries(self) -> Any:
        policy = self._retry
        started = time.monotonic()
        delay = policy.first_delay_s
        last: _HopFailed | None = None
        for attempt in range(1, policy.attempts + 1):
            try:
                return self._connect_once()
            except _Refused as err:
                raise ProvisionError(str(err)) from None
            except _HopFailed as err:
                last = err
            if attempt < policy.attempts:
                time.sleep(delay)
                delay = min(delay * 2, policy.max_delay_s)
        assert last is not None
        msg = self._transient_message(last, policy.attempts, time.monotonic() - started)
        raise ProvisionError(msg) from last.cause

    def _connect_once(self) -> Any:
        """Connect hop by hop; return the target's client (the jump hosts' are kept open)."""
        import paramiko

        target = self._target
        route = [*target.jumps, target]
        clients: list[Any] = []
        sock: Any = None
        try:
            for index, hop in enumerate(route):
                clients.append(self._connect_hop(hop, sock=sock, before=route[:index]))
                if index + 1 < len(route):
                    following = route[index + 1]
                    try:
                        sock = (
                            clients[-1]
                            .get_transport()
                            .open_channel(
                                "direct-tcpip",
                                (following.hostname, following.port),
                                ("127.0.0.1", 0),
                                timeout=self._retry.timeout_s,
                            )
                        )
                    except (paramiko.SSHException, EOFError, OSError) as err:
                        raise _HopFailed(following, err, via=hop) from err
        except BaseException:
            for client in reversed(clients):
                client.close()
            raise
        self._jump_clients = clients[:-1]
        return clients[-1]

    def _connect_hop(self, hop: SSHTarget, *, sock: Any, before: list[SSHTarget]) -> Any:
        """One SSH connection to ``hop`` (over ``sock``, a channel through ``before``'s last hop)."""
        import paramiko

        machine = self._target.machine
        kind = "host" if hop is self._target else "jump host"
        client = paramiko.SSHClient()
        if Path(hop.known_hosts).is_file():
            try:
                # Loaded as "system" keys: paramiko only ever writes its own (empty) set back.
                client.load_system_host_keys(hop.known_hosts)
            except OSError as err:
                msg = f"ssh-ready: machine {machine!r}: cannot read {hop.known_hosts} ({err})"
                raise _Refused(msg) from err
        client.set_missing_host_key_policy(_host_key_policy(self, hop, before=before))
        try:
            client.connect(
                hop.hostname,
                port=hop.port,
                username=hop.user,
                key_filename=hop.identity_file or None,
                look_for_keys=False,
                allow_agent=True,
                timeout=self._retry.timeout_s,
                banner_timeout=self._retry.timeout_s,
                auth_timeout=self._retry.timeout_s,
                sock=sock,
            )
        except paramiko.BadHostKeyException as err:
            client.close()
            msg = changed_key_message(
                machine=machine,
                name=hop.known_hosts_name,
                seen=HostKey.from_pkey(err.key),
                expected=HostKey.from_pkey(err.expected_key),
                known_hosts=hop.known_hosts,
                kind=kind,
            )
            raise _Refused(msg) from None
        except paramiko.AuthenticationException as err:
            client.close()
            key = hop.identity_file or "the ssh-agent's keys"
            fix = (
                "set identity_file (or user)"
                if hop is self._target
                else f"set IdentityFile (or User) for {hop.alias!r} in the SSH config"
            )
            who = hop.where if hop is self._target else f"jump host {hop.where}"
            msg = (
                f"ssh-ready: machine {machine!r}: {who} refused authentication with "
                f"{key} ({err}): add the matching public key to ~{hop.user}/.ssh/authorized_keys "
                f"on the {kind}, or {fix}"
            )
            raise _Refused(msg) from None
        except socket.gaierror as err:
            client.close()
            option = "option host (or HostName in the SSH config)" if kind == "host" else "option proxy_jump"
            msg = (
                f"ssh-ready: machine {machine!r}: cannot resolve {kind} name {hop.hostname!r} "
                f"({err.strerror}): check {option}"
            )
            raise _Refused(msg) from None
        except (paramiko.SSHException, EOFError, OSError) as err:
            client.close()
            raise _HopFailed(hop, err) from err
        except BaseException:
            client.close()
            raise
        client.get_transport().set_keepalive(_KEEPALIVE_S)
        return client

    def _transient_message(self, failed: _HopFailed, attempts: int, seconds: float) -> str:
        target = self._target
        err = failed.cause
        text = str(err)
        codes = {getattr(e, "errno", None) for e in getattr(err, "errors", {}).values()}
        codes.add(getattr(err, "errno", None))
        if failed.via is not None:
            detail = text or type(err).__name__
            reason = f"jump host {failed.via.where} could not open a connection to it: {detail}"
            fix = "check the address and port as the jump host sees them, and that sshd runs there"
        elif errno.ECONNREFUSED in codes:
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
        if failed.hop is not target:
            where = f"jump host {failed.hop.where} (on the way to {target.where})"
        elif target.jumps:
            where = target.route
        else:
            where = target.where
        return (
            f"ssh-ready: machine {target.machine!r}: cannot connect to {where} "
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


def _host_key_policy(runner: SSHRunner, hop: SSHTarget, *, before: list[SSHTarget]) -> Any:
    """paramiko's RejectPolicy, with our message; or, if the user asked, record the new key.

    ``hop`` is the target or one of its jump hosts, reached through the jump hosts ``before``.
    """
    import paramiko

    target = runner.target
    kind = "host" if hop is target else "jump host"

    class Policy(paramiko.RejectPolicy):  # type: ignore[misc]
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            del client
            seen = HostKey.from_pkey(key)
            if not hop.trust_new_host:
                msg = unknown_key_message(
                    machine=target.machine,
                    where=hop.where,
                    name=hostname,
                    seen=seen,
                    known_hosts=hop.known_hosts,
                    kind=kind,
                    proxy_jump=",".join(_jump_entry(b) for b in before),
                )
                raise _Refused(msg)
            add_known_host(hop.known_hosts, name=hostname, key=seen)
            if hop is target:
                runner.recorded_key = seen
            else:
                runner.recorded_jump_keys.append((hop, seen))

    return Policy()


def openssh_argv(target: SSHTarget, *, timeout_s: float = 10.0) -> tuple[str, ...]:
    """OpenSSH's ``ssh`` options for ``target`` (no destination): its user, port, key, known_hosts
    and ``StrictHostKeyChecking=yes``; through its jump hosts with one ``ProxyCommand`` per hop,
    each an ``ssh -W`` with the same settings for that hop, so OpenSSH checks every hop's key.

    ``ssh -J`` is not used: it passes neither our known_hosts nor our key to the jump hosts.
    """
    argv = _openssh_options(target, timeout_s)
    if target.jumps:
        argv += ["-o", f"ProxyCommand={_proxy_command(target.jumps, target, timeout_s)}"]
    return tuple(argv)


def _proxy_command(jumps: tuple[SSHTarget, ...], following: SSHTarget, timeout_s: float) -> str:
    """The ProxyCommand that reaches ``following`` through ``jumps`` (nested for chains)."""
    last = jumps[-1]
    argv = _openssh_options(last, timeout_s)
    if len(jumps) > 1:
        argv += ["-o", f"ProxyCommand={_proxy_command(jumps[:-1], last, timeout_s)}"]
    # Explicit host:port, not %h:%p: the outer ssh expands tokens in the whole nested string.
    argv += ["-W", f"{_bracketed(following.hostname)}:{following.port}", last.hostname]
    # The ssh that runs this command expands %-tokens once: keep every literal % literal.
    return shlex.join(argv).replace("%", "%%")


def _openssh_options(hop: SSHTarget, timeout_s: float) -> list[str]:
    argv = [
        "ssh",
        "-F",
        "/dev/null",
        "-p",
        str(hop.port),
        "-l",
        hop.user,
        "-o",
        f"UserKnownHostsFile={hop.known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={int(timeout_s)}",
        "-o",
        f"ServerAliveInterval={_KEEPALIVE_S}",
        "-o",
        "ServerAliveCountMax=3",
    ]
    if hop.identity_file:
        argv += ["-i", hop.identity_file, "-o", "IdentitiesOnly=yes"]
    return argv


def _bracketed(hostname: str) -> str:
    return f"[{hostname}]" if ":" in hostname else hostname


def _jump_entry(hop: SSHTarget) -> str:
    return f"{hop.user}@{_bracketed(hop.hostname)}:{hop.port}"
