"""fogros_dist's pinned requirement files: where they are, and their lines.

Standard library only: the runtime installer (:mod:`fogros_dist.install_runtime`) runs on ROS 2's
Python before any dependency is there. Three files, installed beside the package wherever it is
installed (a checkout's root; ``share/fogros_dist/`` of a colcon install or a pip prefix):

- ``requirements.txt``: the runtime (robot and machines);
- ``requirements-build.txt``: colcon, for machines that build a user's workspace and have none.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fogros_dist.errors import ProvisionError

__all__ = [
    "BUILD",
    "REQUIREMENTS_ENV",
    "RUNTIME",
    "WORKLOAD_PACKAGES",
    "find_requirements",
    "requirement_lines",
    "requirement_name",
]

RUNTIME = "requirements.txt"
BUILD = "requirements-build.txt"
REQUIREMENTS_ENV = "FOGROS_DIST_REQUIREMENTS"
# Only the workloads (grasp planning, SLAM, policies) import these; the bridge and the CLI never do.
# pillow is not one of them: the bridge's PNG codec (net/image_codec.py) needs it.
WORKLOAD_PACKAGES = frozenset({"torch", "kiss-icp", "matplotlib"})


def find_requirements(name: str = RUNTIME) -> Path:
    """The installed requirement file ``name`` (``requirements.txt`` or ``requirements-build.txt``).

    Looked for in ``$FOGROS_DIST_REQUIREMENTS``'s directory (the runtime file itself may be named
    there), the source checkout this package runs from, ``<prefix>/share/fogros_dist`` of this
    interpreter, and of every ``AMENT_PREFIX_PATH`` entry (a colcon install).

    Raises:
        ProvisionError: no such file is installed anywhere fogros_dist looks.
    """
    candidates: list[Path] = []
    explicit = os.environ.get(REQUIREMENTS_ENV)
    if explicit:
        path = Path(explicit)
        candidates.append(path if name == RUNTIME else path.with_name(name))
    package_dir = Path(__file__).resolve().parent
    candidates.append(package_dir.parent / name)
    candidates.append(Path(sys.prefix) / "share" / "fogros_dist" / name)
    if len(package_dir.parents) > 3:
        # A colcon install: <prefix>/lib/pythonX.Y/site-packages/fogros_dist -> <prefix>/share.
        candidates.append(package_dir.parents[3] / "share" / "fogros_dist" / name)
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / "fogros_dist" / name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in dict.fromkeys(candidates))
    msg = (
        f"cannot find fogros_dist's {name} (looked in {looked}): run from a fogros_dist checkout or "
        f"install, or set {REQUIREMENTS_ENV} to a pinned requirements file"
    )
    raise ProvisionError(msg)


def requirement_lines(path: Path) -> tuple[str, ...]:
    """The requirement lines of ``path``: comments and blank lines dropped, markers kept.

    Raises:
        ProvisionError: the file cannot be read.
    """
    try:
        text = path.read_text()
    except OSError as err:
        msg = (
            f"cannot read the runtime requirements {path} ({err.strerror}): run from a fogros_dist "
            f"checkout, or set {REQUIREMENTS_ENV} to a pinned requirements file"
        )
        raise ProvisionError(msg) from err
    return tuple(line for raw in text.splitlines() if (line := raw.split("#", 1)[0].strip()))


def requirement_name(line: str) -> str:
    """The normalised project name of a requirement line (``Eclipse_Zenoh==1; ...`` ->
    ``eclipse-zenoh``)."""
    name = line
    for stop in ("=", "<", ">", "!", "~", "[", ";", " ", "@"):
        name = name.split(stop, 1)[0]
    return "-".join(name.replace("_", "-").replace(".", "-").lower().split("-"))
