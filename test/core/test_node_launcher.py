"""Executables resolve like `ros2 run`, with a console_scripts fallback; misses name the search."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fogros_dist.errors import MissingExecutable
from fogros_dist.node_launcher import resolve


def test_fogros_dist_nodes_resolve_without_ros(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    found = resolve("fogros_dist", "edge_detector")
    assert found.entry_point is not None
    assert found.entry_point.value == "fogros_dist.nodes.edge_detector:main"


def test_ament_prefix_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = tmp_path / "lib" / "pkg" / "tool"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\necho ran-$1\n")
    exe.chmod(0o755)
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path))
    assert resolve("pkg", "tool").path == exe
    out = subprocess.run(
        [sys.executable, "-m", "fogros_dist.node_launcher", "pkg", "tool", "--", "x"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        check=True,
    )
    assert out.stdout == "ran-x\n"


def test_missing_executable_names_package_executable_and_search(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMENT_PREFIX_PATH", "/nonexistent")
    with pytest.raises(
        MissingExecutable, match=r"executable 'nope' not found in package 'fogros_dist'.*/nonexistent"
    ):
        resolve("fogros_dist", "nope")
    # An entry point of another package does not count as this package's executable.
    with pytest.raises(MissingExecutable):
        resolve("other_pkg", "edge_detector")


def test_launcher_exits_2_with_one_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fogros_dist.node_launcher", "--check", "fogros_dist", "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1
    assert "executable 'nope' not found" in out.stderr
