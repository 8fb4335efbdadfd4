"""Bad input: one clear line naming the value and the fix, exit code 1, no traceback, nothing left."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cli_test_helpers import Run, write_deployment


def _one_line_error(result: object) -> str:
    err: str = result.stderr  # type: ignore[attr-defined]
    assert result.returncode == 1, err  # type: ignore[attr-defined]
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("fogros-dist: error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"provider": "gcp"}, r"unknown provider 'gcp': use one of .*local"),
        (
            {"topic_in": "/camera/image:sensor_msgs/msg/Imag"},
            r"'sensor_msgs/msg/Imag'.*did you mean 'sensor_msgs/msg/Image'",
        ),
        ({"topic_in": "/camera/9image:sensor_msgs/msg/Image"}, r"'/camera/9image'"),
        ({"topic_out": "camera edges:sensor_msgs/msg/Image"}, r"'/camera edges' contains ' '"),
        ({"name": "Bad_Name"}, r"deployment name 'Bad_Name' is invalid"),
    ],
)
def test_plan_errors(fogros: Run, tmp_path: Path, change: dict[str, str], expected: str) -> None:
    spec = write_deployment(tmp_path / "d.toml", **change)
    line = _one_line_error(fogros("up", str(spec)))
    assert re.search(expected, line), line
    assert json.loads(fogros("list", "--json").stdout) == []


def test_missing_executable_is_named_and_everything_is_torn_down(fogros: Run, tmp_path: Path) -> None:
    spec = write_deployment(tmp_path / "d.toml", executable="edge_detektor")
    result = fogros("up", str(spec))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "executable 'edge_detektor' not found in package 'fogros_dist'" in result.stderr
    # The failed deployment is released, and its record says why until `down` forgets it.
    rows = json.loads(fogros("list", "--json").stdout)
    assert [(r["name"], r["machines"]) for r in rows] == [("t1", [])]
    assert rows[0]["status"].startswith("failed: ")
    assert "executable 'edge_detektor' not found" in rows[0]["status"]
    down = fogros("down", "t1")
    assert down.returncode == 0, down.stderr
    assert json.loads(fogros("list", "--json").stdout) == []


def test_missing_and_malformed_files(fogros: Run, tmp_path: Path) -> None:
    line = _one_line_error(fogros("up", str(tmp_path / "nope.toml")))
    assert "nope.toml' does not exist" in line
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n")
    line = _one_line_error(fogros("up", str(broken)))
    assert "is not valid TOML" in line


def test_unknown_deployment_for_down_and_logs(fogros: Run) -> None:
    assert "no deployment named 'ghost'" in _one_line_error(fogros("down", "ghost"))
    assert "no deployment or logs named 'ghost'" in _one_line_error(fogros("logs", "ghost"))
