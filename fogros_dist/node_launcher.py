"""Find and run a ROS 2 node executable on the machine that should run it.

``python -m fogros_dist.node_launcher [--check] PACKAGE EXECUTABLE [-- ARGS...]``

Resolution order, as ``ros2 run`` would do it, plus a fallback for machines without ROS 2:

1. ``<prefix>/lib/<package>/<executable>`` for each prefix in ``AMENT_PREFIX_PATH`` (then in
   each colcon install base of ``COLCON_PREFIX_PATH``, where no ROS 2 sets the former);
2. a ``console_scripts`` entry point called ``executable`` whose module lives in the Python package
   ``package`` (an ament_python package installed with pip, such as fogros_dist itself).

``--check`` only resolves and prints what it found. A missing executable prints one line naming
the package, the executable and where it looked, and exits 2.

``$FOGROS_DIST_NODE_PREFIX`` (a JSON list of words, launch's ``prefix=``) is put in front of the
resolved executable, so a debugger or ``nice`` wraps the node itself, not this launcher. It is
removed from the node's environment. A prefix command that is missing prints one line, exit 127.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from fogros_dist.errors import MissingExecutable

__all__ = ["PREFIX_ENV", "Resolved", "main", "resolve"]

EXIT_MISSING = 2
EXIT_CANNOT_EXECUTE = 127
PREFIX_ENV = "FOGROS_DIST_NODE_PREFIX"


@dataclass(frozen=True, kw_only=True)
class Resolved:
    """An executable found on this machine: a file to exec, or an entry point to call."""

    path: Path | None = None
    entry_point: EntryPoint | None = None

    def describe(self) -> str:
        """Where the executable was found, for logs."""
        if self.path is not None:
            return str(self.path)
        assert self.entry_point is not None
        return f"entry point {self.entry_point.value}"


def resolve(package: str, executable: str) -> Resolved:
    """Find ``package``/``executable`` here; raise MissingExecutable naming where it looked."""
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    # A colcon install base without ROS 2 (no AMENT_PREFIX_PATH): <base>/<package> (isolated) or
    # <base> itself (merged) is the package's prefix.
    for base in (p for p in os.environ.get("COLCON_PREFIX_PATH", "").split(os.pathsep) if p):
        prefixes += [str(Path(base) / package), base]
    for prefix in prefixes:
        candidate = Path(prefix) / "lib" / package / executable
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return Resolved(path=candidate)
    for ep in entry_points(group="console_scripts", name=executable):
        if ep.module == package or ep.module.startswith(f"{package}."):
            return Resolved(entry_point=ep)
    where = f"lib/{package} under {':'.join(prefixes) or 'no AMENT_PREFIX_PATH'}, and Python console_scripts"
    msg = (
        f"executable {executable!r} not found in package {package!r} (searched {where}): "
        f"check the names, or build/install the package on that machine"
    )
    raise MissingExecutable(msg)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; see the module docstring."""
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args[:1]
    if check:
        args = args[1:]
    node_args: list[str] = []
    if "--" in args:
        split = args.index("--")
        args, node_args = args[:split], args[split + 1 :]
    if len(args) != 2:
        print(
            "usage: python -m fogros_dist.node_launcher [--check] PACKAGE EXECUTABLE [-- ARGS...]",
            file=sys.stderr,
        )
        return EXIT_MISSING
    package, executable = args
    try:
        found = resolve(package, executable)
        prefix = [] if check else _take_prefix()
    except (MissingExecutable, ValueError) as err:
        print(f"fogros-dist: {err}", file=sys.stderr)
        return EXIT_MISSING
    if check:
        print(found.describe())
        return 0
    if found.path is not None:
        return _exec([*prefix, str(found.path), *node_args])
    if prefix:
        # An entry point has no file to hand the prefix: run this launcher again under it.
        return _exec(
            [
                *prefix,
                sys.executable,
                "-m",
                "fogros_dist.node_launcher",
                package,
                executable,
                "--",
                *node_args,
            ]
        )
    assert found.entry_point is not None
    sys.argv = [executable, *node_args]
    result = found.entry_point.load()()
    return int(result or 0)


def _take_prefix() -> list[str]:
    text = os.environ.pop(PREFIX_ENV, "")
    if not text:
        return []
    words = json.loads(text)
    if not isinstance(words, list) or not all(isinstance(w, str) and w for w in words):
        msg = f"{PREFIX_ENV}={text!r} is not a JSON list of words: set prefix= to e.g. 'nice -n 5'"
        raise ValueError(msg)
    return words


def _exec(argv: list[str]) -> int:
    # exec keeps the PID, so the supervisor's record and signals reach the node itself.
    try:
        os.execvp(argv[0], argv)
    except OSError as err:
        print(f"fogros-dist: cannot execute {argv[0]!r} on this machine: {err.strerror}", file=sys.stderr)
    return EXIT_CANNOT_EXECUTE


if __name__ == "__main__":
    sys.exit(main())
