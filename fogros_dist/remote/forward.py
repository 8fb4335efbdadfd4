"""A local port forward over an SSH connection (``ssh -L``), for hosts the robot cannot reach.

A lab GPU server behind a bastion has no address the robot's bridge can open a TCP connection
to. The bridge's Zenoh link then goes where SSH goes: the robot bridge connects to a port on the
robot's loopback, and each connection accepted there becomes a ``direct-tcpip`` channel from the
host (through the same jump hosts, with the same verified host keys) to the machine bridge's port
on the host's loopback. Nothing listens anywhere but on loopback, on either side.


:func:`establish_forwarded` is :meth:`RemoteMachines.establish` for such a host: it binds the
robot's end first (so the one port number is free on both sides), lets the host's probe check it
there, starts the :class:`PortForward` on the machine's shared connection (it lives until that
closes, at ``terminate``) and returns a Host whose address is the robot's loopback.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fogros_dist.errors import FogError, ProvisionError
from fogros_dist.logs import module_logger
from fogros_dist.remote.runner import ForwardRefused, SSHRunner

if TYPE_CHECKING:
    from fogros_dist.remote.machine import RemoteMachines, RemoteSettings
    from fogros_dist.remote.target import SSHTarget
    from fogros_dist.spec import Host

__all__ = ["LOOPBACK", "PortForward", "establish_forwarded", "loopback_listener"]

LOOPBACK = "127.0.0.1"

_log = module_logger(__name__)
_CHUNK = 1 << 16


def loopback_listener(port: int, *, machine: str) -> socket.socket:
    """A listening TCP socket on 127.0.0.1:``port`` (0: any free port) on the robot.

    Raises:
        ProvisionError: ``port`` is taken on the robot.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as err:
        sock.close()
        msg = (
            f"machine {machine!r}: bridge_port {port} is in use on this robot ({err.strerror}), which "
            f"forwards it to the host behind its jump hosts: pick another bridge_port, or leave it unset"
        )
        raise ProvisionError(msg) from err
    sock.listen(16)
    return sock


def establish_forwarded(
    machines: RemoteMachines,
    target: SSHTarget,
    settings: RemoteSettings,
    *,
    deployment: str,
    domain_id: int,
    progress: Callable[[str, str], None],
    **more: Any,
) -> Host:
    """Establish a host behind jump hosts, with its bridge port forwarded to the robot's loopback.

    Takes :meth:`RemoteMachines.establish`'s arguments (``more`` are passed on as they are:
    ``workspace``, ``cancel``); a cancelled establish closes the robot's end again.

    The machine bridge then listens on the host's loopback only and the robot bridge connects to
    ``127.0.0.1:<bridge port>`` here (the Host's ``address``); its Zenoh link rides the SSH
    connection through the same jump hosts.

    Raises:
        ProvisionError: as :meth:`RemoteMachines.establish`, or the bridge port is taken on the
            robot.
        Cancelled: as :meth:`RemoteMachines.establish`.
    """
    import dataclasses

    listener = loopback_listener(settings.bridge_port, machine=target.machine)
    try:
        port = int(listener.getsockname()[1])
        host = machines.establish(
            target,
            dataclasses.replace(settings, bridge_port=port),
            deployment=deployment,
            domain_id=domain_id,
            progress=progress,
            **more,
        )
        machines.agent(host).runner.forward(listener, host=LOOPBACK, port=host.bridge_port)
    except BaseException:
        listener.close()
        raise
    progress(
        "forwarded",
        f"bridge port {port}: {LOOPBACK}:{port} here -> {LOOPBACK}:{port} on {target.hostname}, "
        f"over SSH via {', '.join(jump.where for jump in target.jumps)}",
    )
    return dataclasses.replace(host, address=LOOPBACK)


class PortForward:
    """Connections accepted on ``listener`` carried to ``host``:``port`` as the target sees it."""

    def __init__(self, runner: SSHRunner, listener: socket.socket, *, host: str, port: int) -> None:
        self._runner = runner
        self._listener = listener
        self._host = host
        self._port = port
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._open: set[tuple[socket.socket, Any]] = set()
        self._thread = threading.Thread(target=self._accept, name="ssh-port-forward", daemon=True)

    @property
    def local_port(self) -> int:
        """The robot's end: 127.0.0.1:<this>."""
        port: int = self._listener.getsockname()[1]
        return port

    def start(self) -> None:
        """Start accepting (a thread of its own)."""
        self._thread.start()

    def close(self) -> None:
        """Stop accepting and cut every forwarded connection."""
        self._closed.set()
        # shutdown() wakes the accepting thread; close() alone would leave it blocked.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            pairs, self._open = set(self._open), set()
        for conn, channel in pairs:
            _close_pair(conn, channel)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, origin = self._listener.accept()
            except OSError:
                return
            threading.Thread(
                target=self._carry, args=(conn, origin), name="ssh-port-forward-conn", daemon=True
            ).start()

    def _carry(self, conn: socket.socket, origin: tuple[str, int]) -> None:
        try:
            channel = self._runner.open_tunnel(host=self._host, port=self._port, origin=origin)
        except ForwardRefused as err:
            _log.warning("%s", err)
            conn.close()
            return
        except FogError as err:
            # Usually the machine bridge is not listening yet: the client (the robot bridge) sees
            # the connection close and retries by itself.
            _log.debug("%s", err)
            conn.close()
            return
        pair = (conn, channel)
        with self._lock:
            if self._closed.is_set():
                _close_pair(conn, channel)
                return
            self._open.add(pair)
        try:
            _pump(conn, channel)
        finally:
            with self._lock:
                self._open.discard(pair)
            _close_pair(conn, channel)


def _pump(conn: socket.socket, channel: Any) -> None:
    """Copy both ways until either side closes."""
    while True:
        try:
            readable, _, _ = select.select([conn, channel], [], [], 5.0)
        except (OSError, ValueError):
            return
        if conn in readable:
            try:
                data = conn.recv(_CHUNK)
            except OSError:
                return
            if not data:
                return
            try:
                channel.sendall(data)
            except OSError:
                return
        if channel in readable:
            try:
                data = channel.recv(_CHUNK)
            except OSError:
                return
            if not data:
                return
            try:
                conn.sendall(data)
            except OSError:
                return
        if channel.closed:
            return


def _close_pair(conn: socket.socket, channel: Any) -> None:
    with contextlib.suppress(OSError):
        conn.close()
    with contextlib.suppress(OSError, EOFError):
        channel.close()
