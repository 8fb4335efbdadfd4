"""One SSH connection to a host, shared by everything that talks to it (paramiko).

``SSHRunner.run(argv) -> Completed`` runs a command; ``open_stream`` starts one whose output is
read as it comes; ``sftp()`` moves files. Connecting is retried a bounded number of times with
backoff, and only for failures that can pass (refused, timed out, no banner yet); a wrong host
key, an unknown host or a rejected key fail at once. Each failure is one line naming the stage
(``ssh-ready``), the machine and the fix. If the connection drops, the next call reconnects.
A host that just exhausted every attempt is taken to be unreachable for
:data:`REMEMBER_UNREACHABLE_S`: a connect in that time (another thread that waited behind the
failing one, the next step of a teardown) fails at once with the same line instead of spending
the whole retry budget again; the first connect after it tries for real.

Cancellation is per call, not per runner: ``connect``, ``run``, ``open_stream``, ``sftp`` and
``reconnect`` take ``cancel`` (an event, see :mod:`fogros_dist.remote.cancel`; None: never
cancelled), because one runner serves both provisioning (cancellable) and the teardown that
follows a cancel (which must not be). A connect sees a set event within ~0.2 s in every step:
each attempt's TCP connect is our own non-blocking socket (handed to paramiko as ``sock=``), and
a watcher closes the attempt's socket, channels and transports, which makes a blocked banner,
handshake, authentication or jump-host channel fail at once. ``progress`` gets ``("waiting",
"ssh <route>: attempt n of N, 14 s, connection refused")`` lines, at most one per
:data:`~fogros_dist.remote.cancel.REPORT_EVERY_S`, from the first failure or stall on.

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
import logging
import os
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from fogros_dist.errors import Cancelled, ProvisionError
from fogros_dist.remote.cancel import CHECK_EVERY_S, REPORT_EVERY_S, CancelEvent, cancelled
from fogros_dist.remote.hostkeys import (
    HostKey,
    add_known_host,
    changed_key_message,
    unknown_key_message,
)
from fogros_dist.remote.target import SSHTarget

__all__ = [
    "REMEMBER_UNREACHABLE_S",
    "Completed",
    "ConnectionLost",
    "ForwardRefused",
    "HostUnreachable",
    "RetryPolicy",
    "SSHRunner",
    "openssh_argv",
]

# Receives (stage, message), as a provider's progress does.
Progress = Callable[[str, str], None]
# paramiko's transport thread logs each failure it sees (a banner that never came, a socket closed
# on cancel) at ERROR with a traceback; SSHRunner states every failure in one line of its own, so
# the connections it makes log to this channel, shown only at debug verbosity (--debug).
_PARAMIKO_LOG = "fogros_dist.remote.paramiko"
# Keepalives let a dead peer (a cable pulled, a host gone) show up as an error within seconds
# instead of a read that never returns.
_KEEPALIVE_S = 5
# How long a host whose every attempt just failed is not tried again. Each stage that talks to a
# lost machine (a supervisor's poll, its output followers, each teardown step) otherwise spent a
# full retry budget (16-47 s) in turn, one after another on the runner's lock. Short, so that a
# host back on the network is reached again within seconds.
REMEMBER_UNREACHABLE_S = 10.0


class ConnectionLost(ProvisionError):
    """The SSH connection dropped while a command ran; it may or may not have run to its end."""


class HostUnreachable(ProvisionError):
    """Every attempt to connect failed with what can pass (refused, timed out, no route): the host
    may come back, unlike a wrong key or a rejected login."""


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


class _DebugOnly(logging.Filter):
    """Lets paramiko's records through, as DEBUG, only where debug output is on."""

    def filter(self, record: logging.LogRecord) -> bool:
        # The root logger (`--debug` sets it): asking for "fogros_dist" would create that logger,
        # and created after ROS 2's `launch` is imported it stops propagating (see Known traps).
        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


logging.getLogger(_PARAMIKO_LOG).addFilter(_DebugOnly())


class _Interrupted(Exception):
    """The cancel event was set while an attempt waited (raised as Cancelled by the caller)."""


class _WaitReport:
    """The ``waiting`` progress lines of one connect: from the first failed (or stalled) attempt
    on, at most one per REPORT_EVERY_S. Called from the connecting thread and its watcher."""

    def __init__(self, runner: SSHRunner, progress: Progress | None) -> None:
        self._runner = runner
        self._progress = progress
        self._started = time.monotonic()
        self._last: float | None = None
        self._lock = threading.Lock()
        self.attempt = 0

    @property
    def active(self) -> bool:
        """Whether anyone listens."""
        return self._progress is not None

    @property
    def elapsed(self) -> float:
        """Seconds since the connect began."""
        return time.monotonic() - self._started

    def note(self, status: str, *, failed: bool = False) -> None:
        """Report ``status`` of the current attempt, unless a line went out too recently (or, for
        a stall rather than a failure, before the wait has lasted REPORT_EVERY_S)."""
        if self._progress is None:
            return
        now = time.monotonic()
        with self._lock:
            since = now - (self._started if self._last is None else self._last)
            if since < REPORT_EVERY_S and not (failed and self._last is None):
                return
            self._last = now
        runner = self._runner
        self._progress(
            "waiting",
            f"ssh {runner.target.route}: attempt {self.attempt} of {runner.retry_policy.attempts}, "
            f"{self.elapsed:.0f} s, {status}",
        )


class _AttemptWatch:
    """Watches one connection attempt from a thread of its own. When ``cancel`` is set it closes
    what the attempt opened (socket, channels, transports), so that a paramiko call blocked on
    them (banner, handshake, authentication, a jump host's channel) fails at once; meanwhile it
    reports the attempt's current ``step`` as a stall."""

    def __init__(self, cancel: CancelEvent | None, report: _WaitReport) -> None:
        self._cancel = cancel
        self._report = report
        self._closers: list[Callable[[], object]] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self.fired = False
        self.step = ""

    def __enter__(self) -> _AttemptWatch:
        if self._cancel is not None or self._report.active:
            threading.Thread(target=self._watch, name="ssh-connect-watch", daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()

    def add(self, close: Callable[[], object]) -> None:
        """Call ``close`` if the attempt is cancelled (at once if it already was)."""
        with self._lock:
            if not self.fired:
                self._closers.append(close)
                return
        _quietly(close)

    def _watch(self) -> None:
        while not self._done.wait(CHECK_EVERY_S):
            if self._cancel is not None and self._cancel.is_set():
                with self._lock:
                    self.fired = True
                    closers, self._closers = self._closers, []
                for close in reversed(closers):
                    _quietly(close)
                return
            if self.step:
                self._report.note(self.step)


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
        # (monotonic time, message) of the last connect whose every attempt failed; None once one
        # succeeds.
        self._unreachable: tuple[float, HostUnreachable] | None = None
        # Keys recorded on first contact (trust_new_host): the target's, and the jump hosts'.
        self.recorded_key: HostKey | None = None
        self.recorded_jump_keys: list[tuple[SSHTarget, HostKey]] = []

    @property
    def target(self) -> SSHTarget:
        """Where this runner connects."""
        return self._target

    @property
    def retry_policy(self) -> RetryPolicy:
        """How hard this runner tries to connect."""
        return self._retry

    @property
    def generation(self) -> int:
        """Increases with each new connection; pass it to :meth:`reconnect` after a failure."""
        return self._generation

    def connect(self, *, cancel: CancelEvent | None = None, progress: Progress | None = None) -> None:
        """Connect unless connected, retrying as the RetryPolicy allows.

        Args:
            cancel: stop waiting when set (seen within ~0.2 s); None: never.
            progress: receives ``("waiting", line)`` while attempts fail or stall (attempt n of
                N, seconds elapsed, what the last attempt saw), at most every few seconds.

        Raises:
            ProvisionError: one line naming stage ``ssh-ready``, the machine and the fix (at once,
                with the same line, if every attempt failed less than REMEMBER_UNREACHABLE_S ago).
            Cancelled: ``cancel`` was set first.
        """
        with self._lock:
            if self._alive():
                return
            self._close_locked()
            if self._unreachable is not None:
                failed_at, unreachable = self._unreachable
                if time.monotonic() - failed_at < REMEMBER_UNREACHABLE_S:
                    raise HostUnreachable(str(unreachable))
            try:
                self._client = self._connect_with_retries(cancel, _WaitReport(self, progress))
            except HostUnreachable as err:
                self._unreachable = (time.monotonic(), err)
                raise
            self._unreachable = None
            self._generation += 1

    def reconnect(self, stale_generation: int, *, cancel: CancelEvent | None = None) -> None:
        """Replace the connection of ``stale_generation`` (unless another thread already did)."""
        with self._lock:
            if self._generation == stale_generation or not self._alive():
                self._close_locked()
        self.connect(cancel=cancel)

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
        cancel: CancelEvent | None = None,
    ) -> Completed:
        """Run ``argv`` on the host (quoted for its POSIX shell) and wait for it.

        Args:
            argv: the command; ``argv[0]`` is found on the host's PATH.
            stdin: bytes fed to the command's standard input.
            timeout: seconds before giving up on the command (it is then left to the host).
            check: raise if the command exits non-zero.
            what: what the command does, for the error message ("install the runtime").
            cancel: stop waiting when set (the channel is closed; a command that ignores the
                hang-up is left to the host); None: never.

        Returns:
            The exit code and the decoded output.

        Raises:
            ProvisionError: the command failed (``check``) or timed out; the host is unreachable.
            ConnectionLost: the connection dropped while the command ran.
            Cancelled: ``cancel`` was set first.
        """
        channel = self._exec(argv, cancel=cancel)
        try:
            out, err = self._collect(channel, stdin, timeout, argv, what=what, cancel=cancel)
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

    def open_stream(
        self, argv: tuple[str, ...] | list[str], *, read_timeout: float, cancel: CancelEvent | None = None
    ) -> Any:
        """Start ``argv`` and return its paramiko Channel, for reading its output as it comes.

        A read that sees nothing for ``read_timeout`` seconds raises ``socket.timeout``;
        ``cancel`` interrupts the (re)connect this may need.
        """
        channel = self._exec(argv, cancel=cancel)
        channel.settimeout(read_timeout)
        return channel

    def sftp(self, *, cancel: CancelEvent | None = None) -> Any:
        """An SFTP client on the current connection (reopened after a reconnect), safe to share
        between threads: its calls take turns. ``cancel`` interrupts the (re)connect this may
        need."""
        self.connect(cancel=cancel)
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

    def _connect_with_retries(self, cancel: CancelEvent | None, report: _WaitReport) -> Any:
        policy = self._retry
        delay = policy.first_delay_s
        last: _HopFailed | None = None
        for attempt in range(1, policy.attempts + 1):
            report.attempt = attempt
            self._check_cancel(cancel, report)
            try:
                client = self._connect_once(cancel, report)
            except _Interrupted:
                raise self._interrupted(report) from None
            except _Refused as err:
                self._check_cancel(cancel, report)
                raise ProvisionError(str(err)) from None
            except _HopFailed as err:
                self._check_cancel(cancel, report)
                last = err
                report.note(_reason(err)[0], failed=True)
            else:
                if cancel is not None and cancel.is_set():
                    client.close()
                    self._close_jumps()
                    raise self._interrupted(report)
                return client
            if attempt < policy.attempts:
                _back_off(delay, cancel, report, _reason(last)[0])
                delay = min(delay * 2, policy.max_delay_s)
        self._check_cancel(cancel, report)
        assert last is not None
        msg = self._transient_message(last, policy.attempts, report.elapsed)
        raise HostUnreachable(msg) from last.cause

    def _check_cancel(self, cancel: CancelEvent | None, report: _WaitReport) -> None:
        if cancel is not None and cancel.is_set():
            raise self._interrupted(report)

    def _interrupted(self, report: _WaitReport) -> Cancelled:
        return cancelled(
            self._target.machine,
            f"connecting to {self._target.route} (ssh-ready: attempt {report.attempt} of "
            f"{self._retry.attempts}, {report.elapsed:.1f} s)",
        )

    def _close_jumps(self) -> None:
        for client in reversed(self._jump_clients):
            client.close()
        self._jump_clients = []

    def _connect_once(self, cancel: CancelEvent | None, report: _WaitReport) -> Any:
        """Connect hop by hop; return the target's client (the jump hosts' are kept open).

        The first hop's TCP connection is ours (cancellable while it waits); each later hop's is
        a ``direct-tcpip`` channel through the one before. A watcher closes all of them on cancel.
        """
        import paramiko

        target = self._target
        route = [*target.jumps, target]
        clients: list[Any] = []
        with _AttemptWatch(cancel, report) as watch:
            try:
                first = route[0]
                watch.step = f"no answer{_from(first, target)} yet"
                sock: Any = _tcp_connect(first, timeout_s=self._retry.timeout_s, cancel=cancel)
                watch.add(partial(_shut, sock))
                for index, hop in enumerate(route):
                    watch.step = f"SSH handshake{_with(hop, target)} under way"
                    client = paramiko.SSHClient()
                    clients.append(client)
                    watch.add(client.close)
                    self._connect_hop(client, hop, sock=sock, before=route[:index])
                    if index + 1 < len(route):
                        following = route[index + 1]
                        watch.step = f"jump host {hop.where} still connecting to {following.where}"
                        try:
                            sock = client.get_transport().open_channel(
                                "direct-tcpip",
                                (following.hostname, following.port),
                                ("127.0.0.1", 0),
                                timeout=self._retry.timeout_s,
                            )
                        except (paramiko.SSHException, EOFError, OSError) as err:
                            raise _HopFailed(following, err, via=hop) from err
                        watch.add(sock.close)
            except OSError as err:
                # The first hop's own TCP connect (refused, timed out, unreachable).
                for client in reversed(clients):
                    client.close()
                if isinstance(err, socket.gaierror):
                    raise _Refused(_unresolved_message(target, route[0], err)) from None
                raise _HopFailed(route[0], err) from err
            except BaseException:
                for client in reversed(clients):
                    client.close()
                if watch.fired:
                    raise _Interrupted from None
                raise
        self._jump_clients = clients[:-1]
        return clients[-1]

    def _connect_hop(self, client: Any, hop: SSHTarget, *, sock: Any, before: list[SSHTarget]) -> None:
        """One SSH connection to ``hop`` over ``sock`` (our TCP socket to the first hop, else a
        channel through ``before``'s last hop), made by ``client`` (a fresh SSHClient)."""
        import paramiko

        machine = self._target.machine
        kind = "host" if hop is self._target else "jump host"
        if Path(hop.known_hosts).is_file():
            try:
                # Loaded as "system" keys: paramiko only ever writes its own (empty) set back.
                client.load_system_host_keys(hop.known_hosts)
            except OSError as err:
                msg = f"ssh-ready: machine {machine!r}: cannot read {hop.known_hosts} ({err})"
                raise _Refused(msg) from err
        client.set_missing_host_key_policy(_host_key_policy(self, hop, before=before))
        client.set_log_channel(_PARAMIKO_LOG)
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
            raise _Refused(_unresolved_message(self._target, hop, err)) from None
        except (paramiko.SSHException, EOFError, OSError) as err:
            client.close()
            raise _HopFailed(hop, err) from err
        except BaseException:
            client.close()
            raise
        client.get_transport().set_keepalive(_KEEPALIVE_S)

    def _transient_message(self, failed: _HopFailed, attempts: int, seconds: float) -> str:
        target = self._target
        reason, fix = _reason(failed)
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

    def _exec(self, argv: tuple[str, ...] | list[str], *, cancel: CancelEvent | None) -> Any:
        import paramiko

        command = shlex.join(argv)
        # Opening a channel runs nothing yet, so it is safe to retry once on a fresh connection.
        for attempt in (1, 2):
            self.connect(cancel=cancel)
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
                self.reconnect(generation, cancel=cancel)
        raise AssertionError("unreachable")

    def _collect(
        self,
        channel: Any,
        stdin: bytes,
        timeout: float,
        argv: tuple[str, ...] | list[str],
        *,
        what: str,
        cancel: CancelEvent | None,
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
            if cancel is not None and cancel.is_set():
                raise cancelled(self._target.machine, f"running {what or shlex.join(argv)[:80]}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                label = what or shlex.join(argv)[:80]
                msg = (
                    f"machine {self._target.machine!r}: {label} did not finish on "
                    f"{self._target.hostname} within {timeout:.0f} s"
                )
                raise ProvisionError(msg)
            select.select([channel], [], [], min(remaining, 1.0 if cancel is None else CHECK_EVERY_S))
        return out.decode(errors="replace"), err.decode(errors="replace")


def _back_off(seconds: float, cancel: CancelEvent | None, report: _WaitReport, status: str) -> None:
    """Pause between two attempts; the status line stays live meanwhile, and Event.wait returns
    the moment ``cancel`` is set (the caller then raises)."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        step = min(left, 1.0)
        if cancel is not None:
            if cancel.wait(step):
                return
        else:
            time.sleep(step)
        report.note(status)


def _tcp_connect(hop: SSHTarget, *, timeout_s: float, cancel: CancelEvent | None) -> socket.socket:
    """A TCP connection to ``hop`` (each of its addresses in turn, ``timeout_s`` in all), made
    non-blocking so that ``cancel`` is seen while a SYN goes unanswered.

    Raises:
        OSError: refused, unreachable (errno set), ``TimeoutError``, or ``socket.gaierror``.
        _Interrupted: ``cancel`` was set.
    """
    deadline = time.monotonic() + timeout_s
    last: OSError | None = None
    for family, kind, proto, _name, address in _resolve(hop.hostname, hop.port, cancel):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            code = sock.connect_ex(address)
            while code in (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK):
                if cancel is not None and cancel.is_set():
                    raise _Interrupted
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("timed out")
                _, writable, _ = select.select([], [sock], [], min(left, CHECK_EVERY_S))
                if writable:
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code == 0:
                sock.setblocking(True)
                return sock
            last = OSError(code, os.strerror(code))
        except BaseException:
            sock.close()
            raise
        sock.close()
    raise last or OSError(errno.EHOSTUNREACH, f"no address for {hop.hostname}")


def _resolve(hostname: str, port: int, cancel: CancelEvent | None) -> list[Any]:
    """getaddrinfo, answered at once for an address; a name is looked up on a thread of its own
    so that a slow resolver cannot hold a cancel up."""
    try:
        return socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        if cancel is None:
            return socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
    found: list[list[Any]] = []
    failed: list[OSError] = []
    done = threading.Event()

    def look_up() -> None:
        try:
            found.append(socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM))
        except OSError as err:
            failed.append(err)
        finally:
            done.set()

    threading.Thread(target=look_up, name="ssh-resolve", daemon=True).start()
    while not done.wait(CHECK_EVERY_S):
        if cancel.is_set():
            raise _Interrupted
    if failed:
        raise failed[0]
    return found[0]


def _shut(sock: socket.socket) -> None:
    # shutdown() wakes a thread blocked on the socket; close() alone may not.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _quietly(close: Callable[[], object]) -> None:
    # Closing what another thread uses may raise anything paramiko or the socket layer raises.
    with contextlib.suppress(Exception):
        close()


def _from(hop: SSHTarget, target: SSHTarget) -> str:
    """`` from jump host u@h:p`` (or `` from u@h:p`` behind jumps), "" for a direct target."""
    if hop is not target:
        return f" from jump host {hop.where}"
    return f" from {hop.where}" if target.jumps else ""


def _with(hop: SSHTarget, target: SSHTarget) -> str:
    if hop is not target:
        return f" with jump host {hop.where}"
    return f" with {hop.where}" if target.jumps else ""


def _reason(failed: _HopFailed) -> tuple[str, str]:
    """(what went wrong, the fix) of a failure that may pass."""
    err = failed.cause
    text = str(err)
    codes = {getattr(e, "errno", None) for e in getattr(err, "errors", {}).values()}
    codes.add(getattr(err, "errno", None))
    if failed.via is not None:
        detail = text or type(err).__name__
        reason = f"jump host {failed.via.where} could not open a connection to it: {detail}"
        return reason, "check the address and port as the jump host sees them, and that sshd runs there"
    if errno.ECONNREFUSED in codes:
        return "connection refused", "check that sshd runs on the host and the port is right (option port)"
    if isinstance(err, TimeoutError | socket.timeout):
        return "timed out", "check the address and any firewall between the robot and the host"
    if codes & {errno.EHOSTUNREACH, errno.ENETUNREACH}:
        return "host unreachable", "check the address and the route to the host"
    if "banner" in text.lower():
        return "no SSH banner", "check that the port is sshd's (sshd may still be starting)"
    return text or type(err).__name__, "check the host, the port and sshd's log"


def _unresolved_message(target: SSHTarget, hop: SSHTarget, err: socket.gaierror) -> str:
    kind = "host" if hop is target else "jump host"
    option = "option host (or HostName in the SSH config)" if kind == "host" else "option proxy_jump"
    return (
        f"ssh-ready: machine {target.machine!r}: cannot resolve {kind} name {hop.hostname!r} "
        f"({err.strerror}): check {option}"
    )


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
