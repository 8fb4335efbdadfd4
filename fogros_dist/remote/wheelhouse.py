"""The wheelhouse: every runtime dependency as a wheel, built on the robot, installed offline on hosts.

Many lab hosts (and every test host) cannot reach a package index, so the robot downloads the
pinned runtime requirements once per (requirements, host Python, host CPU) into a cache keyed by
their hash, with the robot's own pip settings (index, find-links, proxy). The host then installs
from the pushed files with ``pip --no-index``. torch is left out unless a machine asks for it:
it is the biggest wheel by far, and most offloaded nodes do not need it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fogros_dist.errors import ProvisionError
from fogros_dist.remote.cancel import CHECK_EVERY_S, CancelEvent, cancelled, raise_if_cancelled
from fogros_dist.requirements import BUILD, RUNTIME, find_requirements, requirement_lines, requirement_name

__all__ = [
    "TargetPython",
    "Wheelhouse",
    "default_cache_dir",
    "ensure_wheelhouse",
    "runtime_requirements",
    "wheelhouse_key",
]

# Bump when the wheelhouse's layout or contents change meaning, so old caches are not reused.
_LAYOUT = "wheelhouse-1"
_COMPLETE = ".complete"
_DOWNLOADING = threading.Lock()
PIP_TIMEOUT_S = 3600.0


@dataclass(frozen=True, kw_only=True)
class TargetPython:
    """The interpreter wheels are chosen for: version, implementation, CPU and C library."""

    version: str
    implementation: str
    machine: str
    libc: str

    @property
    def tag(self) -> str:
        """The CPython tag, e.g. ``cp311``."""
        return "cp" + self.version.replace(".", "")

    @classmethod
    def here(cls) -> TargetPython:
        """This interpreter (the robot's)."""
        import platform

        return cls(
            version=f"{sys.version_info[0]}.{sys.version_info[1]}",
            implementation=sys.implementation.name,
            machine=platform.machine(),
            libc="-".join(platform.libc_ver()),
        )

    def describe(self) -> str:
        """``Python 3.11 x86_64``, for messages."""
        return f"{self.implementation} {self.version} {self.machine}"

    def marker_environment(self) -> dict[str, str]:
        """The PEP 508 marker values of this interpreter (the ones requirement files use)."""
        return {
            "python_version": self.version,
            "python_full_version": f"{self.version}.0",
            "implementation_name": self.implementation,
            "platform_machine": self.machine,
            "sys_platform": "linux",
            "platform_system": "Linux",
            "os_name": "posix",
        }


@dataclass(frozen=True, kw_only=True)
class Wheelhouse:
    """A complete wheelhouse in the robot's cache."""

    key: str
    directory: Path
    requirements: str
    pip_wheel: str
    wheels: tuple[str, ...]

    @property
    def size(self) -> int:
        """Total bytes of the wheels."""
        return sum((self.directory / name).stat().st_size for name in self.wheels)


def default_cache_dir() -> Path:
    """Where the robot caches wheels: $FOGROS_DIST_CACHE, else $XDG_CACHE_HOME/fogros_dist."""
    explicit = os.environ.get("FOGROS_DIST_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "fogros_dist"


def runtime_requirements(
    *,
    torch: bool,
    target: TargetPython | None = None,
    build_tools: bool = False,
    path: Path | None = None,
) -> tuple[str, ...]:
    """The pinned runtime requirement lines that apply to ``target`` (torch only if asked).

    Markers (``; python_version < "3.11"``) are evaluated for the target interpreter, not for
    the robot's: pip would evaluate them for the Python it runs on, which is the robot's.

    Args:
        torch: keep the ``torch`` pin.
        target: the interpreter the wheels are for (default: this one).
        build_tools: add colcon (``requirements-build.txt``), for a machine that builds a user's
            workspace and has no colcon of its own.
        path: the runtime requirements file; default: the installed one
            (:func:`fogros_dist.requirements.find_requirements`).

    Raises:
        ProvisionError: no requirements file can be found.
    """
    from packaging.markers import Marker

    files = [path or find_requirements(RUNTIME)]
    if build_tools:
        files.append(files[0].with_name(BUILD) if path is not None else find_requirements(BUILD))
    environment = (target or TargetPython.here()).marker_environment()
    lines = []
    for file in files:
        for line in requirement_lines(file):
            if requirement_name(line) == "torch" and not torch:
                continue
            requirement, _, marker = line.partition(";")
            if marker.strip() and not Marker(marker.strip()).evaluate(environment):
                continue
            lines.append(requirement.strip())
    return tuple(lines)


def wheelhouse_key(requirements: tuple[str, ...], target: TargetPython) -> str:
    """The cache key: a hash of the requirement lines and the target interpreter."""
    text = "\n".join(
        (_LAYOUT, target.implementation, target.version, target.machine, target.libc, *requirements)
    )
    return hashlib.sha256(text.encode()).hexdigest()


def ensure_wheelhouse(
    *,
    requirements: tuple[str, ...],
    target: TargetPython,
    cache_dir: Path,
    machine: str,
    cancel: CancelEvent | None = None,
) -> Wheelhouse:
    """The wheelhouse for ``requirements`` on ``target``, downloading it once into ``cache_dir``.

    Args:
        requirements: pinned requirement lines.
        target: the host's interpreter.
        cache_dir: the robot's cache (``<cache_dir>/wheelhouse/<key>``).
        machine: the machine it is for, for messages.
        cancel: when set, pip is stopped (and the partial download removed), or the wait for
            another thread's download given up; None: never.

    Returns:
        The complete wheelhouse, with pip's own wheel (used to install on the host).

    Raises:
        ProvisionError: pip could not get a wheel (its last error line is named).
        Cancelled: ``cancel`` was set first (noticed within CHECK_EVERY_S).
    """
    key = wheelhouse_key(requirements, target)
    directory = cache_dir / "wheelhouse" / key[:20]
    # A fleet's machines are provisioned in parallel threads: one downloads, the others wait and
    # find it complete (a second download would replace the directory under the first's reader).
    while not _DOWNLOADING.acquire(timeout=CHECK_EVERY_S):
        raise_if_cancelled(cancel, machine=machine, doing="waiting for the runtime's wheels")
    try:
        if not (directory / _COMPLETE).exists():
            _download(
                requirements=requirements,
                target=target,
                directory=directory,
                key=key,
                machine=machine,
                cancel=cancel,
            )
    finally:
        _DOWNLOADING.release()
    wheels = tuple(sorted(p.name for p in directory.glob("*.whl")))
    pip_wheel = next((name for name in wheels if name.startswith("pip-")), "")
    return Wheelhouse(
        key=key,
        directory=directory,
        requirements=f"requirements-{key[:20]}.txt",
        pip_wheel=pip_wheel,
        wheels=wheels,
    )


def _download(
    *,
    requirements: tuple[str, ...],
    target: TargetPython,
    directory: Path,
    key: str,
    machine: str,
    cancel: CancelEvent | None,
) -> None:
    partial = directory.with_name(directory.name + f".partial-{os.getpid()}")
    try:
        _download_into(
            partial,
            requirements=requirements,
            target=target,
            directory=directory,
            key=key,
            machine=machine,
            cancel=cancel,
        )
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _download_into(
    partial: Path,
    *,
    requirements: tuple[str, ...],
    target: TargetPython,
    directory: Path,
    key: str,
    machine: str,
    cancel: CancelEvent | None,
) -> None:
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    requirements_file = partial / f"requirements-{key[:20]}.txt"
    requirements_file.write_text("\n".join(requirements) + "\n")
    argv = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        "--dest",
        str(partial),
        "-r",
        str(requirements_file),
        # pip itself: the host runs it from its wheel, so the host needs no pip of its own.
        "pip",
    ]
    here = TargetPython.here()
    if (target.implementation, target.version, target.machine) != (
        here.implementation,
        here.version,
        here.machine,
    ):
        argv += ["--only-binary=:all:", *_cross_flags(target)]
    _pip(argv, machine, target, directory.parent, cancel)
    sdists = [p for p in partial.iterdir() if p.suffix != ".whl" and p.name != requirements_file.name]
    if sdists:
        # A source-only package: build its wheel here (pure-Python ones then install anywhere).
        build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(partial)]
        _pip([*build, *map(str, sdists)], machine, target, directory.parent, cancel)
        for sdist in sdists:
            sdist.unlink()
    (partial / _COMPLETE).write_text(key + "\n")
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)


def _cross_flags(target: TargetPython) -> list[str]:
    flags = ["--python-version", target.version, "--implementation", "cp", "--abi", target.tag]
    glibc = target.libc.partition("-")[2]
    major, _, minor = glibc.partition(".")
    if major == "2" and minor.isdigit():
        for level in range(int(minor), 16, -1):
            flags += ["--platform", f"manylinux_2_{level}_{target.machine}"]
        flags += ["--platform", f"manylinux2014_{target.machine}"]
    flags += ["--platform", f"linux_{target.machine}"]
    return flags


def _pip(
    argv: list[str], machine: str, target: TargetPython, cache: Path, cancel: CancelEvent | None
) -> None:
    with tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
        deadline = time.monotonic() + PIP_TIMEOUT_S
        try:
            while proc.poll() is None:
                if cancel is not None and cancel.is_set():
                    raise cancelled(machine, "downloading the runtime's wheels")
                if time.monotonic() > deadline:
                    msg = f"machine {machine!r}: pip took over {PIP_TIMEOUT_S:.0f} s for the runtime's wheels"
                    raise ProvisionError(msg)
                time.sleep(CHECK_EVERY_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode == 0:
            return
        stderr.seek(0)
        text = stderr.read()
    lines = [line for line in text.splitlines() if line.strip() and "WARNING" not in line]
    reason = lines[-1].strip() if lines else f"exit code {proc.returncode}"
    msg = (
        f"machine {machine!r}: cannot get the runtime wheels for {target.describe()} on this robot "
        f"({reason}): check the robot's pip index settings ('pip config list'), or fill the cache "
        f"{cache} once where the index is reachable"
    )
    raise ProvisionError(msg)
