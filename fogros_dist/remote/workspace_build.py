"""The user's workspace on a machine: push the packages its nodes need, build them with colcon.

Layout on the host, one per robot workspace (shared by every deployment that brings it)::

    <remote_dir>/workspaces/<name>-<hash>/sources/     the selected packages, as on the robot
                                        build/ install/ log/   colcon's
                                        .fogros-build  the key of the sources that built install/

The build runs on the host as a supervised process (``host_agent.py build``): ``rosdep install``
where rosdep and the distro's apt packages are available (skipped with a line saying why where
not), then ``colcon build`` of exactly the selected packages, then a syntax check of the Python
packages (``setup.py install`` does not byte-compile, so colcon would pass a module the node
cannot import). It is skipped when the host's stamp holds the same key: the same sources (paths,
sizes, mtimes, modes, as rsync compares them), package list and build settings. Its output is
followed live and turned into progress: ``building <pkg> (n/m)``, then ``built`` or
``build cached``. A failure is one line naming the package and the machine, with the last lines
of that package's output and the path of its full log on the host. Push and build take the
deployment's ``cancel``: a cancelled build is stopped on the host (its whole process group, colcon
and the compilers under it) before Cancelled is raised, and nothing is stamped, so the next `up`
builds again.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fogros_dist.errors import Cancelled, FogError, ProvisionError
from fogros_dist.remote.agent import HostAgent, HostFacts
from fogros_dist.remote.cancel import CHECK_EVERY_S, CancelEvent, cancelled, raise_if_cancelled
from fogros_dist.remote.host_agent import tree_digest
from fogros_dist.remote.sync import DEFAULT_EXCLUDES, SyncMethod, SyncStats, push_directory
from fogros_dist.workspace.selection import WorkspaceSelection

__all__ = [
    "BUILD_TIMEOUT_S",
    "ColconProgress",
    "WorkspaceBuild",
    "build_key",
    "error_lines",
    "workspace_dir",
]

# A large C++ workspace on a small machine takes a while; past this the build is given up on.
BUILD_TIMEOUT_S = 3600.0
# Passed to CMake for every package: tests are not built on a machine that only runs nodes.
CMAKE_ARGS: tuple[str, ...] = ("-DBUILD_TESTING=OFF",)
# A hyphen cannot appear in a ROS node name, so no node of the deployment can collide with it.
_BUILD_NAME = "fogros-build"
# A stopped build gets this long to exit on SIGTERM before SIGKILL (a cancel must land within 2 s).
_STOP_GRACE_S = 0.5
# Bump when what the key covers changes meaning, so old stamps are not trusted.
_KEY_LAYOUT = "build-1"
_STARTING = re.compile(r"^Starting >>> (\S+)")
_FAILED = re.compile(r"^Failed\s+<<< (\S+)")
_PYTHON_BUILD_TYPES = frozenset({"ament_python", "python"})
Progress = Callable[[str, str], None]


# What a compiler, CMake or Python says when it fails; colcon's own traceback (it ran setup.py
# and the call failed) repeats nothing the user needs.
_ERROR_LINE = re.compile(r"(\berror\b|^CMake Error|^\w+(Error|Exception)\b)", re.IGNORECASE)
_COLCON_NOISE = re.compile(r"CalledProcessError|^File \"|^raise |^Traceback|^---|^[\^~ ]+$")


def error_lines(lines: list[str], *, count: int = 2) -> list[str]:
    """The lines of a failed package build's output worth one line: its first errors, else its
    last lines."""
    useful = [line for line in lines if not _COLCON_NOISE.search(line)]
    errors = [line for line in useful if _ERROR_LINE.search(line)]
    return errors[:count] if errors else useful[-3:]


def workspace_dir(remote_dir: str, selection: WorkspaceSelection) -> str:
    """Where ``selection``'s workspace lives on a host whose fogros_dist directory is ``remote_dir``."""
    return str(PurePosixPath(remote_dir) / "workspaces" / selection.key)


def build_key(selection: WorkspaceSelection, *, ros_setup: str) -> str:
    """What a build's result depends on: the sources as rsync sees them, which packages, how."""
    sources = tree_digest(Path(selection.root), list(DEFAULT_EXCLUDES), list(selection.paths))
    listed = "\n".join(f"{p.name}:{p.path}:{p.build_type}" for p in selection.packages)
    text = "\n".join((_KEY_LAYOUT, str(sources["digest"]), listed, ros_setup, *CMAKE_ARGS))
    return hashlib.sha256(text.encode()).hexdigest()


class ColconProgress:
    """Turns the build's output lines into progress and remembers what failed."""

    def __init__(self, *, packages: tuple[str, ...], progress: Progress) -> None:
        self._total = len(packages)
        self._progress = progress
        self._started = 0
        self.failed: list[str] = []
        self.reason = ""
        self.outcome = ""

    def line(self, text: str) -> None:
        """Take one line of the build's output."""
        text = text.rstrip()
        started = _STARTING.match(text)
        if started:
            self._started += 1
            self._progress("building", f"{started.group(1)} ({self._started}/{self._total})")
            return
        failed = _FAILED.match(text)
        if failed:
            self.failed.append(failed.group(1))
            return
        if text.startswith("fogros-build: rosdep: "):
            self._progress("rosdep", text.removeprefix("fogros-build: rosdep: "))
        elif text.startswith("fogros-build: cached"):
            self.outcome = "cached"
        elif text.startswith("fogros-build: built"):
            self.outcome = "built"
        elif text.startswith("fogros-build: failed: "):
            self.outcome = "failed"
            self.reason = text.removeprefix("fogros-build: failed: ")


@dataclass(frozen=True, kw_only=True)
class WorkspaceBuild:
    """Everything needed to push and build one machine's selection."""

    agent: HostAgent
    facts: HostFacts
    machine: str
    selection: WorkspaceSelection
    workspace: str
    host_workdir: str
    venv_python: str
    ros_setup: str
    env: dict[str, str]
    sync: SyncMethod

    def push(self, progress: Progress, *, cancel: CancelEvent | None = None) -> SyncStats:
        """Push the selected packages to ``<workspace>/sources`` (only what changed); the host
        keeps exactly those packages there.

        Raises:
            ProvisionError: the transfer failed.
            Cancelled: ``cancel`` was set first (rsync stopped, or SFTP between two chunks).
        """
        return push_directory(
            self.agent,
            local=Path(self.selection.root),
            remote=f"{self.workspace}/sources",
            remote_has_rsync=self.facts.rsync,
            method=self.sync,
            includes=self.selection.paths,
            progress=lambda line: progress("syncing", f"workspace {line}"),
            cancel=cancel,
        )

    def build(self, progress: Progress, cancel: CancelEvent | None = None) -> float:
        """Build on the host (or find it built); return the seconds it took.

        Reports ``building <pkg> (n/m)`` as colcon starts each package, ``rosdep`` lines, then
        ``built`` or ``build cached``.

        Raises:
            ProvisionError: the build failed (package, machine, its last lines and the log are
                named) or timed out.
            Cancelled: ``cancel`` was set first; the build is gone from the host.
        """
        started = time.monotonic()
        names = self.selection.names
        spec = {
            "workspace": self.workspace,
            "packages": list(names),
            "python_packages": [
                [p.name, p.path] for p in self.selection.packages if p.build_type in _PYTHON_BUILD_TYPES
            ],
            "key": build_key(self.selection, ros_setup=self.ros_setup),
            "venv_python": self.venv_python,
            "host_colcon": bool(self.ros_setup),
            "cmake_args": list(CMAKE_ARGS),
        }
        rundir = f"{self.host_workdir}/run"
        raise_if_cancelled(cancel, machine=self.machine, doing="starting the workspace build")
        try:
            found = self._start(rundir, spec, cancel)
        except FogError as err:
            if cancel is not None and cancel.is_set():
                # The build may have started before the answer was abandoned.
                raise self._interrupt(rundir) from err
            raise
        watcher = ColconProgress(packages=names, progress=progress)
        self._follow(rundir, found, watcher, cancel)
        seconds = time.monotonic() - started
        if watcher.outcome == "cached":
            progress("build cached", f"{len(names)} package(s) unchanged: nothing built ({seconds:.1f} s)")
        elif watcher.outcome == "built":
            progress("built", f"{len(names)} package(s) ({', '.join(names)}) in {seconds:.1f} s")
        else:
            raise ProvisionError(self._failure(watcher, str(found["stdout"])))
        return seconds

    def _start(self, rundir: str, spec: dict[str, object], cancel: CancelEvent | None) -> dict[str, object]:
        return self.agent.start(
            {
                "name": _BUILD_NAME,
                "rundir": rundir,
                "logdir": f"{self.host_workdir}/logs",
                "cwd": self.workspace,
                "env": {**self.env, "PYTHONUNBUFFERED": "1"},
                "setup": [self.ros_setup] if self.ros_setup else [],
                "argv": [
                    self.facts.python_executable,
                    self.agent.path(self.facts),
                    "build",
                    # In the command line, not a file: SFTP is busy with the bridge's files on
                    # the main thread meanwhile, and paramiko's SFTP client is not thread-safe.
                    "--spec-json",
                    json.dumps(spec),
                ],
            },
            what="the workspace build",
            cancel=cancel,
        )

    def _interrupt(self, rundir: str) -> Cancelled:
        """Stop the build on the host; the Cancelled that says so."""
        try:
            self.agent.stop(rundir, _BUILD_NAME, grace=_STOP_GRACE_S)
        except FogError as err:
            return cancelled(
                self.machine, f"building the workspace (it could not be stopped on the host: {err})"
            )
        return cancelled(self.machine, "building the workspace (stopped on the host)")

    def _follow(
        self, rundir: str, found: dict[str, object], watcher: ColconProgress, cancel: CancelEvent | None
    ) -> None:
        def frame(text: str) -> None:
            # colcon writes "Failed <<< pkg" to stderr, the rest to stdout: both are read.
            watcher.line(text.partition(" ")[2].partition(" ")[2])

        args = {
            "rundir": rundir,
            "name": _BUILD_NAME,
            "stdout": str(found["stdout"]),
            "stderr": str(found["stderr"]),
            "from_out": 0,
            "from_err": 0,
        }
        try:
            stream = self.agent.stream("follow", args, frame, cancel=cancel)
        except FogError as err:
            if cancel is not None and cancel.is_set():
                raise self._interrupt(rundir) from err
            raise
        deadline = time.monotonic() + BUILD_TIMEOUT_S
        while True:
            # The answer comes once the build has ended and all its output has been sent.
            answer = stream.wait(CHECK_EVERY_S)
            if answer is not None:
                if not watcher.outcome:
                    watcher.outcome = "failed"
                    watcher.reason = f"the build process exited with code {answer.get('code')}"
                return
            if cancel is not None and cancel.is_set():
                stream.cancel()
                raise self._interrupt(rundir)
            if time.monotonic() > deadline:
                stream.cancel()
                self.agent.stop(rundir, _BUILD_NAME, grace=2.0)
                msg = (
                    f"machine {self.machine!r}: the workspace build did not finish within "
                    f"{BUILD_TIMEOUT_S:.0f} s: see {found['stdout']} on the host"
                )
                raise ProvisionError(msg)

    def _failure(self, watcher: ColconProgress, build_log: str) -> str:
        where = self.agent.runner.target.hostname
        if watcher.failed:
            package = watcher.failed[0]
            log_dir = f"{self.workspace}/log/latest_build/{package}"
            # The compiler's or setup.py's words are in the package's log; when colcon could not
            # even read setup.py, they went to colcon's own stderr (the build process's).
            lines = [
                line.strip()
                for path in (build_log.removesuffix(".out") + ".err", f"{log_dir}/stderr.log")
                for line in self.agent.tail(path, 200)
                if line.strip()
            ]
            if not lines:
                stdout = self.agent.tail(f"{log_dir}/stdout.log", 200)
                lines = [line.strip() for line in stdout if line.strip()]
            last = " | ".join(error_lines(lines)) or "no output"
            return (
                f"machine {self.machine!r}: colcon build of package {package!r} failed on {where}: {last}: "
                f"full log {log_dir}/stdout_stderr.log there"
            )
        package, _, detail = watcher.reason.partition(": ")
        if package in self.selection.names and detail:
            # The syntax check: colcon installed it, but the node could not import it.
            return (
                f"machine {self.machine!r}: package {package!r} has a syntax error on {where}: {detail}: "
                f"full log {build_log} there"
            )
        return (
            f"machine {self.machine!r}: building the workspace failed on {where}: {watcher.reason}: "
            f"full log {build_log} there"
        )
