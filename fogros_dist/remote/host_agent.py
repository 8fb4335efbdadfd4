"""fogros_dist's agent on a remote host: one file, standard library only, run by the host's Python.

The robot copies this file to the host (``<remote_dir>/bin/host_agent-<hash>.py``) and runs
``serve`` over one SSH channel: newline-delimited JSON requests on stdin, answers on stdout. Every
remote operation is then a message, not a new SSH command: a login shell that takes half a second
to start (conda or pyenv in ~/.bashrc are common on lab machines) is paid once per connection.

Requests ``{"id": n, "op": ..., "args": {...}}`` run on threads of their own; answers are
``{"id": n, "ok": result}`` or ``{"id": n, "error": "..."}``, streams send ``{"id": n, "frame": ...}``
before their answer, and ``{"hb": 1}`` heartbeats go out every 2 s so the robot can tell a dead
connection from a quiet one. The server exits when its stdin closes (the robot went away);
supervised processes are not its children and run on.

Operations: ``probe`` (what the host offers; resets a deployment's workdir), ``start`` (a supervised
process), ``status``, ``wait``, ``stop`` (to its process group: SIGINT first for a node, as
``ros2 launch`` stops one, then SIGTERM, SIGKILL after the grace),
``reap`` (stop all of a run directory), ``follow`` (stream stdout/stderr from byte offsets until it
ends), ``run`` (a short command, output captured), ``tail``, ``manifest``, ``digest`` and ``hash``
(for the workspace push), ``cancel`` (a stream).

Supervision: ``start`` launches ``host_agent.py wrap`` in a session of its own; the wrapper starts
the command in another new session (so one signal to its process group reaches everything it
spawned, and not the wrapper), records ``<run>/<name>.json`` (PID, process group, start time from
/proc) and, when the command ends, ``<run>/<name>.exit`` with its exit code (negative: killed by
that signal). Output goes to files, so nothing depends on the SSH connection staying up.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import hashlib
import json
import os
import platform
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["PROTOCOL", "SOURCE_AND_EXEC", "entries", "main", "start_ticks", "tree_digest"]

PROTOCOL = 2
# The Zenoh default port, tried first so lab firewalls can be opened for one known port.
DEFAULT_BRIDGE_PORT = 7447
_POLL_S = 0.05
_HEARTBEAT_S = 2.0
# Sources the setup files, then replaces itself with the command. The command's arguments are
# moved aside first: a sourced script sees the caller's positional parameters. A setup file
# named with a leading "?" is sourced only if it exists.
SOURCE_AND_EXEC = (
    'setup=(); while [ "$1" != -- ]; do setup+=("$1"); shift; done; shift; cmd=("$@"); set --; '
    'for s in "${setup[@]}"; do case $s in "?"*) s=${s#?}; [ -f "$s" ] || continue;; esac; '
    '. "$s" || exit 127; done; [ -z "${FOGROS_PATH_PREPEND:-}" ] || PATH="$FOGROS_PATH_PREPEND:$PATH"; '
    'exec "${cmd[@]}"'
)
# Prints the environment the setup files leave behind (same care for positional parameters).
_SOURCE_AND_PRINT = 'files=("$@"); set --; for s in "${files[@]}"; do . "$s" || exit 127; done; exec env -0'
# Variables bash itself sets in any child: not the setup files' doing.
_SHELL_NOISE = {"_", "SHLVL", "PWD", "OLDPWD"}


# -- small helpers -------------------------------------------------------------------------------


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def start_ticks(pid: int) -> int:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), or -1."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(text[text.rindex(")") + 2 :].split()[19])


def _alive(record: dict[str, Any]) -> bool:
    """The recorded process still runs: same PID *and* start time, and it is not a zombie."""
    pid = int(record["pid"])
    if start_ticks(pid) != int(record["start_ticks"]):
        return False
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2] != "Z"


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class _SetupCache:
    """What sourcing a list of setup files adds to this server's environment, computed once per
    (files, mtimes): sourcing ROS 2's setup.bash takes a quarter of a second, per process."""

    def __init__(self) -> None:
        self._found: dict[tuple[tuple[str, int], ...], dict[str, str] | None] = {}
        self._lock = threading.Lock()

    def delta(self, setup: list[str]) -> dict[str, str] | None:
        """The variables the files set or change (None: a file is missing or failed)."""
        files: list[tuple[str, int]] = []
        for item in setup:
            optional = item.startswith("?")
            path = Path(item[1:] if optional else item)
            try:
                files.append((str(path), path.stat().st_mtime_ns))
            except OSError:
                if optional:
                    continue
                return None
        key = tuple(files)
        # One computation per key at a time; later callers wait for it under the lock.
        with self._lock:
            if key not in self._found:
                self._found[key] = _source(files)
            return self._found[key]

    def warm(self, setup: list[str]) -> None:
        """Compute :meth:`delta` on a thread now, so the first process need not wait for it."""
        threading.Thread(target=self.delta, args=(setup,), daemon=True).start()


def _source(files: list[tuple[str, int]]) -> dict[str, str] | None:
    try:
        done = subprocess.run(
            ["bash", "-c", _SOURCE_AND_PRINT, "fogros-env", *(path for path, _ in files)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    after = dict(
        item.split("=", 1) for item in done.stdout.decode(errors="surrogateescape").split("\0") if "=" in item
    )
    return {k: v for k, v in after.items() if os.environ.get(k) != v and k not in _SHELL_NOISE}


_SETUP = _SetupCache()


def _exec_plan(
    argv: list[str], setup: list[str], env: dict[str, str], path_prepend: list[str]
) -> tuple[list[str], dict[str, str]]:
    """The argv and the complete environment to execute ``argv`` with the setup files sourced."""
    delta = _SETUP.delta(setup) if setup else {}
    if delta is not None and not set(delta) & set(env):
        merged = {**os.environ, **delta, **env}
        if path_prepend:
            merged["PATH"] = os.pathsep.join([*path_prepend, merged.get("PATH", os.defpath)])
        return argv, merged
    # The exact shell semantics: a setup file is missing or failed (bash reports it in the
    # process's stderr), or the caller's own variables overlap what the files set.
    merged = {**os.environ, **env}
    if path_prepend:
        merged["FOGROS_PATH_PREPEND"] = os.pathsep.join(path_prepend)
    return ["bash", "-c", SOURCE_AND_EXEC, "fogros-env", *setup, "--", *argv], merged


# -- probe ---------------------------------------------------------------------------------------


def _ros(setting: str) -> dict[str, Any]:
    if setting == "none":
        return {"setup": "", "distro": "", "rmw_cyclonedds": False}
    if setting == "auto":
        found = sorted(glob.glob("/opt/ros/*/setup.bash"))
        # Alphabetical order is release order for named distros; rolling only if nothing else.
        named = [p for p in found if Path(p).parent.name != "rolling"]
        candidates = named or found
        if not candidates:
            return {"setup": "", "distro": "", "rmw_cyclonedds": False}
        setup = candidates[-1]
    else:
        setup = os.path.expanduser(setting)
        if not Path(setup).is_file():
            return {"error": f"ros_setup {setting!r} does not exist on this host"}
    prefix = Path(setup).parent
    rmw = any(prefix.glob("lib/librmw_cyclonedds_cpp.*"))
    return {"setup": setup, "distro": prefix.name, "rmw_cyclonedds": rmw}


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As a server binds it: connections of a previous bridge still in TIME_WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _bridge_port(wanted: int) -> dict[str, Any]:
    if wanted:
        if _bindable(wanted):
            return {"port": wanted}
        return {"error": f"bridge_port {wanted} is in use on this host"}
    if _bindable(DEFAULT_BRIDGE_PORT):
        return {"port": DEFAULT_BRIDGE_PORT}
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("0.0.0.0", 0))
        return {"port": int(sock.getsockname()[1])}


def _venvs(root: Path) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for venv in sorted((root / "venvs").glob("*")):
        stamps = {}
        for kind in ("deps", "self"):
            with contextlib.suppress(OSError):
                stamps[kind] = (venv / f".fogros-{kind}").read_text().strip()
        found[venv.name] = stamps
    return found


def op_probe(args: dict[str, Any], _emit: Callable[[str], bool]) -> dict[str, Any]:
    """What this host offers; creates the base dir; resets the deployment's workdir if named."""
    root = Path(os.path.abspath(os.path.expanduser(args["remote_dir"])))
    root.mkdir(parents=True, exist_ok=True)
    facts: dict[str, Any] = {
        "protocol": PROTOCOL,
        "remote_dir": str(root),
        "python": {
            "executable": sys.executable,
            "version": f"{sys.version_info[0]}.{sys.version_info[1]}",
            "implementation": sys.implementation.name,
            "machine": platform.machine(),
            "libc": "-".join(platform.libc_ver()),
        },
        "rsync": shutil.which("rsync") is not None,
        "bash": shutil.which("bash") is not None,
        "ros": _ros(args.get("ros_setup", "auto")),
        "venvs": _venvs(root),
        "gpus": [],
    }
    # The GPUs the driver sees; no nvidia-smi, or one that fails (no driver loaded), means none.
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            listed = subprocess.run(
                [smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
            if listed.returncode == 0:
                for line in listed.stdout.splitlines():
                    fields = [field.strip() for field in line.split(",")]
                    if len(fields) == 3 and fields[0]:
                        facts["gpus"].append(dict(zip(("name", "memory", "driver"), fields, strict=True)))
    if args.get("workdir"):
        workdir = root / args["workdir"]
        # A deployment of this name starts again: whatever its predecessor left running goes,
        # and so do its logs (they stayed for post-mortems until now).
        _reap(workdir / "run", grace=2.0)
        # The files a node shipped go too: a file the new deployment no longer ships must not linger.
        # So do the bridge's TLS credentials; their directory is the owner's alone (0700) before
        # the robot uploads a private key into it, whatever the umask gives the uploaded file.
        for sub in ("run", "logs", "files", "tls"):
            shutil.rmtree(workdir / sub, ignore_errors=True)
            (workdir / sub).mkdir(parents=True, mode=0o700 if sub == "tls" else 0o777)
        (workdir / "tls").chmod(0o700)
        facts["workdir"] = str(workdir)
        # The host's address on this SSH connection (SSH_CONNECTION: client address and port,
        # server address and port): the interface the robot's packets arrive on, which is where
        # the machine bridge listens; behind NAT (EC2) the robot's address for the host is not
        # on any of its interfaces.
        connection = os.environ.get("SSH_CONNECTION", "").split()
        facts["ssh_server_address"] = connection[2] if len(connection) == 4 else ""
        facts["bridge"] = _bridge_port(int(args.get("bridge_port", 0)))
        if facts["ros"].get("setup"):
            # What the bridge and the nodes will source: ready before the first one starts.
            _SETUP.warm([facts["ros"]["setup"]])
    return facts


# -- supervision ---------------------------------------------------------------------------------


def _paths(run: Path, name: str) -> tuple[Path, Path]:
    return run / f"{name}.json", run / f"{name}.exit"


def _state(run: Path, name: str) -> dict[str, Any]:
    record_path, exit_path = _paths(run, name)
    ended = _read_json(exit_path)
    if isinstance(ended, dict):
        return {"state": "exited", "code": ended.get("code")}
    record = _read_json(record_path)
    if not isinstance(record, dict):
        return {"state": "unknown", "code": None}
    if _alive(record):
        return {"state": "running", "code": None}
    # The process has ended; its wrapper writes the exit code a moment later.
    deadline = time.monotonic() + 2.0
    while _wrapper_alive(record) and time.monotonic() < deadline:
        ended = _read_json(exit_path)
        if isinstance(ended, dict):
            return {"state": "exited", "code": ended.get("code")}
        time.sleep(0.01)
    ended = _read_json(exit_path)
    if isinstance(ended, dict):
        return {"state": "exited", "code": ended.get("code")}
    return {"state": "gone", "code": None}


# Output files rotate before they pass this size (the robot sends the deployment's
# ``log_max_bytes``); _LOG_BACKUPS older parts are kept. Twin of fogros_dist/rotating_log.py.
_DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024
_MIN_LOG_MAX_BYTES = 4096
_LOG_BACKUPS = 3
# After the command exits: how long its output may take to drain before the exit is recorded.
_DRAIN_S = 1.0


class _RotatingLog:
    """Appends to ``path`` (0600), rotating it (``path.1`` ... ``path.<backups>``) before it would
    pass ``max_bytes``, preferably at a line boundary. A log that cannot be written is dropped,
    not the process: the command would die of a broken pipe if its output stopped being read."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self._max = max(max_bytes, _MIN_LOG_MAX_BYTES)
        self._fd: int | None = None
        self._size = 0
        with contextlib.suppress(OSError):
            self._fd = self._open()
            self._size = os.fstat(self._fd).st_size

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)

    @property
    def size(self) -> int:
        """Bytes in the file now: where this process's output begins (a respawned node appends
        to the log of its earlier run)."""
        return self._size

    def write(self, data: bytes) -> None:
        try:
            while data and self._fd is not None:
                room = self._max - self._size
                if len(data) <= room:
                    self._write(data)
                    return
                cut = data.rfind(b"\n", 0, room) + 1
                if cut == 0 and self._size == 0:
                    cut = room  # a line longer than a whole file is split
                if cut:
                    self._write(data[:cut])
                    data = data[cut:]
                self._rotate()
        except OSError:
            self.close()

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self._size += len(data)

    def _rotate(self) -> None:
        self.close()
        name = self.path.name
        self.path.with_name(f"{name}.{_LOG_BACKUPS}").unlink(missing_ok=True)
        for index in range(_LOG_BACKUPS - 1, 0, -1):
            older = self.path.with_name(f"{name}.{index}")
            if older.exists():
                older.rename(self.path.with_name(f"{name}.{index + 1}"))
        self.path.rename(self.path.with_name(f"{name}.1"))
        self._fd = self._open()
        self._size = 0

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _pump_output(
    child: subprocess.Popen[bytes], logs: dict[int, _RotatingLog], on_exit: Callable[[int], None]
) -> None:
    """Copy the child's pipes into their logs until every writer is gone; ``on_exit(code)`` runs
    once the child has exited and what it wrote before exiting is in the files."""
    selector = selectors.DefaultSelector()
    for fd in logs:
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ)
    code: int | None = None
    while logs:
        for key, _events in selector.select(timeout=_POLL_S):
            _drain(int(key.fd), logs, selector)
        if code is None and (code := child.poll()) is not None:
            # Whatever it wrote before it exited is in the pipes now: take it, then say so.
            deadline = time.monotonic() + _DRAIN_S
            while logs and time.monotonic() < deadline:
                if not any(_drain(fd, logs, selector) for fd in list(logs)):
                    break
            on_exit(code)
    if code is None:
        on_exit(child.wait())


def _drain(fd: int, logs: dict[int, _RotatingLog], selector: selectors.BaseSelector) -> bool:
    """Read what ``fd`` holds now into its log; True if anything was read."""
    try:
        data = os.read(fd, 1 << 16)
    except BlockingIOError:
        return False
    if data:
        logs[fd].write(data)
        return True
    selector.unregister(fd)
    os.close(fd)
    logs.pop(fd).close()
    return False


def wrap(args: argparse.Namespace) -> int:
    """The detached wrapper: start the command (spec on stdin), record it, tell the server on the
    notify fd, copy its output into rotated logs, record how it ended."""
    spec = json.loads(sys.stdin.read())
    notify = int(args.notify_fd)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    # The wrapper must outlive the SSH session that started it, and read the output to the end.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    run = Path(spec["rundir"])
    logs = Path(spec["logdir"])
    with contextlib.suppress(OSError):
        logs.chmod(0o700)  # what the processes print is the owner's to read
    name = spec["name"]
    record_path, exit_path = _paths(run, name)
    # The server resolved the setup files into the final command and environment.
    argv = list(spec["argv"])
    env = dict(spec["env"])
    max_bytes = int(spec.get("log_max_bytes") or _DEFAULT_LOG_MAX_BYTES)
    stdout_path = logs / f"{name}.out"
    stderr_path = logs / f"{name}.err"
    out, err = _RotatingLog(stdout_path, max_bytes), _RotatingLog(stderr_path, max_bytes)
    # An ignored SIGINT survives exec, and stopping a node begins with SIGINT: the command gets
    # the default disposition whatever this wrapper inherited (it ignores SIGINT again after).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        # Pipes, not the files: a file the command writes itself could not be rotated.
        child = subprocess.Popen(
            argv,
            cwd=spec.get("cwd") or None,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        reason = f"cannot execute {argv[0]!r}: {exc.strerror}"
        err.write(f"fogros-dist: {reason}\n".encode())
        out.close()
        err.close()
        _write_atomic(exit_path, json.dumps({"code": 127, "ended": time.time()}))
        os.write(notify, json.dumps({"error": reason}).encode())
        os.close(notify)
        return 0
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    record = {
        "name": name,
        "pid": child.pid,
        "pgid": child.pid,
        "start_ticks": start_ticks(child.pid),
        "wrapper_pid": os.getpid(),
        "wrapper_start_ticks": start_ticks(os.getpid()),
        "stdout": str(stdout_path),
        "stderr": str(stderr_path),
        "stdout_from": out.size,
        "stderr_from": err.size,
    }
    _write_atomic(record_path, json.dumps(record))
    os.write(notify, json.dumps({"record": record}).encode())
    os.close(notify)
    assert child.stdout is not None
    assert child.stderr is not None

    def ended(code: int) -> None:
        _write_atomic(exit_path, json.dumps({"code": code, "ended": time.time()}))

    # The pump owns (and closes) copies of the descriptors, not the file objects'.
    pipes = {os.dup(child.stdout.fileno()): out, os.dup(child.stderr.fileno()): err}
    child.stdout.close()
    child.stderr.close()
    _pump_output(child, pipes, ended)
    return 0


class _Server:
    """The request loop; see the module docstring."""

    def __init__(self) -> None:
        self._out = sys.stdout.buffer
        self._lock = threading.Lock()
        self._cancelled: dict[int, threading.Event] = {}
        self._wrappers: list[subprocess.Popen[bytes]] = []
        self._wrappers_lock = threading.Lock()
        self._agent = str(Path(__file__).resolve())

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message) + "\n").encode()
        try:
            with self._lock:
                self._out.write(data)
                self._out.flush()
        except (BrokenPipeError, ValueError, OSError):
            # The robot went away; supervised processes are not ours to take down with us.
            os._exit(0)

    def serve(self) -> int:
        threading.Thread(target=self._heartbeat, daemon=True).start()
        for line in sys.stdin.buffer:
            if not line.strip():
                continue
            request = json.loads(line)
            if request.get("op") == "cancel":
                event = self._cancelled.get(int(request["args"]["target"]))
                if event is not None:
                    event.set()
                continue
            threading.Thread(target=self._handle, args=(request,), daemon=True).start()
        return 0

    def _heartbeat(self) -> None:
        while True:
            time.sleep(_HEARTBEAT_S)
            self.send({"hb": 1})
            with self._wrappers_lock:
                self._wrappers = [w for w in self._wrappers if w.poll() is None]

    def _handle(self, request: dict[str, Any]) -> None:
        ident = int(request["id"])
        cancel = threading.Event()
        self._cancelled[ident] = cancel

        def emit(frame: str) -> bool:
            self.send({"id": ident, "frame": frame})
            return not cancel.is_set()

        try:
            op = request["op"]
            if op == "start":
                result: Any = self._start(request["args"])
            else:
                result = _OPS[op](request["args"], emit)
            self.send({"id": ident, "ok": result})
        except Exception as exc:
            self.send({"id": ident, "error": f"{type(exc).__name__}: {exc}"})
        finally:
            self._cancelled.pop(ident, None)

    def _start(self, spec: dict[str, Any]) -> dict[str, Any]:
        run = Path(spec["rundir"])
        run.mkdir(parents=True, exist_ok=True)
        Path(spec["logdir"]).mkdir(parents=True, exist_ok=True)
        record_path, exit_path = _paths(run, spec["name"])
        existing = _read_json(record_path)
        if isinstance(existing, dict) and _alive(existing):
            # Idempotent: a retried start (the connection dropped) finds the first one.
            return {"record": existing}
        exit_path.unlink(missing_ok=True)
        argv, env = _exec_plan(
            list(spec["argv"]),
            list(spec.get("setup", [])),
            spec.get("env", {}),
            list(spec.get("path_prepend", [])),
        )
        spec = {**spec, "argv": argv, "env": env}
        read_end, write_end = os.pipe()
        try:
            wrapper = subprocess.Popen(
                [sys.executable, self._agent, "wrap", "--notify-fd", str(write_end)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(write_end,),
                start_new_session=True,
            )
        finally:
            os.close(write_end)
        with self._wrappers_lock:
            self._wrappers.append(wrapper)
        assert wrapper.stdin is not None
        wrapper.stdin.write(json.dumps(spec).encode())
        wrapper.stdin.close()
        chunks = []
        while chunk := os.read(read_end, 65536):
            chunks.append(chunk)
        os.close(read_end)
        answer: dict[str, Any] = json.loads(
            b"".join(chunks) or b'{"error": "the wrapper died before starting the command"}'
        )
        return answer


def op_status(args: dict[str, Any], _emit: Callable[[str], bool]) -> dict[str, Any]:
    """``{name: {"state": running|exited|gone|unknown, "code": ...}}``."""
    run = Path(args["rundir"])
    return {name: _state(run, name) for name in args["names"]}


def op_wait(args: dict[str, Any], _emit: Callable[[str], bool]) -> dict[str, Any]:
    """Wait until the process ends or the timeout passes; its state."""
    run = Path(args["rundir"])
    deadline = time.monotonic() + float(args["timeout"])
    state = _state(run, args["name"])
    while state["state"] == "running" and time.monotonic() < deadline:
        time.sleep(_POLL_S)
        state = _state(run, args["name"])
    return state


def _stop(run: Path, name: str, grace: float, sigint_grace: float | None = None) -> dict[str, Any]:
    """SIGTERM (after SIGINT and ``sigint_grace`` s, if given), SIGKILL after ``grace`` s more."""
    record_path, exit_path = _paths(run, name)
    record = _read_json(record_path)
    if not isinstance(record, dict):
        return _state(run, name)
    pgid = int(record["pgid"])
    if _alive(record):
        steps = [(signal.SIGINT, sigint_grace)] if sigint_grace is not None else []
        steps.append((signal.SIGTERM, grace))
        for sig, patience in steps:
            if not _alive(record):
                break
            _killpg(pgid, sig)
            deadline = time.monotonic() + patience
            while _alive(record) and time.monotonic() < deadline:
                time.sleep(_POLL_S)
        if _alive(record):
            _killpg(pgid, signal.SIGKILL)
        # The wrapper records the exit code a moment after the process is reaped.
        deadline = time.monotonic() + 5.0
        while not exit_path.exists() and _wrapper_alive(record) and time.monotonic() < deadline:
            time.sleep(_POLL_S)
        # Children the process left behind in its group get the same end. The group cannot have
        # been recycled: its leader was ours a moment ago, and a group ID stays taken while any
        # member lives.
        _killpg(pgid, signal.SIGKILL)
    return _state(run, name)


def _wrapper_alive(record: dict[str, Any]) -> bool:
    pid = int(record.get("wrapper_pid", 0))
    ticks = int(record.get("wrapper_start_ticks", -2))
    return pid > 0 and _alive({"pid": pid, "start_ticks": ticks})


def op_stop(args: dict[str, Any], _emit: Callable[[str], bool]) -> dict[str, Any]:
    """Stop one process (``sigint_grace``: SIGINT first, as ``ros2 launch`` does); its final state."""
    sigint_grace = args.get("sigint_grace")
    return _stop(
        Path(args["rundir"]),
        args["name"],
        float(args["grace"]),
        None if sigint_grace is None else float(sigint_grace),
    )


def _reap(run: Path, grace: float) -> dict[str, Any]:
    results = {}
    for record_path in sorted(run.glob("*.json")):
        name = record_path.stem
        if _state(run, name)["state"] == "running":
            results[name] = _stop(run, name, grace)
    return results


def op_reap(args: dict[str, Any], _emit: Callable[[str], bool]) -> dict[str, Any]:
    """Stop every still-running process recorded in a run directory; what was stopped."""
    return _reap(Path(args["rundir"]), float(args["grace"]))


def op_follow(args: dict[str, Any], emit: Callable[[str], bool]) -> dict[str, Any]:
    """Emit ``O <offset> <line>`` / ``E <offset> <line>`` frames (offset: the byte after the line)
    until the process has ended (then its state is the answer) or the stream is cancelled."""
    run = Path(args["rundir"])
    # tag, path, offset, pending partial line, inode of the file being read (None: not yet).
    streams: list[list[Any]] = [
        ["O", Path(args["stdout"]), int(args["from_out"]), b"", None],
        ["E", Path(args["stderr"]), int(args["from_err"]), b"", None],
    ]
    for entry in streams:
        if entry[2] < 0:
            try:
                entry[2] = entry[1].stat().st_size
            except OSError:
                entry[2] = 0
    while True:
        # The state first: output written before the process ended is then sent before the end.
        state = _state(run, args["name"])
        busy = False
        for entry in streams:
            tag, path, offset, pending, inode = entry
            # Offsets count in the file being read; a rotation starts the next file at 0.
            data, entry[4], restarted = _read_log(path, offset + len(pending), inode)
            if restarted:
                if pending and not emit(f"{tag} {offset + len(pending)} {pending.decode(errors='replace')}"):
                    return {"state": "cancelled", "code": None}
                offset, pending = 0, b""
            if not data:
                entry[2], entry[3] = offset, pending
                continue
            busy = True
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                offset += len(line) + 1
                if not emit(f"{tag} {offset} {line.decode(errors='replace')}"):
                    return {"state": "cancelled", "code": None}
            entry[2], entry[3] = offset, pending
        # Ended, and nothing was left to read after it ended: everything has been sent.
        if state["state"] in ("exited", "gone", "unknown") and not busy:
            for tag, _path, offset, pending, _inode in streams:
                if pending:
                    emit(f"{tag} {offset + len(pending)} {pending.decode(errors='replace')}")
            return state
        if not busy:
            # Only when idle: a reader that pauses while output pours in falls behind rotation.
            time.sleep(_POLL_S)


def _read_log(path: Path, position: int, inode: int | None) -> tuple[bytes, int | None, bool]:
    """Up to 1 MiB of the log ``path`` from ``position`` in the file with ``inode`` (None: the
    current one), across rotations (see _RotatingLog): the rest of a rotated file comes first,
    then the current one from 0.

    Returns:
        The bytes, the inode they were read from, and whether reading restarted at 0 of a newer file.
    """
    try:
        current = path.stat()
    except OSError:
        return b"", inode, False
    if inode is None:
        if current.st_size >= position:
            return _read_at(path, position), current.st_ino, False
        # Rotated since ``position`` was taken (the robot reconnected): the rest of the old file.
        older = path.with_name(f"{path.name}.1")
        with contextlib.suppress(OSError):
            if older.stat().st_size >= position:
                return _read_at(older, position), older.stat().st_ino, False
        return _read_at(path, 0), current.st_ino, True
    if inode == current.st_ino:
        return _read_at(path, position), inode, False
    # Rotated: the rest of the file being read, then the next newer part (the oldest kept one if
    # it is gone), so a reader that fell behind by a few rotations misses nothing.
    kept = []
    for index in range(_LOG_BACKUPS, 0, -1):
        with contextlib.suppress(OSError):
            older = path.with_name(f"{path.name}.{index}")
            kept.append((older, older.stat().st_ino))
    kept.append((path, current.st_ino))
    following = kept[0]
    for index, (part, part_inode) in enumerate(kept[:-1]):
        if part_inode == inode:
            data = _read_at(part, position)
            if data:
                return data, inode, False
            following = kept[index + 1]
            break
    return _read_at(following[0], 0), following[1], True


def _read_at(path: Path, position: int) -> bytes:
    try:
        with path.open("rb") as handle:
            handle.seek(position)
            return handle.read(1 << 20)
    except OSError:
        return b""


def op_run(args: dict[str, Any], _emit: Callable[[str], bool]) -> dict[str, Any]:
    """Run a short command (setup files sourced first); its exit code and output."""
    argv, env = _exec_plan(
        list(args["argv"]),
        list(args.get("setup", [])),
        args.get("env", {}),
        list(args.get("path_prepend", [])),
    )
    try:
        done = subprocess.run(
            argv,
            env=env,
            cwd=args.get("cwd") or None,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=float(args.get("timeout", 120)),
            check=False,
        )
    except OSError as exc:
        return {"code": 127, "stdout": "", "stderr": f"cannot execute {argv[0]!r}: {exc.strerror}"}
    return {
        "code": done.returncode,
        "stdout": done.stdout.decode(errors="replace"),
        "stderr": done.stderr.decode(errors="replace"),
    }


def op_tail(args: dict[str, Any], _emit: Callable[[str], bool]) -> list[str]:
    """The last lines of a text file ([] if it does not exist)."""
    try:
        with Path(args["path"]).open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            data = handle.read()
    except OSError:
        return []
    return data.decode(errors="replace").splitlines()[-int(args["lines"]) :]


# -- files ---------------------------------------------------------------------------------------


def _excluded(rel: str, name: str, excludes: list[str]) -> bool:
    for pattern in excludes:
        if pattern.startswith("/"):
            if rel == pattern[1:]:
                return True
        elif name == pattern:
            return True
    return False


def _outside(rel: str, is_dir: bool, includes: list[str] | None) -> bool:
    """Whether ``rel`` lies outside every included subtree (directories leading to one are in)."""
    if includes is None:
        return False
    for subtree in includes:
        if rel == subtree or rel.startswith(subtree + "/"):
            return False
        if is_dir and subtree.startswith(rel + "/"):
            return False
    return True


def entries(
    root: Path, excludes: list[str], includes: list[str] | None = None
) -> Iterator[tuple[str, list[Any]]]:
    """``(rel, [kind, size, mtime_s, mode, link])`` for every path under root, sorted by rel.

    ``includes`` (relative paths of subtrees; None: everything) keeps only those subtrees and
    the directories leading to them: the packages of a workspace that travel.
    """
    found: list[tuple[str, list[Any]]] = []
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            entries = list(os.scandir(root / rel_dir))
        except OSError:
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if _excluded(rel, entry.name, excludes):
                continue
            if _outside(rel, entry.is_dir(follow_symlinks=False), includes):
                continue
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                found.append((rel, ["l", 0, 0, 0, os.readlink(root / rel)]))
            elif stat.S_ISDIR(info.st_mode):
                found.append((rel, ["d", 0, 0, stat.S_IMODE(info.st_mode), ""]))
                stack.append(rel)
            elif stat.S_ISREG(info.st_mode):
                found.append((rel, ["f", info.st_size, int(info.st_mtime), stat.S_IMODE(info.st_mode), ""]))
    return iter(sorted(found))


def tree_digest(root: Path, excludes: list[str], includes: list[str] | None = None) -> dict[str, Any]:
    """A hash of every path's kind, size, mtime (s), mode and link target: equal digests mean
    rsync's quick check would find nothing to send. The robot computes the same function (with
    ``includes`` where only some subtrees travel; see :func:`entries`)."""
    digest = hashlib.sha256()
    files = 0
    if root.is_dir():
        for rel, (kind, size, mtime, mode, link) in entries(root, excludes, includes):
            digest.update(
                f"{rel}\0{kind}\0{size}\0{mtime}\0{mode}\0{link}\n".encode(errors="surrogateescape")
            )
            files += kind == "f"
    return {"digest": digest.hexdigest(), "files": files}


def op_manifest(args: dict[str, Any], _emit: Callable[[str], bool]) -> dict[str, list[Any]]:
    """``{rel: [kind, size, mtime_s, mode, link]}`` under root (kind f/d/l)."""
    root = Path(args["root"])
    return dict(entries(root, list(args["excludes"]))) if root.is_dir() else {}


def op_digest(args: dict[str, Any], _emit: Callable[[str], bool]) -> dict[str, Any]:
    """See :func:`tree_digest`."""
    return tree_digest(Path(args["root"]), list(args["excludes"]))


def op_hash(args: dict[str, Any], _emit: Callable[[str], bool]) -> dict[str, str]:
    """``{rel: sha256}`` for the named files under root."""
    root = Path(args["root"])
    found = {}
    for rel in args["rels"]:
        digest = hashlib.sha256()
        with contextlib.suppress(OSError), (root / rel).open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        found[rel] = digest.hexdigest()
    return found


_OPS: dict[str, Callable[[dict[str, Any], Callable[[str], bool]], Any]] = {
    "probe": op_probe,
    "status": op_status,
    "wait": op_wait,
    "stop": op_stop,
    "reap": op_reap,
    "follow": op_follow,
    "run": op_run,
    "tail": op_tail,
    "manifest": op_manifest,
    "digest": op_digest,
    "hash": op_hash,
}


# -- runtime install -----------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _stamp(venv: Path, kind: str) -> str:
    try:
        return (venv / f".fogros-{kind}").read_text().strip()
    except OSError:
        return ""


def _run(argv: list[str], env: dict[str, str]) -> None:
    print("+ " + " ".join(argv), flush=True)
    result = subprocess.run(argv, env=env, check=False)
    if result.returncode != 0:
        raise SystemExit(result.returncode)


def install(args: argparse.Namespace) -> int:
    """Create or refresh the venv described in the spec file, offline, under a host-wide lock.

    It runs as a supervised process (its stdin is /dev/null), hence the spec file. The deps stamp
    is written last, so an interrupted install is redone from scratch next time.
    """
    spec = json.loads(Path(args.spec).read_text())
    venv = Path(spec["venv"])
    wheels = Path(spec["wheels"])
    # Only the pushed wheelhouse: no index, and none of the host's pip configuration.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    pip = [
        str(venv / "bin" / "python"),
        str(wheels / spec["pip_wheel"] / "pip"),
        "install",
        "--no-index",
        "--find-links",
        str(wheels),
        "--disable-pip-version-check",
        "--no-warn-script-location",
        "--progress-bar",
        "off",
        # Byte-compiling every module (botocore alone has thousands) costs more than the rest of
        # the install; Python compiles what is imported, on first import.
        "--no-compile",
    ]
    with _locked(venv.parent / ".install.lock"):
        if _stamp(venv, "deps") != spec["deps_key"]:
            shutil.rmtree(venv, ignore_errors=True)
            make = [sys.executable, "-m", "venv", "--without-pip"]
            if spec.get("system_site_packages"):
                make.append("--system-site-packages")
            _run([*make, str(venv)], env)
            _run([*pip, "-r", str(wheels / spec["requirements"])], env)
            _write_atomic(venv / ".fogros-deps", spec["deps_key"])
        if _stamp(venv, "self") != spec["self_key"]:
            _run([*pip, "--no-deps", "--force-reinstall", str(wheels / spec["self_wheel"])], env)
            _write_atomic(venv / ".fogros-self", spec["self_key"])
    print("runtime ready", flush=True)
    return 0


# -- workspace build -----------------------------------------------------------------------------

_BUILD_STAMP = ".fogros-build"


def _say(line: str) -> None:
    print(f"fogros-build: {line}", flush=True)


def _host_colcon(venv_bin: str) -> list[str] | None:
    """The host's own colcon (as its users run it), found on PATH without fogros_dist's venv."""
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin)
    found = shutil.which("colcon", path=path)
    return [found] if found else None


def _ros_python() -> str:
    """The interpreter the sourced ROS 2 runs on: the first line of its ``ros2`` ("" if none)."""
    ros2 = shutil.which("ros2")
    if ros2 is None:
        return ""
    try:
        with Path(ros2).open("rb") as handle:
            first = handle.readline().decode(errors="replace").strip()
    except OSError:
        return ""
    words = first[2:].split() if first.startswith("#!") else []
    if words and Path(words[0]).name == "env" and len(words) > 1:
        return shutil.which(words[1]) or ""
    return words[0] if words else ""


def _rosdep_blocker(distro: str) -> str:
    """Why rosdep cannot install system packages here ("" if it can)."""
    if shutil.which("rosdep") is None:
        return "rosdep is not installed on this host"
    if not glob.glob("/etc/ros/rosdep/sources.list.d/*"):
        return "rosdep is not initialized on this host (run 'sudo rosdep init && rosdep update' there)"
    if not Path("~/.ros/rosdep/sources.cache").expanduser().exists():
        return "rosdep has no cache on this host (run 'rosdep update' there)"
    if not distro:
        return "no ROS 2 is sourced on this host"
    if shutil.which("apt-cache") is not None:
        known = subprocess.run(
            ["apt-cache", "show", f"ros-{distro}-rclpy"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        if known.returncode != 0:
            return f"apt has no ROS 2 {distro} packages on this host (add the ROS 2 apt repository)"
    if os.geteuid() != 0 and not _passwordless_sudo():
        return "installing system packages needs root or passwordless sudo on this host"
    return ""


def _passwordless_sudo() -> bool:
    sudo = shutil.which("sudo")
    if sudo is None:
        return False
    done = subprocess.run([sudo, "-n", "true"], stdin=subprocess.DEVNULL, capture_output=True, check=False)
    return done.returncode == 0


def _rosdep(sources: Path, distro: str) -> None:
    blocker = _rosdep_blocker(distro)
    if blocker:
        _say(f"rosdep: skipped: {blocker}")
        return
    argv = ["rosdep", "install", "--from-paths", str(sources), "--ignore-src", "-y", "-r"]
    argv += ["--rosdistro", distro]
    print("+ " + " ".join(argv), flush=True)
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, check=False)
    if done.returncode == 0:
        _say("rosdep: system dependencies installed")
    else:
        _say(f"rosdep: failed (exit code {done.returncode}); building anyway")


def _syntax_error(sources: Path, package: str) -> str:
    """The first Python syntax error in a package's sources, as ``file:line: message in 'code'``
    with the file relative to the workspace root ("" if none)."""
    package_dir = sources / package
    for path in sorted(package_dir.rglob("*.py")):
        if any(part.startswith(".") for part in path.relative_to(package_dir).parts):
            continue
        try:
            compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
        except SyntaxError as err:
            code = (err.text or "").strip()
            return f"{path.relative_to(sources)}:{err.lineno}: {err.msg} in {code!r}"
        except (OSError, ValueError):
            continue
    return ""


def build(args: argparse.Namespace) -> int:
    """Build the pushed workspace packages with colcon, unless the same sources were built already.

    Runs as a supervised process under a per-workspace lock. The stamp (the key of the sources and
    settings that built ``install/``) is written last, so an interrupted or failed build is redone.
    Lines starting ``fogros-build:`` are for the robot; colcon's own lines pass through.
    """
    spec = json.loads(args.spec_json)
    workspace = Path(spec["workspace"])
    sources = workspace / "sources"
    stamp = workspace / _BUILD_STAMP
    with _locked(workspace / ".build.lock"):
        try:
            built = stamp.read_text().strip()
        except OSError:
            built = ""
        if built == spec["key"] and (workspace / "install" / "setup.bash").exists():
            _say(f"cached: {len(spec['packages'])} packages unchanged")
            return 0
        stamp.unlink(missing_ok=True)
        distro = os.environ.get("ROS_DISTRO", "")
        if spec.get("rosdep", True):
            _rosdep(sources, distro)
        venv_bin = str(Path(spec["venv_python"]).parent)
        # With ROS 2, the host's own colcon, so the nodes' scripts run on ROS 2's Python as
        # `ros2 run` would run them; without, the runtime's, whose Python has fogros_dist.
        own = _host_colcon(venv_bin) if spec.get("host_colcon") else None
        colcon = own or [str(Path(venv_bin) / "colcon")]
        _say(f"colcon: {colcon[0]}")
        cmake_args = list(spec.get("cmake_args", []))
        ros_python = _ros_python() if own else ""
        if ros_python:
            # CMake would take the first python3 on PATH (pyenv's, conda's), which lacks what
            # rosidl's generators import: the Python ROS 2 runs on has it.
            cmake_args.append(f"-DPython3_EXECUTABLE={ros_python}")
        argv = [
            *colcon,
            "--log-base",
            str(workspace / "log"),
            "build",
            "--base-paths",
            str(sources),
            "--build-base",
            str(workspace / "build"),
            "--install-base",
            str(workspace / "install"),
            "--packages-select",
            *spec["packages"],
            "--cmake-args",
            *cmake_args,
        ]
        print("+ " + " ".join(argv), flush=True)
        started = time.monotonic()
        done = subprocess.run(argv, cwd=str(workspace), stdin=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            _say(f"failed: colcon exited with code {done.returncode}")
            return done.returncode
        for name, path in spec.get("python_packages", []):
            error = _syntax_error(sources, path)
            if error:
                # setup.py install skips byte-compiling, so colcon succeeds; the node would not.
                _say(f"failed: {name}: {error}")
                return 1
        _write_atomic(stamp, spec["key"])
        _say(f"built {len(spec['packages'])} packages in {time.monotonic() - started:.1f} s")
    return 0


# -- entry point ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``serve`` (the request loop), ``wrap`` (a supervised process), ``install`` (the venv) or
    ``build`` (the workspace)."""
    parser = argparse.ArgumentParser(prog="host_agent")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve")
    p = sub.add_parser("wrap")
    p.add_argument("--notify-fd", required=True)
    p = sub.add_parser("install")
    p.add_argument("--spec", required=True)
    p = sub.add_parser("build")
    p.add_argument("--spec-json", required=True)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _Server().serve()
    if args.command == "wrap":
        return wrap(args)
    if args.command == "build":
        return build(args)
    return install(args)


if __name__ == "__main__":
    sys.exit(main())
