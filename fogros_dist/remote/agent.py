"""The robot's side of :mod:`fogros_dist.remote.host_agent`: one request/answer session per host.

Opening a session is one SSH command: a few lines of Python read the agent's source from stdin
(written to ``<remote_dir>/bin/host_agent-<hash>.py`` unless a file of that name, hence that
content, is there) and become ``host_agent.py serve`` on the same channel. Afterwards each remote
operation is a JSON message. If the connection drops, pending requests fail with
:class:`~fogros_dist.remote.runner.ConnectionLost` and the next request opens a new session.

Requests made while a machine comes up take ``cancel`` (see :mod:`fogros_dist.remote.cancel`):
the robot stops waiting within ~0.2 s of it being set and raises Cancelled, and tells the host to
stop a streaming request; what a request started on the host (a process) is its caller's to stop.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fogros_dist.errors import DeploymentError, ProvisionError
from fogros_dist.remote.cancel import CHECK_EVERY_S, CancelEvent, cancelled, raise_if_cancelled
from fogros_dist.remote.runner import ConnectionLost, SSHRunner

__all__ = [
    "MIN_PYTHON",
    "AgentStream",
    "Gpu",
    "HostAgent",
    "HostFacts",
    "agent_digest",
    "agent_source",
    "describe_gpus",
    "gpus_from_json",
    "gpus_to_json",
]

# fogros_dist itself needs 3.10 (setup.py's python_requires).
MIN_PYTHON = (3, 10)
# The agent heartbeats every 2 s: this much silence means the connection is dead.
_SILENCE_S = 10.0
# Reads exactly the agent's bytes from stdin (no read-ahead: what follows are requests), installs
# the file if missing, and becomes the server.
_BOOT = """import os, sys
root = os.path.abspath(os.path.expanduser(sys.argv[1]))
agent = os.path.join(root, "bin", "host_agent-" + sys.argv[2] + ".py")
size = int(sys.argv[3])
data = b""
while len(data) < size:
    chunk = os.read(0, size - len(data))
    if not chunk:
        sys.exit("fogros-dist: the agent's source was cut short")
    data += chunk
if not os.path.exists(agent):
    os.makedirs(os.path.dirname(agent), exist_ok=True)
    partial = agent + ".%d" % os.getpid()
    with open(partial, "wb") as handle:
        handle.write(data)
    os.replace(partial, agent)
os.execv(sys.executable, [sys.executable, agent, "serve"])
"""


def agent_source() -> bytes:
    """The agent script's bytes (what is copied to hosts)."""
    return Path(__file__).with_name("host_agent.py").read_bytes()


def agent_digest() -> str:
    """The short hash naming this version of the agent on hosts."""
    return hashlib.sha256(agent_source()).hexdigest()[:12]


@dataclass(frozen=True, kw_only=True)
class Gpu:
    """One GPU as ``nvidia-smi`` reports it on the host."""

    name: str
    # Total memory as nvidia-smi prints it, e.g. "81559 MiB".
    memory: str
    driver: str

    def describe(self) -> str:
        """``NVIDIA A10G (23028 MiB, driver 550.54.15)``."""
        return f"{self.name} ({self.memory}, driver {self.driver})"


def describe_gpus(gpus: tuple[Gpu, ...]) -> str:
    """``no GPU``, or the GPUs in one phrase (identical ones counted: ``2x NVIDIA A10G (...)``)."""
    if not gpus:
        return "no GPU"
    counts: dict[str, int] = {}
    for gpu in gpus:
        counts[gpu.describe()] = counts.get(gpu.describe(), 0) + 1
    return ", ".join(f"{n}x {text}" if n > 1 else text for text, n in counts.items())


def gpus_to_json(gpus: tuple[Gpu, ...]) -> str:
    """The GPUs as JSON, for a Host's connection record."""
    return json.dumps([{"name": g.name, "memory": g.memory, "driver": g.driver} for g in gpus])


def gpus_from_json(text: str) -> tuple[Gpu, ...]:
    """The GPUs :func:`gpus_to_json` recorded; () for a record without (or with a damaged) list."""
    try:
        entries = json.loads(text) if text else []
        return tuple(
            Gpu(name=str(e["name"]), memory=str(e["memory"]), driver=str(e["driver"])) for e in entries
        )
    except (ValueError, TypeError, KeyError):
        return ()


@dataclass(frozen=True, kw_only=True)
class HostFacts:
    """What a host offers, as its agent found it (one probe)."""

    remote_dir: str
    agent: str
    python_executable: str
    python_version: str
    implementation: str
    machine: str
    libc: str
    rsync: bool
    bash: bool
    ros_setup: str
    ros_distro: str
    rmw_cyclonedds: bool
    # (venv directory name, deps stamp, self stamp) for each venv under remote_dir/venvs.
    venvs: tuple[tuple[str, str, str], ...]
    workdir: str
    bridge_port: int
    # What nvidia-smi lists on the host (none where it is missing or fails).
    gpus: tuple[Gpu, ...] = ()
    # The host's own address on the SSH connection (where the machine bridge listens); "" unknown.
    ssh_server_address: str = ""

    def stamps(self, venv_name: str) -> tuple[str, str]:
        """The (deps, self) stamps of ``venv_name``; empty strings if it does not exist."""
        for name, deps, own in self.venvs:
            if name == venv_name:
                return deps, own
        return "", ""


class _Pending:
    def __init__(self, on_frame: Callable[[str], None] | None) -> None:
        self.done = threading.Event()
        self.on_frame = on_frame
        self.answer: dict[str, Any] = {}


class _Session:
    """One ``serve`` channel and the thread reading its answers."""

    def __init__(self, runner: SSHRunner, channel: Any) -> None:
        self.runner = runner
        self.channel = channel
        self.alive = True
        self.exit_code: int | None = None
        self.stderr = ""
        self._pending: dict[int, _Pending] = {}
        self._next = 1
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="host-agent-reader", daemon=True)
        self._reader.start()

    def submit(
        self, op: str, args: dict[str, Any], on_frame: Callable[[str], None] | None
    ) -> tuple[int, _Pending]:
        pending = _Pending(on_frame)
        with self._lock:
            if not self.alive:
                raise ConnectionLost(self._lost_message())
            ident = self._next
            self._next += 1
            self._pending[ident] = pending
        self.send({"id": ident, "op": op, "args": args})
        return ident, pending

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message) + "\n").encode()
        try:
            with self._send_lock:
                self.channel.sendall(data)
        except OSError as err:
            self._fail()
            raise ConnectionLost(self._lost_message()) from err

    def abandon(self, ident: int) -> None:
        """Stop waiting for request ``ident`` (and stop it on the host if it streams)."""
        with self._lock:
            self._pending.pop(ident, None)
            alive = self.alive
        if alive:
            with contextlib.suppress(ConnectionLost):
                self.send({"id": 0, "op": "cancel", "args": {"target": ident}})

    def close(self) -> None:
        self.channel.close()
        self._fail()

    def _read(self) -> None:
        buffer = b""
        try:
            while True:
                chunk = self.channel.recv(65536)
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    self._dispatch(json.loads(line))
        except (OSError, EOFError, ValueError):
            pass
        finally:
            self._fail()

    def _dispatch(self, message: dict[str, Any]) -> None:
        ident = message.get("id")
        if ident is None:
            return  # a heartbeat: its arrival alone resets the read timeout
        with self._lock:
            pending = self._pending.get(int(ident))
        if pending is None:
            return
        if "frame" in message:
            if pending.on_frame is not None:
                pending.on_frame(str(message["frame"]))
            return
        with self._lock:
            self._pending.pop(int(ident), None)
        pending.answer = message
        pending.done.set()

    def _fail(self) -> None:
        with self._lock:
            self.alive = False
            pending = list(self._pending.values())
            self._pending.clear()
        if self.exit_code is None and self.channel.exit_status_ready():
            self.exit_code = int(self.channel.recv_exit_status())
            while self.channel.recv_stderr_ready():
                self.stderr += self.channel.recv_stderr(65536).decode(errors="replace")
        for item in pending:
            item.done.set()

    def _lost_message(self) -> str:
        target = self.runner.target
        return f"machine {target.machine!r}: the SSH connection to {target.where} was lost"


class AgentStream:
    """A running ``follow``: frames go to a callback; ``wait`` returns its answer."""

    def __init__(self, agent: HostAgent, session: _Session, ident: int, pending: _Pending) -> None:
        self._agent = agent
        self._session = session
        self._ident = ident
        self._pending = pending

    def wait(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The final answer (the process's state), or None if still streaming after ``timeout``.

        Raises:
            ConnectionLost: the connection dropped while streaming.
        """
        if not self._pending.done.wait(timeout):
            return None
        answer: dict[str, Any] = self._agent.unwrap(self._pending, what="follow")
        return answer

    def cancel(self) -> None:
        """Stop the stream (its answer then arrives promptly)."""
        if self._session.alive:
            with contextlib.suppress(ConnectionLost):
                self._session.send({"id": 0, "op": "cancel", "args": {"target": self._ident}})


class HostAgent:
    """The agent on one host, over a session opened on first use (and after a lost connection)."""

    def __init__(self, runner: SSHRunner, *, python: str, remote_dir: str) -> None:
        """Args:
        runner: the connection.
        python: the host's interpreter (a name on its PATH, or a path).
        remote_dir: the base directory on the host (``~`` allowed).
        """
        self._runner = runner
        self._python = python
        self._remote_dir = remote_dir
        self._session: _Session | None = None
        self._lock = threading.Lock()

    @property
    def runner(self) -> SSHRunner:
        """The connection the agent is reached through."""
        return self._runner

    def path(self, facts: HostFacts) -> str:
        """Where this version of the agent lives on the host."""
        return facts.agent

    def close(self) -> None:
        """End the session (the server exits; supervised processes run on)."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            session.close()

    # -- requests --------------------------------------------------------------------------------

    def request(
        self,
        op: str,
        args: dict[str, Any],
        *,
        timeout: float = 60.0,
        what: str,
        cancel: CancelEvent | None = None,
    ) -> Any:
        """Send one request and return its answer.

        Args:
            cancel: stop waiting when set; None: never.

        Raises:
            ProvisionError: the host's agent failed (its error is named) or did not answer.
            ConnectionLost: the connection dropped meanwhile (the request may have run).
            Cancelled: ``cancel`` was set first (the request may still run on the host).
        """
        target = self._runner.target
        # Checked before sending too: a request not sent (a start) leaves nothing to undo.
        raise_if_cancelled(cancel, machine=target.machine, doing=f"asking {target.hostname} to {what}")
        session = self._session_for(cancel)
        ident, pending = session.submit(op, args, None)
        if not self._await(pending, timeout=timeout, cancel=cancel):
            if cancel is not None and cancel.is_set():
                session.abandon(ident)
                raise cancelled(target.machine, f"asking {target.hostname} to {what}")
            msg = (
                f"machine {target.machine!r}: {what} did not finish on {target.hostname} "
                f"within {timeout:.0f} s"
            )
            raise ProvisionError(msg)
        return self.unwrap(pending, what=what)

    @staticmethod
    def _await(pending: _Pending, *, timeout: float, cancel: CancelEvent | None) -> bool:
        """Whether the answer came within ``timeout`` (False as soon as ``cancel`` is set)."""
        if cancel is None:
            return pending.done.wait(timeout)
        end = time.monotonic() + timeout
        while not cancel.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return False
            if pending.done.wait(min(left, CHECK_EVERY_S)):
                return True
        return pending.done.is_set()

    def stream(
        self,
        op: str,
        args: dict[str, Any],
        on_frame: Callable[[str], None],
        *,
        cancel: CancelEvent | None = None,
    ) -> AgentStream:
        """Start a streaming request; frames go to ``on_frame`` on the reader thread. ``cancel``
        interrupts opening the session; stopping the stream is :meth:`AgentStream.cancel`."""
        session = self._session_for(cancel)
        ident, pending = session.submit(op, args, on_frame)
        return AgentStream(self, session, ident, pending)

    def unwrap(self, pending: _Pending, *, what: str) -> Any:
        """The result of a finished request, or the error it carries."""
        answer = pending.answer
        target = self._runner.target
        if not answer:
            msg = f"machine {target.machine!r}: the SSH connection to {target.where} was lost during: {what}"
            raise ConnectionLost(msg)
        if "error" in answer:
            msg = f"machine {target.machine!r}: {what} failed on {target.hostname}: {answer['error']}"
            raise ProvisionError(msg)
        return answer.get("ok")

    def probe(
        self, *, workdir: str, ros_setup: str, bridge_port: int, cancel: CancelEvent | None = None
    ) -> HostFacts:
        """What the host offers (resets ``workdir``, relative to remote_dir, if given).

        Raises:
            ProvisionError: the interpreter is too old, or the ROS setup file or the bridge port
                is not usable (one line naming the option and the fix).
            Cancelled: ``cancel`` was set first.
        """
        args = {
            "remote_dir": self._remote_dir,
            "workdir": workdir,
            "ros_setup": ros_setup,
            "bridge_port": bridge_port,
        }
        try:
            raw = self.request("probe", args, what="probe the host", cancel=cancel)
        except ConnectionLost:
            raise ProvisionError(self.explain_start_failure()) from None
        facts = _facts(self._runner.target.machine, raw)
        if tuple(int(p) for p in facts.python_version.split(".")) < MIN_PYTHON:
            target = self._runner.target
            msg = (
                f"machine {target.machine!r}: {self._python} on {target.hostname} is Python "
                f"{facts.python_version}; fogros_dist needs {MIN_PYTHON[0]}.{MIN_PYTHON[1]}+: "
                f"set option python to a newer interpreter"
            )
            raise ProvisionError(msg)
        return facts

    def start(self, spec: dict[str, Any], *, what: str, cancel: CancelEvent | None = None) -> dict[str, Any]:
        """Start a supervised process; return its record (pid, pgid, start_ticks, stdout, stderr).

        Raises:
            DeploymentError: it could not be executed on the host.
            Cancelled: ``cancel`` was set before the answer came (the process may have started:
                the run directory's records say so, and ``reap`` stops it).
        """
        answer: dict[str, Any] = self.request("start", spec, what=f"start {what}", cancel=cancel)
        if "record" not in answer:
            target = self._runner.target
            msg = f"cannot start {what} on machine {target.machine!r}: {answer.get('error', answer)}"
            raise DeploymentError(msg)
        record: dict[str, Any] = answer["record"]
        return record

    def run(
        self,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        setup: list[str] | None = None,
        path_prepend: list[str] | None = None,
        timeout: float = 120.0,
        what: str,
        cancel: CancelEvent | None = None,
    ) -> dict[str, Any]:
        """Run a short command on the host (setup files sourced first); ``{code, stdout, stderr}``.
        ``cancel`` stops the waiting, not the command (it ends within ``timeout`` there)."""
        args = {
            "argv": argv,
            "env": env or {},
            "setup": setup or [],
            "path_prepend": path_prepend or [],
            "timeout": timeout,
        }
        found: dict[str, Any] = self.request("run", args, timeout=timeout + 30.0, what=what, cancel=cancel)
        return found

    # -- session ---------------------------------------------------------------------------------

    def _session_for(self, cancel: CancelEvent | None) -> _Session:
        with self._lock:
            if self._session is not None and self._session.alive:
                return self._session
            self._session = self._open(cancel)
            return self._session

    def _open(self, cancel: CancelEvent | None) -> _Session:
        source = agent_source()
        argv = [self._python, "-c", _BOOT, self._remote_dir, agent_digest(), str(len(source))]
        for attempt in (1, 2):
            generation = self._runner.generation
            try:
                channel = self._runner.open_stream(argv, read_timeout=_SILENCE_S, cancel=cancel)
                channel.sendall(source)
                return _Session(self._runner, channel)
            except ConnectionLost:
                if attempt == 2:
                    raise
            except OSError:
                if attempt == 2:
                    raise
            self._runner.reconnect(generation, cancel=cancel)
        raise AssertionError("unreachable")

    def explain_start_failure(self) -> str:
        """Why the session's server is gone (its exit code and last stderr line), for messages."""
        with self._lock:
            session = self._session
        if session is None:
            return "no session"
        channel = session.channel
        channel.status_event.wait(5.0)
        code = int(channel.exit_status) if channel.exit_status_ready() else None
        stderr = session.stderr
        while channel.recv_stderr_ready():
            stderr += channel.recv_stderr(65536).decode(errors="replace")
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit code {code}"
        target = self._runner.target
        if code == 127:
            return (
                f"machine {target.machine!r}: Python interpreter {self._python!r} not found on "
                f"{target.hostname} ({reason}): install Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]}+ there, "
                f"or set option python to its path"
            )
        return (
            f"machine {target.machine!r}: fogros_dist's agent did not start on {target.hostname} "
            f"({reason}): check options python and remote_dir"
        )

    # -- operations ------------------------------------------------------------------------------

    def status(self, rundir: str, names: list[str]) -> dict[str, dict[str, Any]]:
        """``{name: {"state": running|exited|gone|unknown, "code": int|None}}``."""
        found: dict[str, dict[str, Any]] = self.request(
            "status", {"rundir": rundir, "names": names}, what="check processes"
        )
        return found

    def wait(
        self, rundir: str, name: str, *, timeout: float, cancel: CancelEvent | None = None
    ) -> dict[str, Any]:
        """Block until ``name`` exits or ``timeout`` passes; return its state. Keep ``timeout``
        short and loop where the wait is long: the host's side of a cancelled wait runs on until
        its ``timeout``.

        Raises:
            Cancelled: ``cancel`` was set first (the process is left running).
        """
        found: dict[str, Any] = self.request(
            "wait",
            {"rundir": rundir, "name": name, "timeout": timeout},
            timeout=timeout + 30.0,
            what=f"wait for {name}",
            cancel=cancel,
        )
        return found

    def stop(self, rundir: str, name: str, *, grace: float) -> dict[str, Any]:
        """SIGTERM, then SIGKILL after ``grace``; return the final state."""
        found: dict[str, Any] = self.request(
            "stop",
            {"rundir": rundir, "name": name, "grace": grace},
            timeout=grace + 30.0,
            what=f"stop {name}",
        )
        return found

    def reap(self, rundir: str, *, grace: float) -> dict[str, Any]:
        """Stop whatever still runs from ``rundir``; return what was stopped."""
        found: dict[str, Any] = self.request(
            "reap", {"rundir": rundir, "grace": grace}, timeout=grace * 10 + 30.0, what="stop leftovers"
        )
        return found

    def tail(self, path: str, lines: int) -> list[str]:
        """The last ``lines`` lines of a file on the host."""
        found: list[str] = self.request("tail", {"path": path, "lines": lines}, what=f"read {path}")
        return found

    def manifest(
        self, root: str, *, excludes: tuple[str, ...], cancel: CancelEvent | None = None
    ) -> dict[str, list[Any]]:
        """``{rel: [kind, size, mtime_s, mode, link]}`` for the paths under ``root``."""
        found: dict[str, list[Any]] = self.request(
            "manifest",
            {"root": root, "excludes": list(excludes)},
            timeout=300.0,
            what="list files",
            cancel=cancel,
        )
        return found

    def digest(
        self, root: str, *, excludes: tuple[str, ...], cancel: CancelEvent | None = None
    ) -> dict[str, Any]:
        """``{"digest": hex, "files": n}`` of the tree under ``root`` (see host_agent.tree_digest)."""
        found: dict[str, Any] = self.request(
            "digest",
            {"root": root, "excludes": list(excludes)},
            timeout=300.0,
            what="compare files",
            cancel=cancel,
        )
        return found

    def hashes(self, root: str, rels: list[str], *, cancel: CancelEvent | None = None) -> dict[str, str]:
        """SHA-256 of each of ``rels`` under ``root``."""
        found: dict[str, str] = self.request(
            "hash", {"root": root, "rels": rels}, timeout=300.0, what="hash files", cancel=cancel
        )
        return found


def _facts(machine: str, raw: dict[str, Any]) -> HostFacts:
    ros = raw["ros"]
    if "error" in ros:
        msg = f"machine {machine!r}: {ros['error']}: give the path of a ROS 2 setup.bash, or 'auto' or 'none'"
        raise ProvisionError(msg)
    bridge = raw.get("bridge", {"port": 0})
    if "error" in bridge:
        msg = f"machine {machine!r}: {bridge['error']}: pick another bridge_port, or leave it unset"
        raise ProvisionError(msg)
    python = raw["python"]
    return HostFacts(
        remote_dir=raw["remote_dir"],
        agent=f"{raw['remote_dir']}/bin/host_agent-{agent_digest()}.py",
        python_executable=python["executable"],
        python_version=python["version"],
        implementation=python["implementation"],
        machine=python["machine"],
        libc=python["libc"],
        rsync=bool(raw["rsync"]),
        bash=bool(raw["bash"]),
        ros_setup=ros["setup"],
        ros_distro=ros["distro"],
        rmw_cyclonedds=bool(ros["rmw_cyclonedds"]),
        venvs=tuple(
            (name, stamps.get("deps", ""), stamps.get("self", "")) for name, stamps in raw["venvs"].items()
        ),
        workdir=raw.get("workdir", ""),
        bridge_port=int(bridge["port"]),
        gpus=tuple(
            Gpu(name=str(g.get("name", "")), memory=str(g.get("memory", "")), driver=str(g.get("driver", "")))
            for g in raw.get("gpus", [])
            if isinstance(g, dict)
        ),
        ssh_server_address=str(raw.get("ssh_server_address", "")),
    )
