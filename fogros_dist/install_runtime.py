"""Install fogros_dist's pinned runtime into the Python that ``ros2`` runs on.

After ``colcon build`` of fogros_dist in a ROS 2 workspace, ``ros2 launch`` imports fogros_dist
with ROS 2's own interpreter (``/usr/bin/python3`` on Ubuntu), which has none of its PyPI
dependencies (rosbags, cyclonedds, eclipse-zenoh, ...). One command fixes that::

    ros2 run fogros_dist install_runtime          # or: python3 -m fogros_dist.install_runtime

It finds the interpreter from the ``ros2`` executable's first line, and installs the pins of the
installed ``requirements.txt`` with ``pip install --user`` (the user's site-packages only;
``--break-system-packages`` is added where the interpreter is marked externally managed, which
still touches nothing but the user's site), or into the interpreter itself when it is a venv.
What the interpreter already has and ROS 2's compiled modules depend on stays: its numpy, when it
is recent enough for the pinned packages (cv_bridge and friends are built against it). Standard
library only: nothing else is importable yet when this runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from fogros_dist.errors import FogError, ProvisionError
from fogros_dist.requirements import (
    RUNTIME,
    WORKLOAD_PACKAGES,
    find_requirements,
    requirement_lines,
    requirement_name,
)

__all__ = ["interpreter_of_ros2", "main", "plan_install"]

# The oldest numpy every pinned package accepts (matplotlib's floor); an older one is replaced.
_NUMPY_FLOOR = (1, 25)
# What `ros2 launch` of a CloudNode imports from the runtime: checked after the install.
_IMPORT_CHECK = "import cyclonedds, zenoh, rosbags, numpy, paramiko, catkin_pkg, packaging"

_QUERY = r"""
import json, os, sys, sysconfig, importlib.util
numpy = None
try:
    import numpy as _np
    numpy = _np.__version__
except Exception:
    pass
print(json.dumps({
    "version": "%d.%d" % sys.version_info[:2],
    "venv": sys.prefix != sys.base_prefix,
    "pip": importlib.util.find_spec("pip") is not None,
    "externally_managed": os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")),
    "numpy": numpy,
}))
"""


def interpreter_of_ros2() -> str:
    """The interpreter named on the first line of the ``ros2`` executable on PATH, or this one."""
    ros2 = shutil.which("ros2")
    if ros2 is None:
        return sys.executable
    try:
        with Path(ros2).open("rb") as handle:
            first = handle.readline().decode(errors="replace").strip()
    except OSError:
        return sys.executable
    if not first.startswith("#!"):
        return sys.executable
    words = first[2:].split()
    if not words:
        return sys.executable
    # "#!/usr/bin/env python3" names the interpreter through env.
    if Path(words[0]).name == "env" and len(words) > 1:
        return shutil.which(words[1]) or sys.executable
    return words[0]


def _facts(python: str) -> dict[str, object]:
    import json

    try:
        done = subprocess.run([python, "-c", _QUERY], capture_output=True, text=True, timeout=60, check=False)
    except OSError as err:
        msg = f"cannot run the interpreter {python!r} ({err.strerror}): pass --python with a working one"
        raise ProvisionError(msg) from err
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        msg = f"the interpreter {python!r} failed to start ({last}): pass --python with a working one"
        raise ProvisionError(msg)
    facts: dict[str, object] = json.loads(done.stdout)
    return facts


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def plan_install(
    *, python: str, facts: dict[str, object], requirements: Path, workloads: bool
) -> tuple[list[str], list[str], list[str]]:
    """What to install and how: ``(pip argv without the requirement file, pins, notes)``.

    Raises:
        ProvisionError: the interpreter has no pip (the message says how to get it).
    """
    if not facts.get("pip"):
        msg = (
            f"the interpreter {python} (Python {facts.get('version')}) has no pip: install it "
            f"(Debian/Ubuntu: sudo apt install python3-pip), then run this again"
        )
        raise ProvisionError(msg)
    notes: list[str] = []
    pins = []
    for line in requirement_lines(requirements):
        name = requirement_name(line)
        if not workloads and name in WORKLOAD_PACKAGES:
            continue
        numpy = facts.get("numpy")
        if name == "numpy" and isinstance(numpy, str) and _version_tuple(numpy) >= _NUMPY_FLOOR:
            if "numpy" not in " ".join(notes):
                notes.append(f"keeping the interpreter's numpy {numpy} (ROS 2's compiled modules use it)")
            continue
        pins.append(line)
    argv = [python, "-m", "pip", "install", "--disable-pip-version-check"]
    if not facts.get("venv"):
        argv.append("--user")
        if facts.get("externally_managed"):
            # PEP 668: allowed with --user, which writes only to the user's own site-packages.
            argv.append("--break-system-packages")
    return argv, pins, notes


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; see the module docstring. Returns 0 when the runtime imports afterwards."""
    parser = argparse.ArgumentParser(
        prog="install_runtime",
        description="Install fogros_dist's pinned runtime into the Python that ros2 runs on.",
    )
    parser.add_argument("--python", help="the interpreter to install into (default: the one ros2 runs on)")
    parser.add_argument(
        "--core",
        action="store_true",
        help="leave out the workloads' packages (torch, kiss-icp, matplotlib)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the pip command, install nothing")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except FogError as err:
        print(f"install_runtime: error: {err}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    python = args.python or interpreter_of_ros2()
    requirements = find_requirements(RUNTIME)
    facts = _facts(python)
    pip, pins, notes = plan_install(
        python=python, facts=facts, requirements=requirements, workloads=not args.core
    )
    print(
        f"install_runtime: {len(pins)} pinned packages from {requirements} into {python} "
        f"(Python {facts['version']})"
    )
    for note in notes:
        print(f"install_runtime: {note}")
    with tempfile.TemporaryDirectory(prefix="fogros-runtime-") as tmp:
        pinned = Path(tmp) / "requirements.txt"
        pinned.write_text("".join(f"{pin}\n" for pin in pins))
        command = [*pip, "-r", str(pinned)]
        print("install_runtime: " + " ".join([*pip, "-r", "<pins>"]))
        if args.dry_run:
            print("".join(f"  {pin}\n" for pin in pins), end="")
            return 0
        done = subprocess.run(command, check=False, env=dict(os.environ, PIP_PROGRESS_BAR="off"))
    if done.returncode != 0:
        msg = f"pip failed (exit code {done.returncode}): see its output above"
        raise ProvisionError(msg)
    check = subprocess.run([python, "-c", _IMPORT_CHECK], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        last = (check.stderr.strip().splitlines() or ["?"])[-1]
        msg = f"installed, but {python} still cannot import the runtime ({last})"
        raise ProvisionError(msg)
    print(f"install_runtime: ready: {python} imports fogros_dist's runtime")
    return 0


if __name__ == "__main__":
    sys.exit(main())
