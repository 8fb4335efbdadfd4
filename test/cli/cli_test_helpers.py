"""Helpers for the CLI tests."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

Run = Callable[..., subprocess.CompletedProcess[str]]


def write_deployment(
    path: Path,
    *,
    name: str = "t1",
    provider: str = "local",
    executable: str = "edge_detector",
    topic_in: str = "/camera/image:sensor_msgs/msg/Image",
    topic_out: str = "/camera/edges:sensor_msgs/msg/Image",
) -> Path:
    """A one-machine, one-node deployment file with the given parts swapped in."""
    path.write_text(
        f'name = "{name}"\n'
        "[[machines]]\n"
        'name = "gpu"\n'
        f'provider = "{provider}"\n'
        "[[nodes]]\n"
        'name = "edges"\n'
        'package = "fogros_dist"\n'
        f'executable = "{executable}"\n'
        'machine = "gpu"\n'
        f'topics_in = ["{topic_in}"]\n'
        f'topics_out = ["{topic_out}"]\n'
    )
    return path
